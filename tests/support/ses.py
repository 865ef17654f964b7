"""Amazon SES for tests and benchmarks: moto in server mode, and a small proxy in front of it.

moto (``moto[server]``) is a third-party implementation of the SES v2 API:
it checks that the sender is a verified identity, parses each raw message,
and lists what it accepted at ``/moto-api/data.json`` (``ses.RawMessage``:
``id``, ``source``, ``destinations``, ``raw_data``). It does not implement
``GetAccount``, never throttles and does not check credentials, so
:class:`SesProxy` stands between boto3 and moto and adds, from the SES API v2
reference:

- ``GET /v2/email/account``: ``SendQuota.MaxSendRate`` = ``max_send_rate``;
- credentials: a request signed with another access key id than
  ``access_key`` gets 403 ``UnrecognizedClientException`` ("The security
  token included in the request is invalid."), as SES answers;
- ``EmailTags``: a tag name or value outside ``[A-Za-z0-9_-]{1,256}`` gets
  400 ``BadRequestException`` (API reference, ``MessageTag``);
- ``refuse``: destinations answered 400 ``MessageRejected`` (as the
  sandbox answers an unverified recipient);
- faults for the next ``SendEmail`` requests (:meth:`SesProxy.fail_next`):
  ``"throttle"`` (429 ``TooManyRequestsException``), ``"max-rate"``
  (400 ``Throttling``, "Maximum sending rate exceeded."), ``"500"``,
  ``"503"``, ``"502"``, ``"quota"`` (daily quota spent), ``"drop"`` (read the
  request, close the connection without an answer);
- ``sent_at``: the monotonic arrival time of every ``SendEmail`` moto then
  accepted (the benchmark measures the achieved rate from it).

Everything else is forwarded to moto unchanged. ``GET /bench/stats`` (not
an SES path) answers what ``sent_at`` shows: the count, the span, and the
most messages accepted in any one second.

Run as a script (``python tests/support/ses.py --upstream URL --rate N``) it
prints its URL and serves until killed (benchmarks/bench_ses.py).
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGION = "us-east-1"
ACCESS_KEY = "AKIATESTNEWSLETTER01"
SECRET_KEY = "test-secret-key-not-real"
SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT_PATH = "/v2/email/account"
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def start_moto() -> tuple[Any, str]:
    """A ThreadedMotoServer on 127.0.0.1 (a free port): ``(server, url)``; ``server.stop()`` ends it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def reset_moto(url: str) -> None:
    """Forget everything moto holds (identities, sent messages)."""
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10).close()


def sent_messages(url: str) -> list[dict[str, Any]]:
    """The raw messages moto accepted, from its HTTP data endpoint."""
    with urllib.request.urlopen(url + "/moto-api/data.json", timeout=60) as answer:
        data = json.load(answer)
    return list(data.get("ses", {}).get("RawMessage", []))


def ses_client(url: str, access_key: str = ACCESS_KEY) -> Any:
    import boto3

    return boto3.session.Session().client("sesv2", region_name=REGION, endpoint_url=url,
                                          aws_access_key_id=access_key, aws_secret_access_key=SECRET_KEY)


def verify_identity(url: str, identity: str) -> None:
    """Make ``identity`` (a domain or an address) a verified sender in moto."""
    ses_client(url).create_email_identity(EmailIdentity=identity)


def aws_environment(monkeypatch: Any, access_key: str = ACCESS_KEY) -> None:
    """The standard AWS variables boto3 reads, for the test's credentials (never a real key)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2",
                 "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class SesProxy:
    """SES's answers moto lacks (see the module docstring), in front of moto at ``upstream``."""

    def __init__(self, upstream: str, *, max_send_rate: float = 14.0, access_key: str = ACCESS_KEY,
                 record: bool = True):
        self.upstream = upstream
        self.max_send_rate = max_send_rate
        self.access_key = access_key
        self.refuse: set[str] = set()
        self.record = record
        self.sent_at: list[float] = []
        self.requests = 0
        self.account_requests = 0
        self._faults: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SesProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def stats(self) -> dict[str, Any]:
        """``accepted``, ``seconds`` (first to last acceptance), ``max_per_second`` (any 1-second window)."""
        with self._lock:
            times = sorted(self.sent_at)
        most, low = 0, 0
        for high, when in enumerate(times):
            while when - times[low] >= 1.0:
                low += 1
            most = max(most, high - low + 1)
        return {"accepted": len(times), "seconds": (times[-1] - times[0]) if times else 0.0,
                "max_per_second": most}

    def fail_next(self, *faults: str) -> None:
        with self._lock:
            self._faults.extend(faults)

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        # A fresh connection each time: reusing one that moto's server has just closed
        # would fail a request moto never saw, and show up as a lost answer.
        host, port = self.upstream.split("//", 1)[1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any], error_type: str | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_type:
                    self.send_header("x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/coral/")
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._answer(status, {"message": message}, code)

            def _serve(self, method: str) -> None:
                arrived = time.monotonic()  # what SES meters: when a request arrives
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                if method == "GET" and path == "/bench/stats":
                    return self._answer(200, proxy.stats())
                match = _CREDENTIAL.search(self.headers.get("Authorization") or "")
                if proxy.access_key and (not match or match.group(1) != proxy.access_key):
                    return self._error(403, "UnrecognizedClientException",
                                       "The security token included in the request is invalid.")
                if method == "GET" and path == ACCOUNT_PATH:
                    proxy.account_requests += 1
                    return self._answer(200, {
                        "SendQuota": {"Max24HourSend": 1e9, "MaxSendRate": proxy.max_send_rate, "SentLast24Hours": 0},
                        "SendingEnabled": True, "ProductionAccessEnabled": True, "EnforcementStatus": "HEALTHY",
                        "DedicatedIpAutoWarmupEnabled": False})
                if method == "POST" and path == SEND_PATH:
                    with proxy._lock:
                        proxy.requests += 1
                    refused = self._refusal(body)
                    if refused:
                        return None
                status, headers, payload = proxy._forward(method, self.path, dict(self.headers), body)
                if method == "POST" and path == SEND_PATH and status == 200 and proxy.record:
                    with proxy._lock:
                        proxy.sent_at.append(arrived)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return None

            def _refusal(self, body: bytes) -> bool:
                """Answer a fault or a refusal for this SendEmail request; True when answered."""
                fault = proxy._next_fault()
                if fault == "throttle":
                    self._error(429, "TooManyRequestsException", "Too many requests have been made")
                elif fault == "max-rate":
                    self._error(400, "Throttling", "Maximum sending rate exceeded.")
                elif fault == "quota":
                    self._error(400, "LimitExceededException", "Daily message quota exceeded.")
                elif fault in ("500", "502", "503"):
                    self._error(int(fault), "InternalFailure" if fault == "500" else "ServiceUnavailable",
                                "The request processing has failed because of an unknown error.")
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                if fault is not None:
                    return True
                request = json.loads(body or b"{}")
                for tag in request.get("EmailTags") or []:
                    if not (_TAG.fullmatch(str(tag.get("Name"))) and _TAG.fullmatch(str(tag.get("Value")))):
                        self._error(400, "BadRequestException", "Invalid tag: names and values may only contain "
                                    "ASCII letters, numbers, underscores and dashes, 256 characters at most.")
                        return True
                destinations = (request.get("Destination") or {}).get("ToAddresses") or []
                if any(address in proxy.refuse for address in destinations):
                    self._error(400, "MessageRejected", "Email address is not verified. The following identities "
                                f"failed the check in region US-EAST-1: {', '.join(destinations)}")
                    return True
                return False

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler


def raw_of(message: dict[str, Any]) -> bytes:
    """The raw bytes of one of moto's sent messages."""
    raw = message["raw_data"]
    return raw.encode("utf-8") if isinstance(raw, str) else base64.b64decode(raw)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="SES proxy in front of a moto server")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate", type=float, default=14.0)
    options = parser.parse_args()
    with SesProxy(options.upstream, max_send_rate=options.rate) as running:
        print(running.url, flush=True)
        threading.Event().wait()
