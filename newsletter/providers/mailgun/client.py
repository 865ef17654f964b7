"""The one place that talks HTTP to Mailgun: :class:`MessagesClient`, through the official ``mailgun`` SDK.

The SDK (``mailgun.client.Client``, pinned to major version 1) gives the
base URL (``api_url``: a region's API host, or a local stand-in on
127.0.0.1), basic auth as ``api:<key>``, the ``/v3/<domain>/messages``
route, a pooled ``requests`` session and a bounded timeout. Its own
retries are turned off (``RetryPolicy(max_retries=0)``): it would retry a
timeout after the body went out, which can deliver twice; the transport
applies the project's :class:`~newsletter.delivery.retry.RetryPolicy`
where a retry is safe. ``tests/test_delivery_mailgun.py`` checks the SDK
still provides each piece used here.
"""

from __future__ import annotations

from typing import Any

MESSAGES_PATH = "/v3/{domain}/messages"


class MessagesClient:
    """POSTs Messages API forms for ``domain`` to ``host`` with ``api_key``; each request bounded by ``timeout``."""

    def __init__(self, api_key: str, host: str, domain: str, timeout: float):
        from mailgun.client import Client
        from mailgun.config import RetryPolicy

        self.domain = domain
        self.url = host.rstrip("/") + MESSAGES_PATH.format(domain=domain)
        # (connect, read): a refused or unreachable host fails fast; a slow answer gets the whole timeout.
        self._client = Client(auth=("api", api_key), api_url=host, timeout=(min(10.0, timeout), timeout),
                              retry_policy=RetryPolicy(max_retries=0))

    def post(self, fields: list[tuple[str, str]]) -> Any:
        """The ``requests.Response`` to POSTing ``fields`` as multipart/form-data (any HTTP status).

        ``recipient-variables`` goes as a file part: its presence makes
        ``requests`` encode the whole form as multipart, as Mailgun's reference
        shows it (and a large JSON value is not percent-encoded). Raises the
        SDK's ``ApiError`` (its ``__cause__`` the ``requests`` exception) when
        no answer came back.
        """
        data = [(name, value) for name, value in fields if name != "recipient-variables"]
        files = [(name, (None, value.encode())) for name, value in fields if name == "recipient-variables"]
        return self._client.messages.create(data=data, files=files, domain=self.domain)

    def close(self) -> None:
        self._client.close()
