"""The one place that talks HTTP to SendGrid's v3 Mail Send: :class:`MailSendClient`.

It uses only public pieces of the ``sendgrid`` library (pinned to major
version 6): the headers ``SendGridAPIClient`` builds (``client.request_headers``:
the bearer key, its User-Agent), ``python_http_client``'s ``Response`` and
``handle_error`` (which turns urllib's HTTPError into the library's
``BadRequestsError``, ``UnauthorizedError``... with ``status_code``,
``body`` and ``headers``), and urllib for the request itself.

Why not the library's ``client.mail.send.post(request_body=...)``: it
serialises the body with default separators and formats the whole payload
into a debug message on every request, logging on or off: several
milliseconds for a 1,000-recipient body, which ``benchmarks/bench_sendgrid_transport.py``
measures (it prints both figures). The earlier shortcut through the
client's private ``_make_request``/``_build_url`` is gone: the request
here is the same, built from public parts. ``tests/test_delivery_sendgrid.py``
checks the library still provides each of them.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import orjson

MAIL_SEND_PATH = "/v3/mail/send"


def encode(body: dict[str, Any]) -> bytes:
    """The JSON of a request body, as UTF-8 bytes.

    orjson writes a 1,000-recipient body about ten times faster than the
    standard library (the encoding was a sixth of a send's CPU). A string
    orjson refuses (a lone surrogate, which a JSON attribute can hold) sends
    that body through ``json`` with ASCII escapes instead, as before.
    """
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, separators=(",", ":")).encode("ascii")


class MailSendClient:
    """POSTs Mail Send bodies to ``host`` with ``api_key``; every request bounded by ``timeout`` seconds."""

    def __init__(self, api_key: str, host: str, timeout: float):
        import sendgrid

        library = sendgrid.SendGridAPIClient(api_key=api_key, host=host)
        self.url = host.rstrip("/") + MAIL_SEND_PATH
        self.headers = {**library.client.request_headers, "Content-Type": "application/json"}
        self.timeout = timeout
        self._opener = urllib.request.build_opener()

    def post(self, body: dict[str, Any]) -> Any:
        """The library's ``Response`` to POSTing ``body``.

        Raises the library's HTTPError subclasses for an HTTP error answer,
        and urllib's URLError (nothing went out in full) or OSError (a
        timeout or dropped connection after sending) as urllib raises them.
        """
        from urllib.error import HTTPError

        from python_http_client.client import Response
        from python_http_client.exceptions import handle_error

        payload = encode(body)
        request = urllib.request.Request(self.url, data=payload, headers=self.headers, method="POST")
        try:
            return Response(self._opener.open(request, timeout=self.timeout))
        except HTTPError as err:
            raise handle_error(err) from None
