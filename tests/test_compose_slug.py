"""The slug: whole words up to 80 characters, set by front matter when given; names the files and archive URL."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from newsletter.compose.model import SLUG_LIMIT, slugify
from newsletter.compose.readers import read_article

from support.articles import SEED


def test_the_seed_title_keeps_its_last_words():
    assert read_article(SEED).slug == "ketamine-therapy-explained-meaning-importance-and-top-benefit"


def test_front_matter_sets_the_slug(cli, plain_workspace):
    article = plain_workspace / "articles" / "short.md"
    article.write_text("---\ntitle: A very long title about many things\nslug: Ketamine, Explained!\n---\n\nBody.\n")
    result = cli("compose", "articles/short.md", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["slug"] == "ketamine-explained"
    assert result.json()["files"]["html"].endswith("ketamine-explained.html")


@given(st.text(max_size=400))
def test_a_slug_is_whole_words_within_the_limit(title):
    slug = slugify(title)
    assert len(slug) <= SLUG_LIMIT
    assert re.fullmatch(r"([a-z0-9]+(-[a-z0-9]+)*)?", slug)
    words = slug.split("-") if slug else []
    import unicodedata

    title_words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", title).encode("ascii", "ignore")
                             .decode().lower())
    if title_words and len(title_words[0]) <= SLUG_LIMIT:
        assert words == title_words[: len(words)]  # a prefix of the title's words, none cut
        if len(words) < len(title_words):  # stopped only because the next word would not fit
            assert len(slug) + 1 + len(title_words[len(words)]) > SLUG_LIMIT
