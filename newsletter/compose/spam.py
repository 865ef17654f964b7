"""SpamAssassin, run on this machine on the message a sample subscriber receives.

``spam_check(message_bytes)`` pipes the complete message through
``spamassassin -t -L -x`` (test mode: the report is appended; local rules
only, no network test; no user preferences file created) and parses the
report's table: each rule's points, name and description. The
``content_score`` leaves out the rules that only say the message was never
relayed (``NO_RECEIVED``, ``NO_RELAYS``): a composed message has not been
through SMTP yet, and those rules score 0 anyway.

Without the ``spamassassin`` command, :func:`spam_check` returns a
:class:`SpamUnavailable` telling how to install it; nothing else changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

INFORMATIONAL = frozenset({"NO_RECEIVED", "NO_RELAYS"})
INSTALL_HINT = ("install SpamAssassin to run this check: sudo apt-get install spamassassin (Debian, Ubuntu),"
                " brew install spamassassin (macOS)")
TIMEOUT_SECONDS = 120
_SUMMARY = re.compile(r"^Content analysis details:\s+\((-?[\d.]+) points?, (-?[\d.]+) required\)", re.M)
_ROW = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass(frozen=True)
class SpamRule:
    """One SpamAssassin rule that matched: its points, name and description."""

    points: float
    name: str
    description: str

    def as_dict(self) -> dict:
        return {"points": self.points, "name": self.name, "description": self.description}


@dataclass
class SpamReport:
    """SpamAssassin's verdict: the total ``score``, the ``required`` threshold and the rules."""

    score: float
    required: float
    rules: list[SpamRule] = field(default_factory=list)
    available = True

    @property
    def content_score(self) -> float:
        """The score from rules about the message itself (the never-relayed ones left out)."""
        return round(sum(r.points for r in self.rules if r.name not in INFORMATIONAL), 3)

    def as_dict(self) -> dict:
        return {"available": True, "score": self.score, "content_score": self.content_score,
                "required": self.required, "rules": [r.as_dict() for r in self.rules]}


@dataclass
class SpamUnavailable:
    """No SpamAssassin here (or it failed): ``reason`` and how to fix it."""

    reason: str
    hint: str = INSTALL_HINT
    available = False

    def as_dict(self) -> dict:
        return {"available": False, "reason": self.reason, "hint": self.hint}


def spamassassin_command() -> str | None:
    """The path of ``spamassassin``, or None when it is not installed."""
    return shutil.which("spamassassin")


def spam_check(message: bytes) -> SpamReport | SpamUnavailable:
    """SpamAssassin's report on ``message`` (complete RFC 5322 bytes)."""
    command = spamassassin_command()
    if command is None:
        return SpamUnavailable("SpamAssassin is not installed (no 'spamassassin' command)")
    try:
        done = subprocess.run([command, "-t", "-L", "-x"], input=message, capture_output=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return SpamUnavailable(f"SpamAssassin did not answer within {TIMEOUT_SECONDS} s",
                               hint="run 'spamassassin --lint' to check its set-up")
    except OSError as exc:
        return SpamUnavailable(f"SpamAssassin could not be started: {exc.strerror}",
                               hint="run 'spamassassin --lint' to check its set-up")
    report = parse_report(done.stdout.decode("utf-8", "replace"))
    if report is None:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no report"])[-1]
        return SpamUnavailable(f"SpamAssassin gave no report (exit {done.returncode}: {last[:120]})",
                               hint="run 'spamassassin --lint' to check its set-up")
    return report


def parse_report(output: str) -> SpamReport | None:
    """The report in ``spamassassin -t`` output, or None when there is none."""
    summary = _SUMMARY.search(output)
    if not summary:
        return None
    rules: list[SpamRule] = []
    table = output[summary.end():].split("\n---- ", 1)
    lines = table[1].splitlines()[1:] if len(table) == 2 else []
    for line in lines:
        if not line.strip():
            break
        row = _ROW.match(line)
        if row:
            rules.append(SpamRule(float(row.group(1)), row.group(2), row.group(3).strip()))
        elif rules and line.startswith(" "):  # a description continued on the next line
            last = rules[-1]
            rules[-1] = SpamRule(last.points, last.name, f"{last.description} {line.strip()}")
    return SpamReport(float(summary.group(1)), float(summary.group(2)), rules)
