"""What makes a public signup suspicious, and the proof-of-work challenge that bots must pay for.

- :func:`new_challenge` makes an ALTCHA (the ``altcha`` package, PoW v2,
  PBKDF2/SHA-256) challenge signed with a key derived from the workspace's
  secret key: no third-party service, it works offline. Its expiry (now +
  :data:`CHALLENGE_SECONDS`, by the app's clock) travels in the signed
  ``data``, so it cannot be moved. The browser finds the counter (the form's
  small script, ``templates/web/altcha.js``) and posts the payload in the
  form field :data:`FIELD`.
- :func:`check_solution` verifies a payload server-side and answers the
  :class:`Proof` to spend: the caller records its key in the store
  (``store.signups.spend_challenge``) in the signup's transaction, so a
  replayed payload is refused (:class:`ReplayedChallenge`) until it expires.
- :func:`reasons_to_hold` says why a signup goes to the quarantine: no valid
  proof of work (when required), a disposable domain (the
  ``disposable-email-domains`` list, unless allowed), a denied domain.
- :func:`network_of` is the client's /24 (IPv4) or /48 (IPv6): one attacker
  rarely has more than one, so the network limits count them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.errors import InputError

FIELD = "altcha"             # the form field that carries the solved challenge
ALGORITHM = "PBKDF2/SHA-256"  # WebCrypto does it natively in every browser
CHALLENGE_SECONDS = 600      # a page left open longer asks for a new challenge
COUNTER_RANGE = (200, 1200)  # the tries a client needs (times cost PBKDF2 iterations each)
PAYLOAD_MAX = 4000           # characters: a real payload is under 1,000

# Why a signup was held (the quarantine's ``reasons``, comma-separated).
NO_PROOF = "no proof of work"
DISPOSABLE = "disposable domain"
DENIED = "denied domain"
BUSY_NETWORK = "busy network"


class ReplayedChallenge(InputError):
    """A solved challenge posted a second time."""


@dataclass(frozen=True)
class Proof:
    """A verified solution: ``key`` (SHA-256 of the challenge's signature) is spent until ``expires_at``."""

    key: str
    expires_at: datetime


def _hmac_secret(settings) -> str:
    """The challenges' signing key: derived from the workspace's secret key, for this use only."""
    return hmac.new(settings.secret_key.encode(), b"newsletter signup proof of work", hashlib.sha256).hexdigest()


def new_challenge(settings, now: float) -> dict:
    """A signed challenge for the browser (JSON-ready: ``parameters`` and ``signature``)."""
    import altcha

    low, high = COUNTER_RANGE
    challenge = altcha.create_challenge(
        algorithm=ALGORITHM, cost=settings.signup_proof_of_work_cost, counter=low + secrets.randbelow(high - low),
        data={"expires": int(now) + CHALLENGE_SECONDS}, hmac_secret=_hmac_secret(settings))
    return challenge.to_dict()


def check_solution(settings, payload: str, now: float) -> Proof | None:
    """The proof to spend when ``payload`` solves a challenge of ours that has not expired, else None."""
    import altcha

    payload = payload.strip()
    if not payload or len(payload) > PAYLOAD_MAX:
        return None
    try:
        result = altcha.verify_solution(payload, _hmac_secret(settings))
    except (ValueError, TypeError, AttributeError):  # a payload of the wrong shape (a forged one)
        return None
    if not result.verified:
        return None
    # verified: the payload decodes and its signed parameters are ours; read the expiry they carry.
    parsed = altcha.Payload.from_base64(payload)
    expires = (parsed.challenge.parameters.data or {}).get("expires")
    if not isinstance(expires, int) or expires < now:
        return None
    key = hashlib.sha256(str(parsed.challenge.signature).encode()).hexdigest()
    return Proof(key=key, expires_at=datetime.fromtimestamp(expires, UTC))


def _domain_and_parents(address: str) -> list[str]:
    """``a.b.example.org`` -> itself, ``b.example.org``, ``example.org`` (never the bare TLD)."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(max(len(labels) - 1, 1))]


def is_disposable(address: str, settings) -> bool:
    """Whether the address's domain (or a parent) is a known disposable one and not in ``allow_domains``."""
    from disposable_email_domains import blocklist

    candidates = _domain_and_parents(address)
    if any(domain in settings.signup_allow_domains for domain in candidates):
        return False
    return any(domain in blocklist for domain in candidates)


def is_denied(address: str, settings) -> bool:
    """Whether the address's domain (or a parent) is in ``deny_domains``."""
    return any(domain in settings.signup_deny_domains for domain in _domain_and_parents(address))


def reasons_to_hold(address: str, settings, *, proven: bool) -> list[str]:
    """Why a signup of ``address`` goes to the quarantine (empty: it does not).

    ``proven``: whether the request carried a valid, unspent proof of work.
    """
    reasons = []
    if settings.signup_proof_of_work and not proven:
        reasons.append(NO_PROOF)
    if is_denied(address, settings):
        reasons.append(DENIED)
    elif is_disposable(address, settings):
        reasons.append(DISPOSABLE)
    return reasons


def network_of(ip: str) -> str:
    """The client's /24 (IPv4, and IPv4-mapped IPv6) or /48 (IPv6) network; an unparsable value itself."""
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
