"""``newsletter compose ARTICLE --recent-url URL --save-link``: the article's missing link fixed once, in the file."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from newsletter.compose.readers import read_article
from newsletter.compose.savelink import save_recent_url
from newsletter.errors import InputError

from support.articles import RECENT, SEED


@pytest.fixture
def seed(plain_workspace):
    target = plain_workspace / "articles" / "ketamine.txt"
    shutil.copy(SEED, target)
    return target


def test_the_first_compose_of_the_seed_names_the_save_link_command(cli, seed):
    result = cli("compose", "articles/ketamine.txt")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    error, hint = result.stderr.strip().splitlines()
    assert error == "Error: the recently-published link 'Which Ketamine Therapy Type Is Right for You?' has no URL"
    assert "newsletter compose articles/ketamine.txt --recent-url https://... --save-link" in hint
    assert "recently_published.url in the front matter" in hint  # the durable fix by hand, too


def test_save_link_writes_the_url_after_the_link_line_and_keeps_a_backup(cli, seed):
    original = seed.read_bytes()
    result = cli("compose", "articles/ketamine.txt", "--recent-url", RECENT, "--save-link")
    assert result.exit_code == 0, result.stderr
    assert (seed.parent / "ketamine.txt.bak").read_bytes() == original
    lines = seed.read_text(encoding="utf-8").splitlines()
    at = lines.index("Read Our Recently Published Article - Which Ketamine Therapy Type Is Right for You?")
    assert lines[at + 1] == RECENT
    assert [line for line in lines if line != RECENT] == original.decode("utf-8").splitlines()  # nothing else moved
    assert "later commands need no --recent-url" in result.stderr
    # every later command works without the flag
    assert cli("check", "articles/ketamine.txt").exit_code == 0
    assert cli("compose", "articles/ketamine.txt", "--json").json()["errors"] == []


def test_a_second_save_replaces_the_saved_url_and_keeps_both_backups(cli, seed):
    original = seed.read_bytes()
    assert cli("compose", "articles/ketamine.txt", "--recent-url", RECENT, "--save-link").exit_code == 0
    first_saved = seed.read_bytes()
    again = cli("compose", "articles/ketamine.txt", "--recent-url", RECENT + "-2", "--save-link")
    assert again.exit_code == 0, again.stderr
    assert read_article(seed).recently_published.url == RECENT + "-2"
    assert RECENT + "\n" not in seed.read_text(encoding="utf-8")  # replaced, not stacked
    assert (seed.parent / "ketamine.txt.bak").read_bytes() == original
    assert (seed.parent / "ketamine.txt.bak.1").read_bytes() == first_saved


def test_a_url_on_the_link_line_itself_is_left_alone(tmp_path):
    article = tmp_path / "inline.txt"
    article.write_text(f"A title\nBody of it.\nRead next: Older post {RECENT}\n")
    with pytest.raises(InputError) as caught:
        save_recent_url(article, RECENT + "-2")
    assert "already has an address" in caught.value.message
    assert read_article(article).recently_published.url == RECENT


def test_save_link_needs_a_url_and_refuses_a_bad_one(cli, seed):
    original = seed.read_bytes()
    missing = cli("compose", "articles/ketamine.txt", "--save-link")
    assert missing.exit_code == 1 and "--save-link needs --recent-url" in missing.stderr
    bad = cli("compose", "articles/ketamine.txt", "--recent-url", "javascript:alert(1)", "--save-link")
    assert bad.exit_code == 1 and "not a web address" in bad.stderr
    assert seed.read_bytes() == original and not (seed.parent / "ketamine.txt.bak").exists()


def test_front_matter_gets_the_url_in_recently_published(cli, plain_workspace):
    article = plain_workspace / "articles" / "fm.md"
    article.write_text("---\ntitle: Spring news\nrecently_published: {title: Winter notes}\n---\n\nHello all.\n")
    result = cli("compose", "articles/fm.md", "--recent-url", RECENT, "--save-link")
    assert result.exit_code == 0, result.stderr
    recent = read_article(article).recently_published
    assert (recent.title, recent.url) == ("Winter notes", RECENT)
    assert read_article(article).title == "Spring news"


def test_crlf_and_a_bom_are_kept(tmp_path):
    article = tmp_path / "win.txt"
    head = b"\xef\xbb\xbfA title here\r\nBody text of the article.\r\nMore of it.\r\nRead next: Older post\r\n"
    article.write_bytes(head)
    save_recent_url(article, RECENT)
    assert article.read_bytes() == head + RECENT.encode() + b"\r\n"
    assert read_article(article).recently_published.url == RECENT


def test_an_article_without_a_link_is_refused_with_a_hint(tmp_path):
    article = tmp_path / "none.txt"
    article.write_text("A title\nJust a body.\n")
    with pytest.raises(InputError) as caught:
        save_recent_url(article, RECENT)
    assert "no recently-published link" in caught.value.message and "Read next" in caught.value.hint
    assert not (tmp_path / "none.txt.bak").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=3, max_size=120)
       .filter(lambda t: any(c.isalnum() for c in t) and "http" not in t),
       # The last character is not one the reader takes for a sentence's punctuation (see the next test).
       path=st.from_regex(r"/[a-zA-Z0-9._~%-]{0,59}[a-zA-Z0-9_~%-]", fullmatch=True))
def test_any_link_title_gets_its_url(tmp_path, title, path):
    """Accented, quoted, long titles: after saving, the reader finds the URL and the same title."""
    article = tmp_path / "post.txt"
    body = "Some title\nA body line of the article.\nAnother line.\n"
    article.write_text(f"{body}Read next: {title}\n", encoding="utf-8")
    before = read_article(article).recently_published
    assume(before is not None and not before.url)  # a title the reader takes for a link title
    for old in tmp_path.glob("post.txt.bak*"):
        old.unlink()
    url = "https://clinic.example" + path
    save_recent_url(article, url)
    after = read_article(article).recently_published
    assert (after.title, after.url) == (before.title, url)


@pytest.mark.parametrize("url", ["https://clinic.example/.", "https://clinic.example/post,"])
def test_a_url_the_reader_would_cut_is_refused_and_the_article_kept(tmp_path, url):
    """Pasted text ends a sentence with '.' or ',' after a URL: the reader drops it, so saving refuses."""
    from newsletter.usecases.editions import save_link

    article = tmp_path / "post.txt"
    original = "Some title\nA body line of the article.\nRead next: Older post\n"
    article.write_text(original, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        save_link(str(article), url)
    assert "could not be written" in caught.value.message and "recently_published.url" in caught.value.hint
    assert article.read_text(encoding="utf-8") == original
    assert list(tmp_path.glob("post.txt.bak*")) == []


def test_check_and_send_name_the_same_fix(workspace, cli, tmp_path):
    from support.cli import populate

    populate(cli, tmp_path, 2)
    shutil.copy(SEED, workspace / "articles" / "ketamine.txt")
    fix = "newsletter compose articles/ketamine.txt --recent-url https://... --save-link"
    checked = cli("check", "articles/ketamine.txt")
    assert checked.exit_code == 1 and fix in checked.stderr.splitlines()[-1]
    sent = cli("send", "articles/ketamine.txt", "--list", "readers", "--yes")
    assert sent.exit_code == 1 and fix in sent.stderr and "Traceback" not in sent.stderr


def test_hints_repeat_the_options_in_use_quoted_for_the_shell(workspace, cli, tmp_path):
    """The dry run's "Send it with:" line, pasted into a shell, is the same send: path with a space, URL, theme."""
    import shlex

    from support.cli import populate

    populate(cli, tmp_path, 2)
    article = workspace / "articles" / "my article's draft.txt"
    shutil.copy(SEED, article)
    options = ["--list", "readers", "--recent-url", RECENT + "?a=1&b=2", "--theme", "plain", "--transport", "memory"]
    dry = cli("send", str(article), *options, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    [line] = [line for line in dry.stderr.splitlines() if line.startswith("Send it with: ")]
    words = shlex.split(line.removeprefix("Send it with: "))
    assert words[:3] == ["newsletter", "send", str(article)]
    assert words[3:] == ["--list", "readers", "--transport", "memory", "--recent-url", RECENT + "?a=1&b=2",
                         "--theme", "plain", "--yes"]
    sent = cli(*words[1:])
    assert sent.exit_code == 0, sent.stderr
