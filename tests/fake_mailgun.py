"""A local server speaking Mailgun's Messages API, for tests and benchmarks.

Written from Mailgun's published API reference, as read on 2026-12-02:
https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages
(``POST /v3/{domain_name}/messages``), the batch sending and recipient
variables guide
(https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending),
and the API response codes page
(https://documentation.mailgun.com/docs/mailgun/api-reference/api-overview).

``POST /v3/<domain>/messages`` checks, as Mailgun does:

- basic auth ``api:<key>`` (else 401 ``Forbidden``) and the domain (else
  404 ``{"message": "Domain not found: <domain>"}``);
- the form, multipart/form-data or urlencoded: ``from`` and ``to``
  required, ``text`` or ``html`` required; at most 1,000 recipients over
  ``to``, ``cc`` and ``bcc`` ("Too many recipients; max is 1000");
  ``recipient-variables`` a JSON object of objects; header names ASCII;
  the ``o:``, ``h:``, ``v:`` options at most 16 kB together;
- every address: RFC 5321/5322 syntax, ASCII only ("HTTP send will error
  with 'parameter is not a valid address'"), or listed in ``refuse``: the
  whole request is a 400 ``{"message": "to parameter is not a valid
  address. please check documentation"}`` that names no culprit, as the
  real API answers;

then answers 200 ``{"id": "<...@domain>", "message": "Queued. Thank you."}``.

With ``recipient-variables``, each ``to`` address gets its own message
(batch sending): ``messages`` records one dict per recipient with every
``%recipient.KEY%`` replaced from that recipient's variables (an unknown
key stays as it is, as Mailgun leaves it), in subject, text, html, ``h:``
headers and ``v:`` variables; ``delivered`` lists the accepted addresses
in order, so a test can prove nobody got a message twice.

Faults for the next requests are queued with :meth:`FakeMailgun.fail_next`:
``429`` (with ``Retry-After``), ``500``, ``502``, ``503``, ``504``, ``401``,
``400``, ``"drop"`` (read the whole body, then close without an answer),
``"hang"`` (answer only after ``release()`` or a few seconds: the client's
timeout fires first) and ``"slow"`` (answer normally after ``delay``
seconds). ``validate=False`` and ``record=False`` turn the checks and the
recording off for benchmarks. Run as a script it prints its URL and serves
until killed.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

MAX_RECIPIENTS = 1000
MAX_OPTIONS_BYTES = 16 * 1024
INVALID = "{} parameter is not a valid address. please check documentation"
_PATH = re.compile(r"^/v3/([^/]+)/messages/?$")
_VARIABLE = re.compile(r"%recipient\.([^%]+)%")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = re.compile(rf'(?:{_ATOM}(?:\.{_ATOM})*|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")'
                      r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def split_mailboxes(value: str) -> list[tuple[str, str]]:
    """``(name, address)`` for each comma-separated mailbox of a ``to`` value (commas in quotes kept)."""
    pieces, current, quoted, escaped = [], [], False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    result = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if piece.endswith(">"):
            where, quoted = -1, False
            for position, char in enumerate(piece):
                if char == '"' and (position == 0 or piece[position - 1] != "\\"):
                    quoted = not quoted
                elif char == "<" and not quoted:
                    where = position
            if where >= 0:
                result.append((piece[:where].strip(), piece[where + 1:-1].strip()))
                continue
        result.append(("", piece))
    return result


def parse_form(content_type: str, raw: bytes) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a multipart/form-data or urlencoded body, in order."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
        fields = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            fields.append((str(name), payload.decode("utf-8")))
        return fields
    return parse_qsl(raw.decode("ascii"), keep_blank_values=True)


def check(fields: list[tuple[str, str]], refuse=frozenset()) -> tuple[str | None, list[tuple[str, str]], dict]:
    """Mailgun's 400 message for a form (None when accepted), its recipients and recipient-variables."""
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    if not values.get("from"):
        return "from parameter is missing", [], {}
    if not values.get("to"):
        return "to parameter is missing", [], {}
    if not (values.get("text") or values.get("html")):
        return "Need at least one of 'text' or 'html' parameters specified", [], {}
    for name in values:
        if name.startswith("h:") and not name.isascii():
            return f"Header name must be pure ASCII: {name[2:]}", [], {}
    options = sum(len(n.encode()) + len(v.encode()) for n, v in fields if n[:2] in ("o:", "h:", "v:"))
    if options > MAX_OPTIONS_BYTES:
        return "Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total", [], {}
    variables: dict = {}
    if values.get("recipient-variables"):
        try:
            variables = json.loads(values["recipient-variables"][-1])
        except ValueError:
            return "recipient-variables parameter is not a valid JSON", [], {}
        if not isinstance(variables, dict) or not all(isinstance(v, dict) for v in variables.values()):
            return "recipient-variables parameter is not a valid JSON", [], {}
    senders = split_mailboxes(values["from"][0])
    if len(senders) != 1 or not _ADDRESS.fullmatch(senders[0][1]):
        return INVALID.format("from"), [], {}
    recipients = []
    for kind in ("to", "cc", "bcc"):
        for value in values.get(kind, []):
            for name, address in split_mailboxes(value):
                if not _ADDRESS.fullmatch(address) or address.lower() in refuse:
                    return INVALID.format(kind), [], {}
                if kind == "to":
                    recipients.append((name, address))
    total = sum(len(split_mailboxes(v)) for kind in ("to", "cc", "bcc") for v in values.get(kind, []))
    if total > MAX_RECIPIENTS:
        return f"Too many recipients; max is {MAX_RECIPIENTS}", [], {}
    return None, recipients, variables


def render(fields: list[tuple[str, str]], name: str, address: str, variables: dict) -> dict:
    """The message one recipient gets in a batch send: every %recipient.KEY% replaced from their variables."""
    mine = variables.get(address, {})

    def fill(text: str) -> str:
        return _VARIABLE.sub(lambda m: str(mine[m.group(1)]) if m.group(1) in mine else m.group(0), text)

    first = {}
    for key, value in fields:
        first.setdefault(key, value)
    return {
        "to": address, "name": name, "from": first.get("from"), "subject": fill(first.get("subject", "")),
        "text": fill(first.get("text", "")), "html": fill(first.get("html", "")),
        "headers": {k[2:]: fill(v) for k, v in fields if k.startswith("h:")},
        "variables": {k[2:]: fill(v) for k, v in fields if k.startswith("v:")},
        "tags": [v for k, v in fields if k == "o:tag"], "testmode": first.get("o:testmode"),
    }


class FakeMailgun:
    """The server; ``with FakeMailgun(api_key=..., domain=...) as mg: mg.url ...``."""

    def __init__(self, api_key: str = "key-test-secret", domain: str = "mg.clinic.example", *,
                 validate: bool = True, record: bool = True, port: int = 0, refuse=()):
        self.api_key, self.domain = api_key, domain
        self.validate, self.record = validate, record
        self.refuse = {a.lower() for a in refuse}
        self.forms: list[list[tuple[str, str]]] = []  # every accepted form, as posted
        self.messages: list[dict] = []    # one per recipient of an accepted form
        self.delivered: list[str] = []    # accepted to-addresses, in order
        self.requests = 0                 # every POST, answered or not
        self.accepted_recipients = 0
        self.content_types: list[str] = []
        self._faults: list[tuple[object, float]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._auth = "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail_next(self, fault, times: int = 1, delay: float = 0.0) -> None:
        """Answer the next ``times`` requests with ``fault`` (see the module docstring); ``None`` answers normally."""
        with self._lock:
            self._faults.extend([(fault, delay)] * times)

    def take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else (None, 0.0)

    def release(self) -> None:
        """Let a ``hang`` fault end (late: the client has timed out)."""
        self._release.set()

    def reset(self) -> None:
        """Forget what was received (a module-wide server reused between examples)."""
        with self._lock:
            self.forms.clear()
            self.messages.clear()
            self.delivered.clear()
            self.content_types.clear()
            self.requests = self.accepted_recipients = 0
            self._faults.clear()

    def start(self) -> FakeMailgun:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeMailgun:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMailgun/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self, status: int, payload: dict | str, headers: dict | None = None) -> None:
        if isinstance(payload, str):
            data, kind = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        owner: FakeMailgun = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner._lock:
            owner.requests += 1
        match = _PATH.match(self.path)
        if not match:
            return self._answer(404, "404 page not found")
        fault, delay = owner.take_fault()
        if fault is not None and self._fault(fault, delay):
            return
        if self.headers.get("Authorization") != owner._auth:
            return self._answer(401, "Forbidden")
        domain = unquote(match.group(1))
        if domain.lower() != owner.domain.lower():
            return self._answer(404, {"message": f"Domain not found: {domain}"})
        if not (owner.validate or owner.record):
            return self._queued(owner, 0)
        content_type = self.headers.get("Content-Type", "")
        try:
            fields = parse_form(content_type, raw)
        except (ValueError, UnicodeDecodeError):
            return self._answer(400, {"message": "the request body is not a valid form"})
        problem, recipients, variables = check(fields, owner.refuse)
        if problem and owner.validate:
            return self._answer(400, {"message": problem})
        if owner.record:
            rendered = [render(fields, name, address, variables) for name, address in recipients] if variables else []
            with owner._lock:
                owner.forms.append(fields)
                owner.content_types.append(content_type.split(";")[0])
                owner.messages.extend(rendered)
                owner.delivered.extend(address for _, address in recipients)
        self._queued(owner, len(recipients))

    def _queued(self, owner: FakeMailgun, count: int) -> None:
        with owner._lock:
            owner.accepted_recipients += count
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self._answer(200, {"id": f"<{stamp}.{uuid.uuid4().hex[:16]}@{owner.domain}>", "message": "Queued. Thank you."})

    def _fault(self, fault, delay: float) -> bool:
        """Answer with an injected fault; True when the request is done."""
        owner: FakeMailgun = self.server.owner  # type: ignore[attr-defined]
        if fault == "drop":
            self.close_connection = True
            return True  # no answer: the client sees the connection close after its body went out
        if fault == "hang":
            owner._release.wait(5)
            self.close_connection = True
            return True
        if fault == "slow":
            time.sleep(delay)
            return False  # then answer as usual
        status = int(fault)  # type: ignore[call-overload]
        headers = {"Retry-After": str(int(delay))} if status == 429 else {}
        messages = {401: "Forbidden", 400: {"message": "Bad Request"}, 429: {"message": "Too many requests"}}
        self._answer(status, messages.get(status, {"message": "Internal Server Error"}), headers)
        return True


def main() -> None:
    """Serve until killed, printing the URL first (validation and recording off with --fast)."""
    import argparse

    parser = argparse.ArgumentParser(description="a local Mailgun Messages API server")
    parser.add_argument("--fast", action="store_true", help="no validation, no recording")
    parser.add_argument("--api-key", default="key-test-secret")
    parser.add_argument("--domain", default="mg.clinic.example")
    args = parser.parse_args()
    server = FakeMailgun(args.api_key, args.domain, validate=not args.fast, record=not args.fast)
    print(server.url, flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
