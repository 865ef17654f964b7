"""Mailgun webhook requests as Mailgun posts them: one event, signed with the webhook signing key."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

SIGNING_KEY = "whsec-mailgun-test-signing-key-0123456789"


def event_data(kind: str, email: str, *, n: int = 0, variables: dict | None = None, **extra) -> dict:
    """An ``event-data`` object of kind ``kind`` for ``email`` (``variables`` as Mailgun echoes v: values)."""
    data = {"event": kind, "id": f"ev{kind[:3]}{n:06d}Q", "timestamp": 1_790_000_000.25 + n, "recipient": email,
            "recipient-domain": email.rpartition("@")[2], "log-level": "info", "tags": ["newsletter"],
            "message": {"headers": {"to": email, "from": "news@clinic.example", "subject": "News",
                                    "message-id": f"20261202.{n}@mg.clinic.example"}, "size": 4096},
            "user-variables": dict(variables or {})}
    data.update(extra)
    return data


def signed(event: dict, timestamp: int, *, key: str = SIGNING_KEY, token: str | None = None) -> bytes:
    """The request body: the event and a signature block over ``timestamp + token``."""
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
                       "event-data": event}).encode()
