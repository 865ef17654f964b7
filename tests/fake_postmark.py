"""A local server speaking Postmark's batch email API, for tests and benchmarks.

Follows Postmark's published API reference as read on 2026-12-02:
https://postmarkapp.com/developer/api/email-api ("Send batch emails"),
https://postmarkapp.com/developer/api/overview ("HTTP response codes",
"API error codes") and https://postmarkapp.com/support/article/1125-custom-metadata-faq.

``POST /email/batch``:

- 401 ``{"ErrorCode": 10}`` unless ``X-Postmark-Server-Token`` is the token;
- 413 for a body over 50 MB; 422 ``ErrorCode 402`` for a body that is not a
  JSON array (``Received invalid JSON input``), ``ErrorCode 410`` for more
  than 500 messages;
- otherwise 200 with one result per message, in order,
  ``{ErrorCode, Message, MessageID, SubmittedAt, To}``: ``ErrorCode 0`` when
  accepted; ``300`` (invalid email request) for a missing or unparsable
  ``From``/``To`` (an address of the wrong shape, non-ASCII anywhere in it:
  Postmark offers no SMTPUTF8 and takes IDN domains in their ``xn--`` form
  only), more than 50 recipients, no ``TextBody`` or ``HtmlBody``, headers
  that are not ``[{Name, Value}]``, a ``Tag`` over 1,000 characters,
  metadata over its limits (10 fields, keys up to 20 and values up to 80
  characters, no keys equal but for case), a message over 10 MB;
  ``1235`` for a ``MessageStream`` the server does not have; ``406``
  (inactive recipient) for an address listed in ``inactive``; ``300`` also
  for an address listed in ``refuse`` (Postmark's address check is not
  published: a test names what it refuses).

Faults for the next requests are queued with :meth:`FakePostmark.fail_next`:
``429``, ``500``, ``502``, ``503``, ``504``, ``401``, ``422`` (with ErrorCode
:data:`FAULT_422_CODE`, 400 "sender signature not found" unless a test sets
another), ``"item-429"`` (a 200 whose first message has ErrorCode 429, the
rest accepted), ``"drop"`` (read the body, close without
an answer) and ``"slow"`` (read the body and answer only after ``release()``
or a few seconds: the client's timeout fires first).

``delivered`` lists every accepted ``To`` address, in order (when
recording), so a test can prove nobody got a message twice. ``validate=False``
and ``record=False`` turn the checks and the recording off for benchmarks.
Run as a script it prints its URL and serves until killed.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_MESSAGES = 500
MAX_REQUEST_BYTES = 50_000_000
MAX_MESSAGE_BYTES = 10_000_000
MAX_RECIPIENTS = 50
MAX_TAG = 1000
TOKEN_HEADER = "X-Postmark-Server-Token"
# The ErrorCode of an injected 422 (a test may change it) and Postmark's messages for the codes it uses.
FAULT_422_CODE = 400
FAULT_422_MESSAGES = {
    400: "The 'From' address you supplied is not a Sender Signature on your account.",
    401: "Sender signature not confirmed.",
    405: "Not allowed to send: your account has run out of credits.",
    412: "Account is pending approval.",
    413: "Account may not send.",
}

# The plain address shape Postmark takes (ASCII only; IDN domains as xn--).
_ADDRESS = re.compile(r'(?:[A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+)*|"[\x20-\x7e]*")'
                      r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
_MAILBOX = re.compile(r'\s*(?:"((?:[^"\\\r\n]|\\.)*)"|([^"<>,;\r\n]*?))\s*'   # a quoted or plain name
                      r'<((?:"(?:[^"\\\r\n]|\\.)*"|[^<>\s"]+)@[^<>\s]+)>\s*')  # <address>


def split_addresses(value: str) -> list[str]:
    """A ``To`` value split on the commas outside quoted names."""
    parts, current, quoted, escaped = [], [], False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def parse_mailbox(value: str) -> tuple[str, str] | None:
    """``(name, address)`` of ``"Name" <a@b>``, ``Name <a@b>`` or ``a@b``; None when unparsable."""
    if _ADDRESS.fullmatch(value.strip()):
        return "", value.strip()
    match = _MAILBOX.fullmatch(value)
    if not match or not _ADDRESS.fullmatch(match.group(3)):
        return None
    name = match.group(1) if match.group(1) is not None else match.group(2)
    return re.sub(r"\\(.)", r"\1", name or ""), match.group(3)


def message_error(message, streams, inactive, refuse=frozenset()) -> tuple[int, str] | None:
    """``(ErrorCode, Message)`` Postmark would answer for one batch message, or None when it is accepted."""
    if not isinstance(message, dict):
        return 402, "Received invalid JSON input."
    sender = message.get("From")
    if not isinstance(sender, str) or parse_mailbox(sender) is None:
        return 300, "Invalid 'From' address."
    to = message.get("To")
    if not isinstance(to, str) or not to.strip():
        return 300, "Zero recipients specified"
    addresses = []
    for entry in split_addresses(to) + split_addresses(str(message.get("Cc") or "")) + split_addresses(
            str(message.get("Bcc") or "")):
        parsed = parse_mailbox(entry)
        if parsed is None or parsed[1].lower() in refuse:
            return 300, "Error parsing 'To': Illegal email address. It must contain the '@' symbol."
        addresses.append(parsed[1])
    if len(addresses) > MAX_RECIPIENTS:
        return 300, f"Maximum of {MAX_RECIPIENTS} recipients allowed per message"
    if not message.get("HtmlBody") and not message.get("TextBody"):
        return 300, "Provide either email TextBody or HtmlBody or both."
    for key in ("Subject", "HtmlBody", "TextBody", "Tag", "ReplyTo", "MessageStream"):
        if key in message and message[key] is not None and not isinstance(message[key], str):
            return 402, f"'{key}' must be a string"
    if len(message.get("Tag") or "") > MAX_TAG:
        return 300, "Tag must be at most 1000 characters"
    if message.get("ReplyTo") and any(parse_mailbox(e) is None for e in split_addresses(message["ReplyTo"])):
        return 300, "Invalid 'ReplyTo' address."
    headers = message.get("Headers", [])
    if not isinstance(headers, list) or not all(
            isinstance(h, dict) and set(h) == {"Name", "Value"} and isinstance(h["Name"], str)
            and isinstance(h["Value"], str) and h["Name"] for h in headers):
        return 300, "Headers must be a list of {Name, Value} objects with string values"
    if any("\r" in h["Name"] + h["Value"] or "\n" in h["Name"] + h["Value"] for h in headers):
        return 300, "Header names and values must not contain line breaks"
    metadata = message.get("Metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > 10:
        return 300, "Metadata must be an object of at most 10 fields"
    folded = [str(k).lower() for k in metadata]
    if len(folded) != len(set(folded)):
        return 300, "Metadata keys must be unique (ignoring case)"
    for key, value in metadata.items():
        if not key or len(key) > 20 or not isinstance(value, str) or len(value) > 80:
            return 300, "Metadata keys are at most 20 characters and values strings of at most 80"
    if message.get("MessageStream", "outbound") not in streams:
        return 1235, "The message stream for the provided 'ID' was not found."
    if len(json.dumps(message)) > MAX_MESSAGE_BYTES:
        return 300, "The message size exceeds 10 MB."
    if any(address.lower() in inactive for address in addresses):
        return 406, ("You tried to send to recipient(s) that have been marked as inactive. Found inactive "
                     "addresses: (hidden). Inactive recipients are ones that have generated a hard bounce, "
                     "a spam complaint, or a manual suppression.")
    return None


class FakePostmark:
    """The server; ``with FakePostmark(token=...) as pm: pm.url ...``."""

    def __init__(self, token: str = "pm-test-token", *, validate: bool = True, record: bool = True, port: int = 0,
                 streams=("outbound", "broadcast"), inactive=(), refuse=()):
        self.token = token
        self.validate = validate
        self.record = record
        self.streams = set(streams)
        self.inactive = {a.lower() for a in inactive}
        self.refuse = {a.lower() for a in refuse}  # addresses Postmark's own check refuses (ErrorCode 300)
        self.messages: list[dict] = []     # every accepted message, in order
        self.delivered: list[str] = []     # accepted To values, in order
        self.requests = 0
        self.accepted = 0
        self._faults: list[object] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail_next(self, fault, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``fault`` (see the module docstring)."""
        with self._lock:
            self._faults.extend([fault] * times)

    def release(self) -> None:
        self._release.set()

    def take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def start(self) -> FakePostmark:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakePostmark:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.delivered.clear()
            self.requests = self.accepted = 0
            self._faults.clear()

    def answer(self, messages: list) -> list[dict]:
        """The per-message results for a batch (recording what is accepted)."""
        results = []
        now = datetime.now(UTC).isoformat()
        for message in messages:
            error = message_error(message, self.streams, self.inactive, self.refuse) if self.validate else None
            to = message.get("To", "") if isinstance(message, dict) else ""
            if error:
                results.append({"ErrorCode": error[0], "Message": error[1], "To": to})
                continue
            results.append({"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()), "SubmittedAt": now,
                            "To": to})
            if self.record:
                with self._lock:
                    self.messages.append(message)
                    self.delivered.append(to)
        with self._lock:
            self.accepted += sum(1 for r in results if r["ErrorCode"] == 0)
        return results


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakePostmark/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_POST(self):
        owner: FakePostmark = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return self._answer(413, {"ErrorCode": 413, "Message": "Payload Too Large"})
        raw = self.rfile.read(length)
        with owner._lock:
            owner.requests += 1
        if self.path.rstrip("/") != "/email/batch":
            return self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
        fault = owner.take_fault()
        if fault is not None and self._fault(fault, raw):
            return
        if self.headers.get(TOKEN_HEADER) != owner.token:
            return self._answer(401, {"ErrorCode": 10, "Message": "The Server API token you provided is invalid."})
        if not owner.validate and not owner.record:
            count = raw.count(b'{"To":')  # each of our messages starts so; quotes inside strings are escaped
            with owner._lock:
                owner.accepted += count
            item = b'{"ErrorCode":0,"Message":"OK","MessageID":"00000000-0000-0000-0000-000000000000","To":""}'
            return self._answer(200, b"[" + b",".join([item] * count) + b"]")
        try:
            messages = json.loads(raw)
        except ValueError:
            messages = None
        if not isinstance(messages, list):
            return self._answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        if len(messages) > MAX_MESSAGES:
            return self._answer(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
        self._answer(200, owner.answer(messages))

    def _fault(self, fault, raw: bytes) -> bool:
        """Answer with an injected fault; True when the request is done."""
        owner: FakePostmark = self.server.owner
        if fault == "drop":
            self.close_connection = True
            return True
        if fault == "slow":
            owner._release.wait(5)
            self.close_connection = True
            return True
        if fault == "item-429":
            messages = json.loads(raw)
            results = [{"ErrorCode": 429, "Message": "Rate limit exceeded", "To": messages[0].get("To", "")}]
            results += owner.answer(messages[1:])
            self._answer(200, results)
            return True
        status = int(fault)
        bodies = {401: (10, "The Server API token you provided is invalid."),
                  422: (FAULT_422_CODE, FAULT_422_MESSAGES.get(FAULT_422_CODE, "Unprocessable entity")),
                  429: (429, "Rate limit exceeded"), 500: (500, "Internal server error"),
                  503: (503, "Service unavailable")}
        code, text = bodies.get(status, (status, "error"))
        headers = {"Retry-After": "0"} if status == 429 else None
        self._answer(status, {"ErrorCode": code, "Message": text}, headers)
        return True


def main() -> None:
    """Serve until killed, printing the URL first (validation and recording off with --fast)."""
    import argparse

    parser = argparse.ArgumentParser(description="a local Postmark batch email server")
    parser.add_argument("--fast", action="store_true", help="no validation, no recording")
    parser.add_argument("--token", default="pm-test-token")
    args = parser.parse_args()
    server = FakePostmark(args.token, validate=not args.fast, record=not args.fast)
    print(server.url, flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
