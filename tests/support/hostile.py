"""Hypothesis strategies for hostile real-world subscriber data (addresses and names).

The same shapes as tests/test_audience_properties.py: IDN domains, non-ASCII
and quoted local parts, 64+ character parts; names with accents, quotes,
commas, control characters, over-long.
"""

from __future__ import annotations

from hypothesis import strategies as st

HOSTILE = "\r\n\x00\t\x0b\x1b\x7f\x85\u2028\u2029\ufeff,;\"'<>=+-@ "
LOCALS = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}", fullmatch=True),
    st.sampled_from(["renée.dupont", "josé", "δοκιμή", "用户", "o'neil", '"quoted name"', "a,b", "x" * 64,
                     "y" * 65, "ü" * 64, "ü" * 65, ".dot", "a..b", "tab\there"]),
)
DOMAINS = st.sampled_from(["example.org", "Example.COM", "bücher.example", "xn--bcher-kva.example",
                           "mail.παράδειγμα.example", "例え.jp", "x.test", "localhost", "a" * 64 + ".com"])
NAMES = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(HOSTILE),
            max_size=40),
    st.sampled_from(["Renée O'Brien-Dupont", '"Doc" Holliday, Jr.', "=HYPERLINK(\"http://x\")", "Zoë\r\nBcc: x",
                     "Nul\x00Byte", "É" * 200, "É" * 201, "", "  spaced  out  "]),
)
