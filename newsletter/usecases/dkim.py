"""Make a DKIM key: ``newsletter dkim keygen``.

Writes the private key (PKCS#8 PEM) to a new file readable by its owner
only, never over an existing one, and answers with what to publish in DNS
and what to put in ``newsletter.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.delivery.dkimsign import DkimKey, generate, txt_strings
from newsletter.errors import InputError
from newsletter.fileio import create_private_file

if TYPE_CHECKING:
    from newsletter.config import Settings


@dataclass(frozen=True)
class NewKey:
    """A key just written: where, and the record that publishes its public half."""

    path: Path
    key: DkimKey

    def zone_line(self) -> str:
        """The record as a zone-file line, cut into the <=255-character strings a TXT record holds."""
        strings = " ".join(f'"{part}"' for part in txt_strings(self.key.record))
        return f"{self.key.record_name}. IN TXT ( {strings} )"

    def settings_lines(self) -> list[str]:
        """The ``[smtp]`` lines that sign with this key."""
        if self.key.key_type == "ed25519":
            return [f'dkim_ed25519_selector = "{self.key.selector}"', f'dkim_domain = "{self.key.domain}"',
                    f'dkim_ed25519_key_file = "{self.path}"']
        return [f'dkim_selector = "{self.key.selector}"', f'dkim_domain = "{self.key.domain}"',
                f'dkim_key_file = "{self.path}"']

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "type": self.key.key_type, "selector": self.key.selector,
                "domain": self.key.domain, "record_name": self.key.record_name, "record": self.key.record,
                "txt_strings": txt_strings(self.key.record), "zone_line": self.zone_line(),
                "settings": self.settings_lines()}


def default_selector(key_type: str, now: datetime | None = None) -> str:
    """``newsYYYYMM`` (``newsYYYYMMe`` for Ed25519): dated, so a later key gets a selector of its own."""
    now = now or datetime.now(UTC)
    return f"news{now:%Y%m}" + ("e" if key_type == "ed25519" else "")


def sender_domain(settings: Settings) -> str:
    """The From address's domain in its DNS (ASCII) form."""
    domain = settings.sender_address.rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return domain.lower()


def make_key(key_type: str, selector: str | None, domain: str | None, out: Path | None,
             settings: Settings | None) -> NewKey:
    """Generate a key and write it to ``out`` (default ``.newsletter/dkim-<selector>.pem`` in the workspace).

    ``domain`` defaults to the sender's domain; without a workspace both
    ``domain`` and ``out`` must be given (InputError otherwise).
    """
    selector = selector or default_selector(key_type)
    if domain is None or out is None:
        if settings is None:
            raise InputError("outside a workspace, give both --domain and --out",
                             hint="newsletter dkim keygen --domain example.org --out dkim.pem")
        domain = domain or sender_domain(settings)
        out = out or settings.state_dir / f"dkim-{selector}.pem"
    pem, key = generate(key_type, selector, domain)
    out = Path(out)
    create_private_file(out, pem)
    return NewKey(out.resolve(), key)
