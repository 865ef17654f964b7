"""Helpers shared by the public-endpoint tests (test_web*.py).

A ``Site`` is the app of ``newsletter serve`` on a test workspace, driven
through Starlette's TestClient, with a memory transport for confirmation
emails, a settable clock, and a webhook key pair generated here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from newsletter.delivery.memory import MemoryTransport

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class KeyPair:
    """An ECDSA P-256 key pair; ``public`` is base64 DER, the way SendGrid shows its key."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        """The headers SendGrid sends: signature over timestamp + raw body."""
        signature = self.private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {SIGNATURE: base64.b64encode(signature).decode(), TIMESTAMP: str(timestamp),
                "Content-Type": "application/json"}


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


class Site:
    """The public app on a workspace, with what the tests need to look at."""

    def __init__(self, settings, store, keys: KeyPair | None):
        from newsletter.web.app import create_app
        from starlette.testclient import TestClient

        self.keys = keys
        self.settings = dataclasses.replace(settings, sendgrid_webhook_key=keys.public if keys else None)
        self.store = store
        self.transport = MemoryTransport()
        self.clock = Clock()
        self.app = create_app(self.settings, store, transport_factory=lambda _s: self.transport, clock=self.clock)
        self.client = TestClient(self.app, follow_redirects=False)

    def post_events(self, events, *, timestamp: int | None = None, keys: KeyPair | None = None,
                    body: bytes | None = None):
        body = body if body is not None else json.dumps(events).encode()
        stamp = int(self.clock.now) if timestamp is None else timestamp
        return self.client.post("/webhooks/sendgrid", content=body, headers=(keys or self.keys).headers(body, stamp))

    def confirm_links(self) -> list[str]:
        links = []
        for message in self.transport.outbox:
            text = message.get_body(("plain",)).get_content()
            links += re.findall(r"\S+/confirm/\S+", text)
        return links


@contextmanager
def open_site(keys: KeyPair | None, **changes) -> Iterator[Site]:
    """A :class:`Site` on the current workspace's settings (with ``changes``), its store closed after."""
    from newsletter.config import load_settings
    from newsletter.store.db import open_store

    settings = dataclasses.replace(load_settings(), **changes)
    store = open_store(settings)
    try:
        yield Site(settings, store, keys=keys)
    finally:
        store.close()


#: What a test that posts signups but is about something else than the proof of work says: off, on purpose.
NO_PROOF_OF_WORK = {"signup_proof_of_work": False}
#: The proof of work on (the default) and cheap to solve (1 PBKDF2 iteration a try) for tests that solve it.
CHEAP_PROOF_OF_WORK = {"signup_proof_of_work": True, "signup_proof_of_work_cost": 1}


def solved_challenge(client) -> str:
    """A new challenge of ``GET /subscribe/challenge`` solved as the pages' script would (the ``altcha``
    package's own solver): the value of the form's ``altcha`` field."""
    import altcha

    answer = client.get("/subscribe/challenge")
    assert answer.status_code == 200, answer.text
    challenge = altcha.Challenge.from_dict(answer.json())
    solution = altcha.solve_challenge(challenge, timeout=30)
    assert solution is not None
    return altcha.Payload(challenge, solution).to_base64()


def path_of(url: str) -> str:
    """``/unsubscribe/TOKEN`` from a full URL (the test client talks to the app directly)."""
    return "/" + url.split("/", 3)[3]
