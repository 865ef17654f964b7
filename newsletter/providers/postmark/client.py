"""The one place that talks HTTP to Postmark: :class:`BatchClient` (``POST /email/batch``).

Postmark has no official Python client (its official libraries are Ruby,
.NET, Java, PHP and Node.js); the community ``postmarker`` builds a dict per
message and encodes it with ``json.dumps``, where our body is already JSON
(``newsletter.providers.postmark.body``). The request is small: one POST
with the server token, through urllib with a timeout.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from email.message import Message as HeaderMap
from urllib.error import HTTPError

BATCH_PATH = "/email/batch"
TOKEN_HEADER = "X-Postmark-Server-Token"


@dataclass
class Answer:
    """An HTTP answer: status, headers and the raw body."""

    status: int
    headers: HeaderMap
    body: bytes


class BatchClient:
    """POSTs batch bodies to ``host`` with ``token``; every request bounded by ``timeout`` seconds."""

    def __init__(self, token: str, host: str, timeout: float):
        self.url = host.rstrip("/") + BATCH_PATH
        self._headers = {TOKEN_HEADER: token, "Accept": "application/json", "Content-Type": "application/json",
                         "User-Agent": "newsletter (postmark batch)"}
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def post(self, payload: bytes | list[bytes]) -> Answer:
        """The answer to POSTing ``payload``, one piece or pieces sent one after the other (any HTTP status).

        Raises urllib's URLError when the request did not go out in full
        (refused connection, DNS), and OSError or ``http.client.HTTPException``
        when no readable answer came after it went out (timeout, dropped
        connection).
        """
        size = len(payload) if isinstance(payload, bytes) else sum(map(len, payload))
        headers = {**self._headers, "Content-Length": str(size)}
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except HTTPError as err:
            with err:
                return Answer(err.code, err.headers, err.read())
