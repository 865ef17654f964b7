"""SendGrid v3 Mail Send through the official ``sendgrid`` library.

One request carries one edition to up to 1,000 recipients: the HTML and text
go once, each recipient is a personalization holding their merge values as
substitutions (both token forms, see ``newsletter.compose.merge``), their
List-Unsubscribe headers and our ids as ``custom_args`` (so webhook events
find their ledger row; SendGrid sets its own Message-ID header, ours travels
in ``custom_args.message_id`` and ``X-Newsletter-Message-ID``).

The body is a plain dict: the library's helper classes cost ~5x more per
1,000-recipient body, and ``Mail.add_personalization`` inserts at index 0.
The library sets no timeout and opens a connection per request; we set one.

Answers (README, "Sending"; outcomes as in ``newsletter.delivery.base``):

- 202 (200 in sandbox mode): QUEUED, provider id from ``X-Message-Id``;
- 429: wait for ``X-RateLimit-Reset`` plus jitter, try again;
- 500, 503 and other 5xx SendGrid answered itself, or a connection that
  failed before the request went out: backoff and try again; when attempts
  run out, FAILED and retryable;
- 502, 504: a gateway answered; SendGrid behind it may have accepted: UNKNOWN;
- a timeout or dropped connection after the body went out: UNKNOWN;
- 400, 403, 413 (other 4xx too): REJECTED, not retryable;
- 401: :class:`PermanentTransportError` naming SENDGRID_API_KEY.

One invalid recipient makes SendGrid refuse the whole request with a 400
(nothing of it is sent). When the 400 blames personalizations, the
transport isolates the culprits (:meth:`SendGridTransport._isolate`): the
personalizations the errors name are rejected with SendGrid's reason and
the rest is sent again; when the errors name none, the request is split in
halves, and so on. The all-good path stays one request; the extra requests
are bounded (two per halving, 2 * log2(recipients) per culprit, for a few culprits).

Addresses and names (``newsletter.delivery.wire``): domains go out
IDNA-encoded; SendGrid offers no SMTPUTF8, so an address with non-ASCII
characters before the @ is REJECTED alone, before the request (the API
would refuse the whole request with "Does not contain a valid address.");
names lose control characters, and a name with ``,`` or ``;`` is left out
(see :func:`_recipient`); ``from.name`` is plain UTF-8 JSON, decoded from
the RFC 2047 word ``formataddr`` makes of a non-ASCII sender name.

The API key is never logged: the library logs its request headers at debug
level, so a filter redacts ``Bearer`` values and drops request payloads.
"""

from __future__ import annotations

import json
import logging
import re
from html import escape

from newsletter.compose.merge import TOKEN, token
from newsletter.delivery.base import BUILD_ERRORS, PermanentTransportError, Transport, results_for, unbuildable
from newsletter.delivery.message import Message, Outcome, Recipient, SendResult
from newsletter.delivery.retry import RetryPolicy
from newsletter.delivery.wire import MAX_NAME, UnsendableAddress, clean_name, one_line, parse_mailbox, wire_address
from newsletter.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
DEFAULT_TIMEOUT = 30.0
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MESSAGE_ID_HEADER = "X-Newsletter-Message-ID"
KEY_HINT = (
    "check SENDGRID_API_KEY: it must be a current SendGrid API key with the Mail Send permission "
    "(Settings > API Keys in the SendGrid console)"
)
_UNKNOWN_5XX = (502, 504)  # a gateway answered; SendGrid behind it may have taken the request


class SendGridTransport(Transport):
    """Sends through SendGrid's v3 Mail Send API, up to 1,000 recipients a request.

    ``host`` is the API base URL (``https://api.eu.sendgrid.com`` for EU data
    residency, a local server in tests); ``sandbox`` asks SendGrid to
    validate without delivering; ``timeout`` bounds each request (seconds);
    ``retry`` is the :class:`RetryPolicy` applied inside :meth:`send_batch`.
    """

    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, api_key: str, *, host: str = DEFAULT_HOST, sandbox: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None):
        super().__init__()
        if not api_key:
            raise ConfigError("SENDGRID_API_KEY is not set", hint=KEY_HINT)
        self._api_key = api_key
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.sandbox = sandbox
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client = None

    @classmethod
    def from_settings(cls, settings, **overrides) -> "SendGridTransport":
        """A transport from :class:`~newsletter.config.Settings` (``overrides`` win)."""
        if not settings.sendgrid_api_key and "api_key" not in overrides:
            raise ConfigError(
                "the sendgrid transport needs SENDGRID_API_KEY",
                hint="export SENDGRID_API_KEY=<a key with Mail Send permission>, or pick another transport "
                "with NEWSLETTER_TRANSPORT",
            )
        options = {"api_key": settings.sendgrid_api_key, "host": settings.sendgrid_host,
                   "sandbox": settings.sendgrid_sandbox, **overrides}
        return cls(options.pop("api_key"), **options)

    def open(self) -> None:
        if self._client is None:
            import sendgrid

            install_redaction(self._api_key)
            self._client = sendgrid.SendGridAPIClient(api_key=self._api_key, host=self.host)
            # The library's default is no timeout at all: a stalled request would hang the send.
            self._client.client.timeout = self.timeout
        super().open()

    def close(self) -> None:
        self._client = None  # the library keeps no connection open between requests
        super().close()

    def _send(self, message: Message, recipients: list[Recipient]) -> list[SendResult]:
        try:
            body, included, results = build_body(message, recipients, sandbox=self.sandbox)
        except UnsendableAddress as exc:
            raise PermanentTransportError(f"SendGrid cannot send from this address: {exc}",
                                          hint="check NEWSLETTER_FROM (and the reply-to address)") from None
        if included:
            chosen = [recipients[i] for i in included]
            answers, errors = self._post_with_retries(body, chosen)
            if errors is not None and len(chosen) > 1:
                try:
                    answers = self._isolate(body, chosen, answers, errors)
                except PermanentTransportError as exc:
                    # Parts already accepted must be recorded, or a resume would send them twice.
                    for index, answer in zip(included, exc.results or ()):
                        results[index] = answer
                    exc.results = results  # type: ignore[assignment]
                    raise
            for index, answer in zip(included, answers):
                results[index] = answer
        return results  # type: ignore[return-value]

    def _post_with_retries(self, body: dict, recipients: list[Recipient]):
        """Post ``body``; retry where it is safe.

        Returns ``(results, errors)``: one result per recipient, and
        SendGrid's error list when it refused the request with a 400 that
        blames personalizations (None otherwise).
        """
        attempt = 0
        while True:
            attempt += 1
            wait, results, errors = self._attempt(body, recipients, attempt)
            if wait is None:
                return results, errors
            if not self.retry.can_retry(attempt):
                log.warning("sendgrid: giving up after %d attempts (%s)", attempt, results[0].error)
                return results, None
            log.info("sendgrid: %s; retrying in %.1f s", results[0].error, wait)
            self.retry.sleep(wait)

    def _isolate(self, body: dict, recipients: list[Recipient], results: list[SendResult],
                 errors: list[dict]) -> list[SendResult]:
        """After a 400 that blames personalizations: find the culprits, send everyone else.

        A 400 means SendGrid took none of the request, so sending parts of it
        again cannot duplicate. The personalizations the errors name are
        REJECTED with SendGrid's reason and the others go again in one
        request; a 400 that names none splits the request in halves. Finding
        one culprit by halving costs two requests a level, so at most
        ``2 * ceil(log2(n)) * k + 2`` extra requests, ``k`` being the number
        of errors SendGrid listed (one per bad address), 4 at most: beyond
        that, those not yet isolated keep the 400 as their result.
        """
        final: list[SendResult | None] = [None] * len(recipients)
        culprits = min(4, max(1, len(errors)))
        budget = 2 * max(1, (len(recipients) - 1).bit_length()) * culprits + 2
        pending = [(list(range(len(recipients))), results, errors)]
        while pending:
            part, answers, part_errors = pending.pop()
            named = _blamed(part_errors, len(part))
            if len(part) == 1 or (named and len(named) == len(part)):
                for position, index in enumerate(part):
                    final[index] = _rejected(recipients[index], part_errors, position, answers[position])
                continue
            if budget <= 0:
                for position, index in enumerate(part):
                    final[index] = answers[position]
                continue
            if named:
                for position in named:
                    final[part[position]] = _rejected(recipients[part[position]], part_errors, position, answers[position])
                pieces = [[index for position, index in enumerate(part) if position not in named]]
            else:
                middle = len(part) // 2
                pieces = [part[:middle], part[middle:]]
            for piece in pieces:
                budget -= 1
                sub_body = {**body, "personalizations": [body["personalizations"][i] for i in piece]}
                try:
                    sub_results, sub_errors = self._post_with_retries(sub_body, [recipients[i] for i in piece])
                except PermanentTransportError as exc:  # a 401 between two parts: keep what is known
                    exc.results = [result or SendResult(recipient.message_id, Outcome.FAILED, retryable=True,
                                                        error="not attempted: the send stopped")
                                   for recipient, result in zip(recipients, final)]
                    raise
                if sub_errors is not None:
                    pending.append((piece, sub_results, sub_errors))
                else:
                    for index, result in zip(piece, sub_results):
                        final[index] = result
        log.info("sendgrid: a 400 blamed %d of %d recipients; the others went again",
                 sum(1 for r in final if r is not None and r.outcome is Outcome.REJECTED), len(recipients))
        return final  # type: ignore[return-value]

    def _attempt(self, body: dict, recipients: list[Recipient], attempt: int):
        """One request. Returns ``(wait, results, errors)``: ``wait`` is None when
        final; ``errors`` as for :meth:`_post_with_retries`."""
        from urllib.error import URLError

        from python_http_client.exceptions import HTTPError

        try:
            response = self._post(body)
        except HTTPError as exc:
            return self._http_error(exc, recipients, attempt)
        except URLError as exc:
            # urllib wraps only errors raised while connecting and sending: the
            # request never went out in full, so SendGrid cannot have accepted it.
            error = f"connection failed before sending: {_reason(exc.reason)}"
            return self.retry.backoff(attempt), results_for(recipients, Outcome.FAILED, retryable=True, error=error), None
        except OSError as exc:  # timeout, reset, RemoteDisconnected, after the body went out
            error = f"no answer after the request was sent ({_reason(exc)}): it may have been accepted"
            return None, results_for(recipients, Outcome.UNKNOWN, error=error), None
        except Exception as exc:  # http.client.HTTPException and kin: a broken answer
            from http.client import HTTPException

            if not isinstance(exc, HTTPException):
                raise
            error = f"unreadable answer after the request was sent ({type(exc).__name__})"
            return None, results_for(recipients, Outcome.UNKNOWN, error=error), None
        provider_id = response.headers.get("X-Message-Id") if response.headers else None
        return None, results_for(recipients, Outcome.QUEUED, provider_id=provider_id), None

    def _post(self, body: dict):
        """POST ``body`` to /v3/mail/send through the library's client.

        The request goes through the client's ``_make_request`` (its hook for
        exactly this: its error handling, HTTPError subclasses and timeout
        stay the library's). Its ``post`` would also serialise the body with
        default separators and format the whole payload into a debug message
        on every request, logging on or off: about 4 ms of a 600 kB body,
        a tenth of the time of a large send.
        """
        import json
        import urllib.request

        from python_http_client.client import Response

        endpoint = self._client.client.mail.send
        payload = json.dumps(body, separators=(",", ":")).encode("ascii")  # ASCII escapes: the faster encoder
        headers = {**endpoint.request_headers, "Content-Type": "application/json"}
        request = urllib.request.Request(endpoint._build_url(None), data=payload, headers=headers, method="POST")
        return Response(endpoint._make_request(urllib.request.build_opener(), request, timeout=self.timeout))

    def _http_error(self, exc, recipients: list[Recipient], attempt: int):
        status = int(exc.status_code)
        errors = _errors(exc.body)
        detail = f"{status} {_error_text(exc.body, errors)}".strip()
        if status == 401:
            raise PermanentTransportError(
                f"SendGrid refused the API key (401 Unauthorized) at {self.host}", hint=KEY_HINT, status=401
            ) from None
        if status == 429:
            reset = exc.headers.get("X-RateLimit-Reset") if exc.headers else None
            wait = self.retry.rate_limit_wait(reset, attempt)
            return wait, results_for(recipients, Outcome.FAILED, retryable=True, error=f"rate limited ({detail})"), None
        if status in _UNKNOWN_5XX:
            return None, results_for(recipients, Outcome.UNKNOWN, error=f"gateway error, may have been accepted ({detail})"), None
        if status >= 500:
            return self.retry.backoff(attempt), results_for(recipients, Outcome.FAILED, retryable=True, error=detail), None
        blames = status == 400 and any(str(e.get("field") or "").startswith("personalizations") for e in errors)
        return None, results_for(recipients, Outcome.REJECTED, error=detail), (errors if blames else None)

    def __repr__(self) -> str:
        return f"<SendGridTransport host={self.host!r} sandbox={self.sandbox}>"


def build_body(message: Message, recipients: list[Recipient], *, sandbox: bool = False):
    """The v3 request body for ``recipients``, as a plain dict.

    Returns ``(body, included, results)``: ``included`` lists the indexes of
    recipients in the body; ``results`` has one slot per recipient, None for
    those included and a REJECTED result for any SendGrid would refuse (merge
    data over the 10,000-byte substitution limit, ids over the custom_args
    limit), so that one bad row does not sink its 999 neighbours.
    """
    from_name, from_email = _sender(message.from_email)
    # Every token a template uses gets a substitution, empty when the
    # recipient has no value: SendGrid would otherwise leave the raw token.
    plan = _token_plan(message.html, message.text, message.subject)
    subject_fields = {match.group(1) for match in TOKEN.finditer(message.subject)}
    subject = (message.subject, subject_fields) if subject_fields else None
    blanks = {t: "" for pair in plan.values() for t in pair if t is not None}
    shared_args = _strings(message.metadata)
    personalizations, included = [], []
    results: list[SendResult | None] = [None] * len(recipients)
    for index, recipient in enumerate(recipients):
        try:
            entry = _personalization(recipient, plan, blanks, shared_args, subject)
        except BUILD_ERRORS as exc:  # this recipient's data, not the batch's
            results[index] = unbuildable(recipient, exc)
            continue
        if isinstance(entry, str):
            results[index] = SendResult(recipient.message_id, Outcome.REJECTED, error=entry)
            continue
        personalizations.append(entry)
        included.append(index)
    body = {
        "personalizations": personalizations,
        "from": _address(from_email, from_name),
        "subject": message.subject,
        "content": [{"type": "text/plain", "value": message.text}, {"type": "text/html", "value": message.html}],
    }
    if message.reply_to:
        name, email = _sender(message.reply_to)
        body["reply_to"] = _address(email, name)
    if message.headers:
        body["headers"] = {k: str(v) for k, v in message.headers.items()}
    if message.tags:
        body["categories"] = list(dict.fromkeys(str(t)[:255] for t in message.tags))[:MAX_CATEGORIES]
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body, included, results


def _personalization(recipient: Recipient, plan: dict, blanks: dict, shared_args: dict,
                     subject: tuple[str, set[str]] | None = None) -> dict | str:
    """One recipient's personalization, or why SendGrid would refuse it.

    ``subject``: the subject template and the fields it uses, when it uses
    any. A merge value with a line break or other control character would
    break the Subject header SendGrid writes: that recipient gets their own
    subject, merged and on one line.
    """
    subs, size = _substitutions(recipient.merge_data, plan, blanks)
    # ``size`` counts the characters of the merge values; each becomes at most
    # 10 bytes (4 raw + 6 escaped), keys are short tokens: the exact UTF-8
    # count runs only for unusually large merge data.
    if size * 10 + 2_000 > MAX_SUBSTITUTION_BYTES and _over(subs, MAX_SUBSTITUTION_BYTES):
        return "merge data over SendGrid's 10,000-byte substitution limit"
    metadata = _strings(recipient.metadata)
    args = {**shared_args, **metadata, "message_id": recipient.message_id}
    if _over(args, MAX_CUSTOM_ARGS_BYTES - 200):  # room for JSON quoting
        return "metadata over SendGrid's 10,000-byte custom_args limit"
    to = _recipient(recipient.email, recipient.name)
    if isinstance(to, str):
        return to
    headers = {**_strings(recipient.headers), MESSAGE_ID_HEADER: recipient.message_id}
    entry = {"to": [to], "headers": headers, "custom_args": args}
    if subs:
        entry["substitutions"] = subs
    if subject is not None:
        values = recipient.merge_data
        for field in subject[1]:
            value = values.get(field)
            if value and not str(value).isprintable():
                from newsletter.compose.merge import MergeTemplate

                entry["subject"] = one_line(MergeTemplate(subject[0]).render(values)) or "-"
                break
    return entry


_NEEDS_ESCAPE = re.compile("[&<>\"']").search


def _token_plan(*templates: str) -> dict[str, tuple[str | None, str | None]]:
    """For each field the templates use: its escaped-form token and raw-form token, None when unused.

    Only tokens that occur get a substitution: a smaller body, and no escaping
    of values nobody sees (SendGrid substitutes in subject and content only).
    """
    used = {(match.group(1), bool(match.group(2))) for text in templates for match in TOKEN.finditer(text)}
    return {
        field: (token(field) if (field, False) in used else None, token(field, raw=True) if (field, True) in used else None)
        for field in {field for field, _ in used}
    }


def _substitutions(values: dict, plan: dict, blanks: dict) -> tuple[dict[str, str], int]:
    """The substitutions of ``merge.substitutions(values)`` the templates use (``plan``),
    and the characters of their values.

    Every used token is present (``blanks`` holds them empty); a value is
    HTML-escaped only for the escaped form, and only when escaping changes it.
    """
    subs = dict(blanks)
    size = 0
    for field, value in values.items():
        tokens = plan.get(field)
        if tokens is None:
            continue
        if value.__class__ is not str:
            value = "" if value is None else str(value)
        size += len(value)
        if tokens[0] is not None:
            subs[tokens[0]] = escape(value, quote=True) if _NEEDS_ESCAPE(value) else value
        if tokens[1] is not None:
            subs[tokens[1]] = value
    return subs, size


def _strings(mapping: dict) -> dict[str, str]:
    """``mapping`` with every value a string (SendGrid refuses other JSON types); may be ``mapping`` itself."""
    for value in mapping.values():
        if value.__class__ is not str:
            return {k: str(v) for k, v in mapping.items()}
    return mapping


def _over(mapping: dict, limit: int) -> bool:
    """Whether the UTF-8 size of keys and values exceeds ``limit`` (cheap when clearly under)."""
    chars = sum(map(len, mapping)) + sum(map(len, mapping.values()))
    if chars * 4 <= limit:  # a character is at most 4 bytes
        return False
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items()) > limit


def _address(email: str, name: str | None) -> dict:
    return {"email": email, "name": name} if name else {"email": email}


def _recipient(email: str, name: str | None) -> dict | str:
    """The ``to`` entry for one recipient, or why SendGrid cannot take the address.

    SendGrid documents that ``to.name`` "cannot include either the ; or ,
    characters" and that such messages may be dropped while the API answers
    202. Quoting the name is not documented to help, so a name with either is
    left out: the message goes to the bare address (the greeting's merge
    field still has the full name) rather than being lost.
    """
    if name and name.isascii() and name.isprintable() and len(name) <= MAX_NAME and "," not in name and ";" not in name:
        name = name.strip()  # the common case, as clean_name would leave it
    elif name:
        name = clean_name(name)
        if "," in name or ";" in name:
            name = ""
    try:
        address = wire_address(email)
    except UnsendableAddress as exc:
        return str(exc)
    if not address.isascii():
        return "SendGrid does not accept non-ASCII characters before the @ (it offers no SMTPUTF8)"
    return {"email": address, "name": name} if name else {"email": address}


def _sender(value: str) -> tuple[str, str]:
    """``(name, address)`` of the sender (or reply-to) setting, as SendGrid takes them.

    The name is plain UTF-8 (JSON carries it), never the RFC 2047 word
    ``formataddr`` writes; SendGrid states "Unicode encoding is not supported
    for the from field", so a non-ASCII local part raises UnsendableAddress.
    """
    name, address = parse_mailbox(value)
    if not address.isascii():
        raise UnsendableAddress("SendGrid does not accept non-ASCII characters before the @ of the sender")
    return name, address


_INDEX = re.compile(r"personalizations\.(\d+)(?:\.|$)")


def _errors(body) -> list[dict]:
    """SendGrid's ``errors`` list from a response body ([] when it has none)."""
    try:
        errors = json.loads(body)["errors"]
    except (ValueError, KeyError, TypeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _blamed(errors: list[dict], count: int) -> set[int]:
    """The personalization indexes (below ``count``) the errors name."""
    named = set()
    for error in errors:
        match = _INDEX.match(str(error.get("field") or ""))
        if match and int(match.group(1)) < count:
            named.add(int(match.group(1)))
    return named


def _rejected(recipient: Recipient, errors: list[dict], position: int, fallback: SendResult) -> SendResult:
    """REJECTED with SendGrid's reason for the personalization at ``position``."""
    reasons = []
    for error in errors:
        match = _INDEX.match(str(error.get("field") or ""))
        if match and int(match.group(1)) == position:
            where = str(error["field"])[match.end():]  # "to.0.email", without the request's index
            reasons.append(f"{error.get('message')} ({where})" if where else str(error.get("message")))
    error = f"400 {'; '.join(reasons)}" if reasons else fallback.error
    return SendResult(recipient.message_id, Outcome.REJECTED, error=redact(error or "400")[:500])


def _error_text(body, errors: list[dict] | None = None) -> str:
    """SendGrid's error messages from a response body, short."""
    errors = _errors(body) if errors is None else errors
    if errors:
        text = "; ".join(f"{e.get('field') or ''}: {e.get('message')}".lstrip(": ") for e in errors)
    else:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    return redact(text)[:500]


def _reason(exc) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {redact(str(exc))}"


_BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)
_SG_KEY = re.compile(r"SG\.[\w-]{8,}\.[\w-]{8,}")


_SECRETS: set[str] = set()  # the keys of transports opened in this process


def redact(text: str) -> str:
    """``text`` with known keys, bearer tokens and SendGrid-shaped API keys replaced."""
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    return _SG_KEY.sub("[redacted]", _BEARER.sub(r"\1[redacted]", text))


class _RedactFilter(logging.Filter):
    """Keeps the API key (request headers) and recipients' data (payloads) out of logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("PAYLOAD:"):
            text = "PAYLOAD: [omitted]"
        record.msg, record.args = redact(text), None
        return True


def install_redaction(secret: str | None = None) -> None:
    """Attach the redacting filter to the library's logger (once); remember ``secret``."""
    if secret:
        _SECRETS.add(secret)
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())
