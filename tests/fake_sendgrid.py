"""A local server speaking SendGrid's v3 Mail Send API, for tests and benchmarks.

``POST /v3/mail/send`` checks ``Authorization: Bearer <key>``, validates the
JSON body against the request schema of SendGrid's own OpenAPI spec
(``tests/data/sendgrid/tsg_mail_v3.json``, MIT, Twilio) plus the limits the
documentation states and the schema does not express, then answers 202 with
an ``X-Message-Id`` header and records the body.

Faults for the next requests are queued with :meth:`FakeSendGrid.fail_next`:
``429`` (with ``X-RateLimit-Reset``), ``500``, ``401``, ``400``, ``403``,
``413``, ``"drop"`` (read the whole body, then close the connection without
an answer) and ``"hang"`` (read the body and answer only after ``release()``
or a few seconds: the client's timeout fires first).

Recipients are judged as SendGrid judges them:

- an address SendGrid would not take (non-ASCII anywhere: SendGrid offers no
  SMTPUTF8 and takes IDN domains only in their ``xn--`` form; not of the
  shape local@domain; or listed in ``refuse``) makes the whole request a 400
  whose errors name each culprit, ``"field": "personalizations.N.to.M.email"``,
  ``"message": "Does not contain a valid address."``, as the real API does
  (its error shape is the spec's ``ErrorResponse``); ``anonymous_errors=True``
  names only ``"personalizations"`` (to exercise a client's bisection);
- a ``to.name`` with ``,`` or ``;`` is answered 202 but the recipient is
  *dropped*: SendGrid documents that such names "cannot include either the
  ; or , characters" and such messages may vanish silently. They are listed
  in ``dropped`` and not counted as accepted, so a test can prove none are.

``delivered`` lists every accepted ``to`` address, in order (when recording),
so a test can prove nobody got a message twice.

``validate=False`` and ``record=False`` turn the checks and the recording off
for benchmarks. Run as a script it prints its port and serves until killed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SPEC = Path(__file__).parent / "data" / "sendgrid" / "tsg_mail_v3.json"
MAX_RECIPIENTS = 1000          # to + cc + bcc over all personalizations
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, keys and values
MAX_CUSTOM_ARGS_BYTES = 10_000   # per personalization and at the top level
RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}


def load_request_schema() -> dict:
    """The /mail/send request schema, its ``$ref``s resolvable, with the spec's slip fixed."""
    spec = json.loads(SPEC.read_text())
    body = spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    # The spec types top-level custom_args as a string; the API and the official
    # library send an object of string values (DESIGN.md section 6).
    body["properties"]["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}
    # Documented but not in the schema: header and custom_args values are strings.
    body["properties"]["headers"]["additionalProperties"] = {"type": "string"}
    item = body["properties"]["personalizations"]["items"]["properties"]
    item["headers"]["additionalProperties"] = {"type": "string"}
    item["custom_args"]["additionalProperties"] = {"type": "string"}
    # A root whose "#/components/..." pointers resolve inside this same document.
    return {"$ref": "#/components/requestBodies/PostMailSend/content/application~1json/schema",
            "components": spec["components"]}


def _validator():
    import jsonschema

    schema = load_request_schema()
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _size(mapping: dict) -> int:
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in mapping.items())


# SendGrid's address check is not published; this is the plain shape it
# takes (ASCII only: its docs say "Unicode encoding is not supported for the
# from field", and it offers no SMTPUTF8 for recipients either).
_ADDRESS = re.compile(r'(?:[A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&\'*+/=?^_`{|}~-]+)*|"[\x20-\x7e]*")'
                      r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
INVALID_ADDRESS = "Does not contain a valid address."
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"


def address_errors(body: dict, refuse=frozenset(), anonymous: bool = False) -> list[dict]:
    """A 400's errors for every address SendGrid would refuse (see the module docstring)."""
    def bad(address) -> bool:
        return not isinstance(address, str) or not _ADDRESS.fullmatch(address) or address.lower() in refuse

    errors = []
    for where in ("from", "reply_to"):
        if isinstance(body.get(where), dict) and bad(body[where].get("email")):
            errors.append({"field": f"{where}.email", "message": INVALID_ADDRESS, "help": HELP})
    for index, p in enumerate(body.get("personalizations", [])):
        for kind in ("to", "cc", "bcc"):
            for position, entry in enumerate(p.get(kind, [])):
                if bad(entry.get("email")):
                    field = "personalizations" if anonymous else f"personalizations.{index}.{kind}.{position}.email"
                    errors.append({"field": field, "message": INVALID_ADDRESS, "help": HELP})
    return errors


def is_dropped(entry: dict) -> bool:
    """Whether SendGrid may silently drop the message to this ``to`` entry (a name with , or ;)."""
    name = entry.get("name") or ""
    return "," in name or ";" in name


def limit_errors(body: dict) -> list[dict]:
    """Errors for the documented limits the JSON schema does not express."""
    errors = []
    personalizations = body.get("personalizations", [])
    total = sum(len(p.get(kind, [])) for p in personalizations for kind in ("to", "cc", "bcc"))
    if total > MAX_RECIPIENTS:
        errors.append({"field": "personalizations",
                       "message": f"{total} recipients: at most {MAX_RECIPIENTS} per request"})
    for index, p in enumerate(personalizations):
        where = f"personalizations.{index}"
        if _size(p.get("substitutions", {})) > MAX_SUBSTITUTION_BYTES:
            errors.append({"field": f"{where}.substitutions", "message": "substitutions exceed 10000 bytes"})
        if len(json.dumps(p.get("custom_args", {}))) > MAX_CUSTOM_ARGS_BYTES:
            errors.append({"field": f"{where}.custom_args", "message": "custom_args exceed 10000 bytes"})
        addresses = [a.get("email", "").lower() for kind in ("to", "cc", "bcc") for a in p.get(kind, [])]
        if len(addresses) != len(set(addresses)):
            errors.append({"field": where, "message": "each email address in a personalization must be unique"})
        if not (p.get("subject") or body.get("subject") or body.get("template_id")):
            errors.append({"field": f"{where}.subject", "message": "a subject is required"})
        for name in p.get("headers", {}):
            if name.lower() in RESERVED_HEADERS:
                errors.append({"field": f"{where}.headers", "message": f"header {name} may not be overridden"})
    if len(json.dumps(body.get("custom_args", {}))) > MAX_CUSTOM_ARGS_BYTES:
        errors.append({"field": "custom_args", "message": "custom_args exceed 10000 bytes"})
    types = [c.get("type") for c in body.get("content", [])]
    if "text/plain" in types and types[0] != "text/plain":
        errors.append({"field": "content", "message": "text/plain must come first"})
    if len(types) != len(set(types)):
        errors.append({"field": "content", "message": "each content type may appear once"})
    return errors


class FakeSendGrid:
    """The server; ``with FakeSendGrid(api_key=...) as sg: sg.url ...``."""

    def __init__(self, api_key: str = "SG.test-key.secret", *, validate: bool = True, record: bool = True,
                 port: int = 0,
                 refuse=(), anonymous_errors: bool = False):
        self.api_key = api_key
        self.validate = validate
        self.record = record
        self.refuse = {a.lower() for a in refuse}
        self.anonymous_errors = anonymous_errors
        self.bodies: list[dict] = []
        self.delivered: list[str] = []   # accepted to-addresses, in order
        self.dropped: list[str] = []     # to-addresses SendGrid would drop silently
        self.requests = 0            # every POST, answered or not
        self.accepted_recipients = 0
        self._faults: list[object] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._validator = _validator() if validate else None
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail_next(self, fault, times: int = 1, reset_in: float = 0.0) -> None:
        """Answer the next ``times`` requests with ``fault`` (see the module docstring)."""
        with self._lock:
            for _ in range(times):
                self._faults.append((fault, reset_in))

    def release(self) -> None:
        """Let a ``hang`` fault answer (late: the client has timed out)."""
        self._release.set()

    def take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else (None, 0.0)

    def start(self) -> FakeSendGrid:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def check(self, body) -> list[dict]:
        """SendGrid-style errors for ``body`` (empty when it would be accepted)."""
        if not isinstance(body, dict):
            return [{"field": None, "message": "request body must be a JSON object"}]
        errors = [
            {"field": ".".join(str(p) for p in error.absolute_path) or None, "message": error.message}
            for error in self._validator.iter_errors(body)
        ]
        return errors or limit_errors(body) or address_errors(body, self.refuse, self.anonymous_errors)

    def reset(self) -> None:
        """Forget what was received (a module-wide server reused between examples)."""
        with self._lock:
            self.bodies.clear()
            self.delivered.clear()
            self.dropped.clear()
            self.requests = self.accepted_recipients = 0
            self._faults.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSendGrid/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self, status: int, payload: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
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
        owner: FakeSendGrid = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner._lock:
            owner.requests += 1
        if self.path.rstrip("/") != "/v3/mail/send":
            return self._answer(404, {"errors": [{"field": None, "message": "not found"}]})
        fault, reset_in = owner.take_fault()
        if fault is not None and self._fault(fault, reset_in):
            return
        if self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._answer(401, {"errors": [{
                "field": None, "message": "The provided authorization grant is invalid, expired, or revoked"}]})
        status = 202
        if owner.validate or owner.record:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._answer(400, {"errors": [{"field": None, "message": "Bad Request"}]})
            errors = owner.check(body) if owner.validate else []
            if errors:
                return self._answer(400, {"errors": errors})
            entries = [entry for p in body.get("personalizations", []) for entry in p.get("to", [])]
            dropped = [entry["email"] for entry in entries if is_dropped(entry)]
            recipients = len(entries) - len(dropped)
            if body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"):
                status = 200  # SendGrid answers a sandboxed send with 200, not 202
            if owner.record:
                with owner._lock:
                    owner.bodies.append(body)
                    owner.delivered.extend(entry["email"] for entry in entries if not is_dropped(entry))
                    owner.dropped.extend(dropped)
        else:
            recipients = raw.count(b'"to":')  # cheap: one "to" list per personalization
        with owner._lock:
            owner.accepted_recipients += recipients
        self._answer(status, None, {"X-Message-Id": uuid.uuid4().hex[:22]})

    def _fault(self, fault, reset_in: float) -> bool:
        """Answer with an injected fault; True when the request is done."""
        owner: FakeSendGrid = self.server.owner
        if fault == "drop":
            self.close_connection = True
            return True  # no answer: the client sees the connection close after its body went out
        if fault == "hang":
            owner._release.wait(5)
            self.close_connection = True
            return True
        status = int(fault)
        headers = {}
        if status == 429:
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(int(time.time() + reset_in))}
        messages = {401: "The provided authorization grant is invalid, expired, or revoked",
                    403: "The from address does not match a verified Sender Identity",
                    413: "Payload Too Large", 429: "too many requests", 400: "Bad Request"}
        self._answer(status, {"errors": [{"field": None, "message": messages.get(status, "internal error")}]}, headers)
        return True


def main() -> None:
    """Serve until killed, printing the URL first (validation and recording off with --fast)."""
    import argparse

    parser = argparse.ArgumentParser(description="a local SendGrid v3 Mail Send server")
    parser.add_argument("--fast", action="store_true", help="no validation, no recording")
    parser.add_argument("--api-key", default="SG.test-key.secret")
    args = parser.parse_args()
    server = FakeSendGrid(args.api_key, validate=not args.fast, record=not args.fast)
    print(server.url, flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
