"""DKIM keys and signatures (RFC 6376, RFC 8463 for Ed25519), made with dkimpy.

Every signature is relaxed/relaxed: the body canonicalisation ``simple``
breaks on any relay that re-wraps lines or trailing spaces, where
``relaxed`` survives them. The headers a reader sees or a mail client acts
on (From, Subject, List-Unsubscribe, List-Unsubscribe-Post) are listed
twice in ``h=`` (oversigned): the extra, absent instance is signed as empty,
so a copy added on the way (a second From, an unsubscribe link of someone
else's) breaks the signature instead of riding on it (RFC 6376 8.15).

A key file is a PEM private key (PKCS#8, as ``newsletter dkim keygen``
writes it, or PKCS#1 for RSA); its type (RSA or Ed25519) picks the
algorithm (``rsa-sha256`` or ``ed25519-sha256``). dkimpy's own Ed25519
format (the 32-byte seed in base64, from ``dknewkey``) is read too.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.errors import ConfigError

KEY_TYPES = ("rsa", "ed25519")
RSA_BITS = 2048  # RFC 8301: at least 1024, 2048 recommended; 4096 does not fit many DNS hosts' TXT forms
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"mime-version",
                  b"content-type", b"list-unsubscribe", b"list-unsubscribe-post",
                  # the list identity; RFC 9477 requires the signature to cover CFBL-Address
                  b"list-id", b"feedback-id", b"cfbl-address", b"cfbl-feedback-id")
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post", b"cfbl-address")
CANONICALIZE = (b"relaxed", b"relaxed")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ALGORITHM = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
_KEY_HINT = ("point [smtp] dkim_key_file at a PEM private key (RSA or Ed25519), "
             "for example one made by: newsletter dkim keygen")


def include_headers() -> list[bytes]:
    """The ``h=`` list: every signed header once, then the oversigned ones a second time."""
    return [*SIGNED_HEADERS, *OVERSIGNED]


@dataclass(frozen=True)
class DkimKey:
    """One signing key: where its public half is published, and what dkimpy signs with."""

    selector: str
    domain: str
    key_type: str  # "rsa" or "ed25519"
    private: bytes = field(repr=False)  # in dkimpy's form: PEM for RSA, the base64 seed for Ed25519
    public: bytes = field(repr=False)  # the p= value: SubjectPublicKeyInfo DER (RSA) or the raw 32 bytes

    @property
    def record_name(self) -> str:
        """The DNS name of the selector record."""
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        """The TXT record to publish at :attr:`record_name`."""
        return dns_record(self.key_type, self.public)

    def sign(self, data: bytes) -> bytes:
        """The ``DKIM-Signature:`` header line (CRLF-terminated) for the message ``data``."""
        import dkim

        signature: bytes = dkim.sign(data, self.selector.encode(), self.domain.encode(), self.private,
                                     canonicalize=CANONICALIZE, signature_algorithm=_ALGORITHM[self.key_type],
                                     include_headers=include_headers(), linesep=b"\r\n")
        return signature


def dns_record(key_type: str, public: bytes) -> str:
    """``v=DKIM1; k=<type>; p=<base64>``: the selector's TXT record for a public key."""
    return f"v=DKIM1; k={key_type}; p={base64.b64encode(public).decode('ascii')}"


def txt_strings(record: str, size: int = 255) -> list[str]:
    """``record`` cut into the <=255-byte character-strings one TXT record is made of (RFC 1035 3.3.14)."""
    return [record[i:i + size] for i in range(0, len(record), size)] or [""]


def sign_all(data: bytes, keys: tuple[DkimKey, ...]) -> bytes:
    """``data`` with one signature per key on top (the first key's signature topmost)."""
    for key in reversed(keys):
        data = key.sign(data) + data
    return data


def load_key(selector: str, domain: str, material: bytes, source: str = "the DKIM key") -> DkimKey:
    """The key in ``material`` (PEM, or dkimpy's base64 Ed25519 seed); ConfigError when it is neither."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    _check_names(selector, domain)
    text = material.strip()
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if not text.startswith(b"-----BEGIN"):
        try:
            seed = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != 32:
            raise ConfigError(f"{source} is neither a PEM private key nor an Ed25519 key in base64",
                              hint=_KEY_HINT)
        private_key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    else:
        try:
            loaded = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source} cannot be read as a private key ({_reason(exc)})",
                              hint=_KEY_HINT + " (without a passphrase)") from None
        if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{source} is a {type(loaded).__name__.removeprefix('_')}: DKIM signs with RSA or "
                              "Ed25519 keys", hint=_KEY_HINT)
        private_key = loaded
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < 1024:
            raise ConfigError(f"{source} is a {private_key.key_size}-bit RSA key: receivers ignore DKIM keys "
                              "under 1024 bits (RFC 8301)", hint="make a 2048-bit key with: newsletter dkim keygen")
        pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
        public = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        return DkimKey(selector, domain, "rsa", pem, public)
    raw = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return DkimKey(selector, domain, "ed25519", base64.b64encode(raw), public)


def read_key(selector: str, domain: str, path: str | Path) -> DkimKey:
    """The key in the file ``path``; ConfigError (one line) when it cannot be read or is not a key."""
    try:
        material = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM key file {path} ({exc.strerror})",
                          hint="check [smtp] dkim_key_file and the file's permissions") from None
    return load_key(selector, domain, material, source=f"the DKIM key file {path}")


def generate(key_type: str, selector: str, domain: str, bits: int = RSA_BITS) -> tuple[bytes, DkimKey]:
    """A new private key as PKCS#8 PEM, and the :class:`DkimKey` it makes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if key_type not in KEY_TYPES:
        raise ConfigError(f"unknown DKIM key type {key_type!r}", hint="use rsa or ed25519")
    _check_names(selector, domain)
    private_key = (rsa.generate_private_key(public_exponent=65537, key_size=bits) if key_type == "rsa"
                   else ed25519.Ed25519PrivateKey.generate())
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return pem, load_key(selector, domain, pem)


def _check_names(selector: str, domain: str) -> None:
    """ConfigError unless both are DNS names (ASCII labels of letters, digits and hyphens; the domain in its
    ASCII form), which is what the record's name and the signature's ``d=`` and ``s=`` must be."""
    for what, name in (("selector", selector), ("domain", domain)):
        labels = name.split(".")
        if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or (
                what == "domain" and len(labels) < 2):
            raise ConfigError(f"the DKIM {what} {name[:80]!r} is not a DNS name",
                              hint="a selector is a DNS label such as news2026; a domain one such as example.org "
                                   "(an international domain in its xn-- form)")


def _reason(exc: Exception) -> str:
    return str(exc).split("\n")[0].split(".")[0] or type(exc).__name__
