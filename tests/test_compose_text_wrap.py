"""The text part's fast wrapper fills lines exactly as textwrap does (runs of
spaces, tabs and newlines count as one space; a no-break space joins)."""

from __future__ import annotations

import re
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st
from newsletter.compose.text import WIDTH, _wrap

WORDS = st.lists(st.one_of(st.text(alphabet="abcdéü-‑—.,", min_size=1, max_size=12),
                           st.text(alphabet="x", min_size=60, max_size=90)), max_size=40)
GAPS = st.sampled_from([" ", "  ", "\t", "\n", " \r\n ", "\u00a0"])


@settings(max_examples=50, deadline=None)
@given(words=WORDS, gap=GAPS, indent=st.sampled_from([("", ""), ("- ", "  "), ("> ", "> "), ("10. ", "    ")]))
def test_wrap_matches_textwrap(words, gap, indent):
    text = gap.join(words)
    single = re.sub(r"[\t\n\x0b\x0c\r ]+", " ", text)
    expected = textwrap.wrap(single, width=WIDTH, initial_indent=indent[0], subsequent_indent=indent[1],
                             break_long_words=False, break_on_hyphens=False) or [indent[0].rstrip()]
    assert _wrap(text, *indent) == expected
