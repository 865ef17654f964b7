"""The readers: plain text (seed and other habits), Markdown with front matter, HTML."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from newsletter.compose.model import Heading, Image, ListBlock, Paragraph, Quote, plain
from newsletter.compose.readers import article_kind, read_article
from newsletter.errors import InputError

ARTICLES = Path(__file__).parent / "articles"


def kinds(article):
    return [type(b).__name__ for b in article.blocks]


def headings(article):
    return [plain(b.spans) for b in article.blocks if isinstance(b, Heading)]


def all_text(article):
    parts = [article.title, article.subtitle, article.author, article.author_bio]
    for block in article.blocks:
        if isinstance(block, ListBlock):
            parts += [plain(item) for item in block.items]
        elif hasattr(block, "spans"):
            parts.append(plain(block.spans))
    return "\n".join(parts)


class TestSeed:
    @pytest.fixture(scope="class")
    @classmethod
    def article(cls):
        return read_article(ARTICLES / "seed-ketamine.txt")

    def test_header(self, article):
        assert article.title == "Ketamine Therapy Explained: Meaning, Importance, and Top Benefit"
        assert article.subtitle == "A New Path for Mental Wellness"
        assert article.slug == "ketamine-therapy-explained-meaning-importance-and-top-benefit"

    def test_every_section_heading(self, article):
        assert headings(article) == [
            "What Is Ketamine Therapy, Really?",
            "Why Is Ketamine Therapy So Important Right Now?",
            "The Top Benefit: Rapid Emotional Relief",
            "How It Works in the Brain",
            "It's Not a One-Size-Fits-All Fix",
            "A Personal Reflection: When the Walls Started to Break",
            "Why More Clinics Are Offering It-and What to Watch For",
            "Final Thoughts",
        ]

    def test_lists_and_quote(self, article):
        lists = [b for b in article.blocks if isinstance(b, ListBlock)]
        assert [len(b.items) for b in lists] == [3, 4, 4]
        assert plain(lists[2].items[3]) == "Avoid making “miracle cure” claims"
        quotes = [b for b in article.blocks if isinstance(b, Quote)]
        assert len(quotes) == 1 and plain(quotes[0].spans).startswith("“It didn’t take the pain away")

    def test_short_sentences_stay_paragraphs(self, article):
        paragraphs = [plain(b.spans) for b in article.blocks if isinstance(b, Paragraph)]
        assert "I’ve been there." in paragraphs
        assert "Here’s why that matters:" in paragraphs
        assert paragraphs[-1].startswith("The road to feeling better")

    def test_lost_drop_cap_is_repaired(self, article):
        assert plain(article.blocks[0].spans).startswith("It’s 2 a.m.")

    def test_author_block_and_recent_link(self, article):
        assert article.author == "Adrienne D. Mullins"
        assert article.author_bio.startswith("Driven by a deep passion")
        assert article.recently_published.title == "Which Ketamine Therapy Type Is Right for You?"
        assert article.recently_published.url is None

    def test_page_chrome_is_dropped(self, article):
        text = all_text(article)
        for chrome in ("Comments", "There are no comments", "Be the first to respond", "About the Creator",
                       "Read Our Recently"):
            assert chrome not in text


def test_hard_wrapped_text_with_other_habits():
    article = read_article(ARTICLES / "wrapped-garden.txt")
    assert article.title == "Why We Left The Lawn To Grow"
    assert article.subtitle == "Notes from a year of doing less"
    assert article.author == "Maria Lopes" and article.date == dt.date(2025, 3, 3)
    assert headings(article) == ["What came back", "What we would do differently"]
    assert kinds(article) == ["Paragraph", "Heading", "Paragraph", "ListBlock", "Quote", "Paragraph", "Heading",
                              "ListBlock"]
    first = plain(article.blocks[0].spans)
    assert first.startswith("Last spring") and first.endswith("we did not expect.")
    bullets, numbered = [b for b in article.blocks if isinstance(b, ListBlock)]
    assert plain(bullets.items[2]) == "Two kinds of bumblebee we had never seen here before"
    assert numbered.ordered and len(numbered.items) == 2
    quote = next(b for b in article.blocks if isinstance(b, Quote))
    assert plain(quote.spans).endswith("is this weekend.") and quote.cite == "Our neighbour, Ted"
    assert article.recently_published.url == "https://garden.example.org/pond"
    assert article.author_bio.startswith("Maria writes")
    assert "Comments" not in all_text(article) and "Share this" not in all_text(article)


def test_markdown_with_front_matter():
    article = read_article(ARTICLES / "front-matter-budget.md")
    assert article.title == "Five budgeting habits that actually stick"
    assert article.preheader.startswith("The habits our readers kept")
    assert article.date == dt.date(2026, 11, 20) and article.tags == ["money", "habits"]
    assert article.image_alt == "A notebook with a handwritten monthly budget"
    assert article.recently_published.url == "https://blog.example.org/rainy-day-fund"
    first = article.blocks[0].spans
    assert any(s.strong and s.text == "second month" for s in first)
    assert any(s.href == "https://blog.example.org/survey-2026" for s in first)
    image = next(b for b in article.blocks if isinstance(b, Image))
    assert image.alt == "A jar of coins on a kitchen table"
    assert [b.ordered for b in article.blocks if isinstance(b, ListBlock)] == [False, True]
    # raw HTML stays text in the model, to be escaped by the renderers
    assert '<script>alert("hi")</script>' in plain(article.blocks[-1].spans)


def test_html_body():
    article = read_article(ARTICLES / "clinic-update.html")
    assert article.title == "New evening hours at the clinic"
    assert article.subtitle == "From January we stay open until 8 p.m. on weekdays"
    assert headings(article) == ["What changes"]
    quote = next(b for b in article.blocks if isinstance(b, Quote))
    assert quote.cite == "A patient, Springfield"
    images = [b for b in article.blocks if isinstance(b, Image)]
    assert [i.alt for i in images] == ["Our front desk in the evening", ""]
    assert article.recently_published.title == "Getting ready for flu season"
    assert article.recently_published.url == "https://clinic.example.org/blog/flu-season"
    text = all_text(article)
    for chrome in ("Home", "tracking", "Comments", "no comments", "© Clinic", "color: red"):
        assert chrome not in text


def test_markdown_title_from_first_heading_and_tail_rules(tmp_path):
    path = tmp_path / "note.md"
    path.write_text("# A title here\n\nBody text.\n\nRead next: [Older post](https://x.example/old)\n\n"
                    "## About the Author\n\nJo Bloggs\n\nJo writes.\n")
    article = read_article(path)
    assert article.title == "A title here"
    assert article.recently_published.title == "Older post"
    assert article.recently_published.url == "https://x.example/old"
    assert article.author == "Jo Bloggs" and article.author_bio == "Jo writes."
    assert kinds(article) == ["Paragraph"]


def test_plain_text_with_front_matter_and_bare_urls(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("---\ntitle: Given title\nrecently_published: {title: Old, url: https://x.example/o}\n---\n"
                    "Ignored first line?\nSee https://example.org/page. for more.\n")
    article = read_article(path)
    assert article.title == "Given title"
    spans = article.blocks[-1].spans
    assert any(s.href == "https://example.org/page" for s in spans)


def test_question_and_exclamation_lines_in_prose_stay_paragraphs(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Title line\n\nSome opening paragraph that is long enough to be prose, really.\n"
                    "Sound familiar?\nWe thought so!\nWhat To Do About It\nThe answer follows.\n")
    article = read_article(path)
    assert headings(article) == ["What To Do About It"]


def test_content_sniffing_for_unknown_suffix():
    assert article_kind(Path("a.article"), "<p>Hello</p><h2>x</h2>") == "html"
    assert article_kind(Path("a.article"), "# Title\n\nText") == "markdown"
    assert article_kind(Path("a.article"), "Title\nSubtitle\nText.") == "text"


def test_missing_file_and_bad_front_matter(tmp_path):
    with pytest.raises(InputError) as missing:
        read_article(tmp_path / "nope.md")
    assert "not found" in missing.value.message and missing.value.hint
    bad = tmp_path / "bad.md"
    bad.write_text("---\ntitle: [unclosed\n---\nBody\n")
    with pytest.raises(InputError, match="front matter"):
        read_article(bad)
    recent = tmp_path / "recent.md"
    recent.write_text("---\ntitle: T\nrecently_published: {url: https://x.example}\n---\nBody\n")
    with pytest.raises(InputError, match="needs a title"):
        read_article(recent)
