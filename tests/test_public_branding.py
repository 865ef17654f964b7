"""The public pages wear the workspace's brand: its name, its theme's colours, its logo (one shared layout).

Every page (preference centre, unsubscribe, confirm, subscribe, archive, an
error page) is fetched through the app; colours files and logos that cannot
be used are a ConfigError when the app starts, never a broken page.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from newsletter.audience import manage
from newsletter.audience.tokens import confirm_url, preferences_url, unsubscribe_url
from newsletter.errors import ConfigError
from newsletter.store import audience as q

from support.web import open_site, path_of

DEFAULT_ACCENT, PLAIN_ACCENT, OLD_BLUE = "#1b5e4f", "#0b4f9c", "#1f4e8c"


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x1b\x5e\x4f"))
            + chunk(b"IEND", b""))


def every_page(site) -> dict[str, str]:
    """The HTML of each public page, by name."""
    with site.store.session() as session:
        q.create_list(session, "news", public=True, double_opt_in=True, display_name="Clinic News")
    reader = manage.add_subscriber(site.store, "ann@example.org", list_name="news")
    settings = site.settings
    paths = {
        "preferences": path_of(preferences_url(settings, reader.subscriber_id, reader.email)),
        "unsubscribe": path_of(unsubscribe_url(settings, reader.subscriber_id, reader.list_id, reader.email)),
        "confirm": path_of(confirm_url(settings, reader.subscriber_id, reader.list_id, reader.email,
                                       issued=site.clock.now)),
        "subscribe": "/subscribe", "archive": "/archive", "not found": "/nothing-here",
        "preferences help": "/preferences",
    }
    pages = {}
    for name, path in paths.items():
        response = site.client.get(path)
        assert response.status_code == (404 if name == "not found" else 200), name
        pages[name] = response.text
    return pages


def test_every_page_has_the_name_the_theme_colours_and_the_logo(workspace):
    (workspace / "logo.png").write_bytes(tiny_png())
    with open_site(None, logo="logo.png", name="Springfield Clinic") as site:
        pages = every_page(site)
    for name, html in pages.items():
        assert f"--accent: {DEFAULT_ACCENT};" in html, name
        assert OLD_BLUE not in html, name
        assert '<img src="data:image/png;base64,' in html and 'alt="Springfield Clinic"' in html, name
        assert "<title>" in html and "Springfield Clinic</title>" in html, name


def test_without_a_logo_the_name_heads_the_page_and_another_theme_brings_its_colours(workspace):
    with open_site(None, theme="plain", name="Springfield Clinic") as site:
        pages = every_page(site)
    for name, html in pages.items():
        assert f"--accent: {PLAIN_ACCENT};" in html, name
        assert '<header class="brand">' in html and "<span>Springfield Clinic</span>" in html, name
        assert "<img" not in html, name


def test_a_workspace_theme_folder_sets_its_own_colours(workspace):
    folder = workspace / "templates" / "default"
    folder.mkdir(parents=True)
    (folder / "colours.toml").write_text('accent = "#7a1f5c"\ndark_accent = "#f0a6d4"\n', encoding="utf-8")
    with open_site(None) as site:
        html = site.client.get("/subscribe").text
    assert "--accent: #7a1f5c;" in html and "--accent: #f0a6d4;" in html
    assert "--bg: #ffffff;" in html  # keys not given keep the built-in defaults


@pytest.mark.parametrize(("content", "message"), [
    ('accent = "red; } body { display: none"\n', "accent must be a colour"),
    ('accent = 3\n', "accent must be a colour"),
    ('highlight = "#ffffff"\n', "unknown colour 'highlight'"),
    ('accent = "#fff\n', "cannot be read"),
])
def test_a_colours_file_that_cannot_be_used_is_a_config_error(settings, content, message):
    from newsletter.web.pages import Pages

    folder = settings.workspace / "templates" / "default"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "colours.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        Pages(settings)


@pytest.mark.parametrize(("file_name", "data", "message"), [
    ("logo.bmp", b"BM", "not a PNG, JPEG, GIF, WebP or SVG"),
    ("missing.png", None, "cannot be read"),
    ("huge.png", b"\x89PNG" + b"\x00" * (300 * 1024), "at most 256 KB"),
])
def test_a_logo_that_cannot_be_used_is_a_config_error(settings, file_name, data, message):
    from newsletter.web.pages import Pages

    if data is not None:
        (settings.workspace / file_name).write_bytes(data)
    with pytest.raises(ConfigError, match=message):
        Pages(dataclasses.replace(settings, logo=file_name))
