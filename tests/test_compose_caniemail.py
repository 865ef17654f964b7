"""Client compatibility from the vendored caniemail data: ``check`` reports the features a major client lacks."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
from newsletter.compose.caniemail import MAJOR_CLIENTS, client_issues, used_features

from support.articles import RECENT, SEED


def _issues(cli, *args):
    result = cli("check", SEED, "--recent-url", RECENT, *args, "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    return data, {issue["feature"]: issue for issue in data["clients"]}


def test_the_default_theme_reports_dark_mode_media_queries_and_rounded_corners(cli, plain_workspace):
    data, issues = _issues(cli)
    dark = issues["css-at-media-prefers-color-scheme"]
    assert ({"Gmail (web)", "Gmail (iOS app)", "Gmail (Android app)", "Outlook for Windows", "Yahoo (web)"}
            <= set(dark["unsupported"]))
    assert "Apple Mail" not in dark["unsupported"] and "iOS Mail" not in dark["unsupported"]
    assert issues["css-at-media"]["unsupported"] == ["Outlook for Windows"]
    assert issues["css-border-radius"]["unsupported"] == ["Outlook for Windows"]
    assert 0 < issues["css-border-radius"]["supported_share"] < 1
    # warnings, not errors, each naming the feature, the clients and the share
    assert data["errors"] == []
    messages = [w["message"] for w in data["warnings"] if w["code"] == "client-support"]
    assert len(messages) == len(issues)
    radius = next(m for m in messages if "(css-border-radius)" in m)
    assert "not supported in Outlook for Windows" in radius and "% of tested clients support it" in radius
    dark_message = next(m for m in messages if "(css-at-media-prefers-color-scheme)" in m)
    assert "not supported in Gmail (web and apps), Outlook for Windows, Yahoo (web and apps);" in dark_message


def test_the_plain_theme_has_no_rounded_corners_to_report(cli, plain_workspace):
    _data, issues = _issues(cli, "--theme", "plain")
    assert "css-border-radius" not in issues and "css-at-media-prefers-color-scheme" in issues


def test_a_theme_using_unsupported_features_gets_them_reported(cli, plain_workspace):
    folder = plain_workspace / "templates" / "fancy"
    folder.mkdir(parents=True)
    (folder / "email.mjml.j2").write_text(
        '<mjml lang="{{ lang }}"><mj-head>'
        '<mj-style>@media (prefers-reduced-motion: reduce) { .x { color: red; } }</mj-style></mj-head>'
        "<mj-body><mj-section><mj-column><mj-text>"
        '<div style="position:relative;display:flex">{{ article.title }}</div><video src="https://v.example/a.mp4"></video>'
        '<p>{{ newsletter.postal_address }} <a href="{{ merge.unsubscribe_url }}">Unsubscribe</a></p>'
        "</mj-text></mj-column></mj-section></mj-body></mjml>")
    _data, issues = _issues(cli, "--theme", "fancy")
    assert issues["css-position"]["unsupported"] == [
        "Gmail (web)", "Gmail (iOS app)", "Gmail (Android app)", "Outlook for Windows"]
    assert issues["css-display-flex"]["unsupported"] == ["Outlook for Windows"]
    assert "Outlook.com" in issues["html-video"]["unsupported"]
    assert "Yahoo (web)" in issues["css-at-media-prefers-reduced-motion"]["unsupported"]


def test_outlook_conditional_comments_are_not_looked_at():
    html = ('<!doctype html><html><body><!--[if mso]><table style="position:absolute"><![endif]-->'
            '<p style="color:red">x</p></body></html>')
    used = used_features(html)
    assert "css-position" not in used and "html-table" not in used
    assert {"html-p", "html-body"} <= used


def test_a_feature_every_major_client_supports_is_not_reported():
    assert client_issues('<p style="color:#111111;margin:0">x</p>') == []


def test_the_data_ships_with_its_licence():
    folder = files("newsletter.compose").joinpath("data")
    licence = folder.joinpath("LICENSE.caniemail").read_text()
    assert licence.startswith("MIT License")
    data = json.loads(folder.joinpath("caniemail.json").read_text(encoding="utf-8"))
    slugs = {feature["slug"] for feature in data["data"]}
    assert {"css-border-radius", "css-at-media", "css-at-media-prefers-color-scheme"} <= slugs
    families = {(family, platform) for feature in data["data"]
                for family, platforms in feature["stats"].items() for platform in platforms}
    assert set(MAJOR_CLIENTS) <= families  # every major client is in the data


@pytest.mark.parametrize("html", ["", "<", "<p", "<style>", "<style>@media {</style>", "<p style=\"::;;\">",
                                  "<a href>x</a>" * 1000])
def test_broken_or_empty_html_does_not_crash(html):
    assert isinstance(client_issues(html), list)


def test_features_are_found_in_style_sheets_and_style_attributes():
    html = ('<style>.a{color:rgb(1,2,3);--gap:1px;width:calc(1px + 2%) !important} [data-x] .b:hover{display:flex}'
            "@media (prefers-reduced-motion: reduce){.c{opacity:.5}}</style>"
            '<p style="background:linear-gradient(red,blue);margin-top:2px">x</p>'
            '<img src="https://i.example/a.webp?v=1" alt="">')
    assert {"css-rgb", "css-variables", "css-unit-calc", "css-important", "css-selector-attribute",
            "css-selector-class",
            "css-selector-descendant", "css-pseudo-class-hover", "css-display-flex", "css-at-media",
            "css-at-media-prefers-reduced-motion", "css-opacity", "css-linear-gradient", "css-margin", "html-img",
            "image-webp", "html-style", "html-p"} <= used_features(html)
