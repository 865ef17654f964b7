"""DSN samples (tests/data/dsn/) filled in for one delivery, and mailboxes made of them.

``sample(name, rcpt=..., message_id=..., verp=...)`` gives a sample's bytes
with its placeholders replaced (see tests/data/dsn/README.md);
``write_maildir`` and ``write_mbox`` store messages the way a mail server
delivers them (Maildir: one file in ``new/`` each; mbox: ``From `` lines,
``>From `` quoting).
"""

from __future__ import annotations

import os
from pathlib import Path

DSN = Path(__file__).resolve().parent.parent / "data" / "dsn"
SAMPLES = sorted(path.name for path in DSN.glob("*.eml"))


def sample(name: str, *, rcpt: str = "gone@example.org", message_id: str = "none@clinic.example",
           verp: str = "news@clinic.example") -> bytes:
    data = (DSN / name).read_bytes()
    return (data.replace(b"@@RCPT@@", rcpt.encode()).replace(b"@@MESSAGE_ID@@", message_id.encode())
            .replace(b"@@VERP@@", verp.encode()))


def write_maildir(folder: Path, messages: list[bytes]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(messages):
        name = f"1764580000.M{index}P{os.getpid()}.bounces"
        (folder / "tmp" / name).write_bytes(data)
        os.replace(folder / "tmp" / name, folder / "new" / name)  # how a delivery agent does it
    return folder


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    with path.open("wb") as handle:
        for data in messages:
            handle.write(b"From MAILER-DAEMON Tue Dec  1 10:15:03 2026\n")
            for line in data.replace(b"\r\n", b"\n").splitlines(keepends=True):
                handle.write(b">" + line if line.lstrip(b">").startswith(b"From ") else line)
            handle.write(b"\n" if data.endswith(b"\n") else b"\n\n")
    return path


def maildir_files(folder: Path) -> dict[str, list[str]]:
    return {sub: sorted(os.listdir(folder / sub)) for sub in ("new", "cur")}
