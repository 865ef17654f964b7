"""Client compatibility from caniemail.com's data, as Mailpit reports it.

The data is the npm package ``caniemail`` (MIT; ``data/caniemail.json`` and
``data/LICENSE.caniemail`` in this package, refreshed by
``scripts/refresh_caniemail.py``): for each HTML or CSS feature, each mail
client and platform, the support of each tested version.

:func:`client_findings` lists the features an email's HTML uses (elements,
attributes, CSS properties and values, at-rules and media features,
selectors) that one of the major clients does not support in its latest
tested version, with those clients and the share of all tested clients that
support it. These are warnings: a theme can use a feature on purpose (dark
mode where it works) as long as the email still reads where it does not.

Outlook's conditional comments (``<!--[if mso]>``) are comments: what they
hold is not looked at, as the clients that read them are the ones it is for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

# The major clients: (family, platform) in caniemail's data, and the name shown.
MAJOR_CLIENTS = {
    ("gmail", "desktop-webmail"): "Gmail (web)",
    ("gmail", "ios"): "Gmail (iOS app)",
    ("gmail", "android"): "Gmail (Android app)",
    ("outlook", "windows"): "Outlook for Windows",
    ("outlook", "outlook-com"): "Outlook.com",
    ("apple-mail", "macos"): "Apple Mail",
    ("apple-mail", "ios"): "iOS Mail",
    ("yahoo", "desktop-webmail"): "Yahoo (web)",
    ("yahoo", "ios"): "Yahoo (iOS app)",
    ("yahoo", "android"): "Yahoo (Android app)",
}

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)
_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTRIBUTE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:.-]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_RULE = re.compile(r"([^{}]*)\{([^{}]*)\}")
_AT_RULE = re.compile(r"@([a-z-]+)([^{;]*)", re.I)
_FUNCTION_FEATURE = {
    "rgb": "css-rgb", "rgba": "css-rgba", "linear-gradient": "css-linear-gradient",
    "radial-gradient": "css-radial-gradient", "conic-gradient": "css-conic-gradient", "calc": "css-unit-calc",
    "var": "css-variables", "clamp": "css-function-clamp", "min": "css-function-min", "max": "css-function-max",
    "light-dark": "css-function-light-dark",
}
_FUNCTION = re.compile(r"(?<![\w-])(" + "|".join(_FUNCTION_FEATURE) + r")\(", re.I)

_ELEMENTS = {
    "abbr": "html-abbr", "acronym": "html-acronym", "address": "html-address", "audio": "html-audio",
    "base": "html-base",
    "bdi": "html-bdi", "blockquote": "html-blockquote", "body": "html-body", "code": "html-code", "del": "html-del",
    "dfn": "html-dfn", "dialog": "html-dialog", "div": "html-div", "form": "html-form", "hr": "html-hr",
    "img": "html-img",
    "link": "html-link", "marquee": "html-marquee", "meter": "html-meter", "object": "html-object", "p": "html-p",
    "picture": "html-picture", "pre": "html-pre", "progress": "html-progress", "rp": "html-rp", "rt": "html-rt",
    "ruby": "html-ruby", "select": "html-select", "small": "html-small", "span": "html-span", "strike": "html-strike",
    "strong": "html-strong", "style": "html-style", "svg": "html-svg", "table": "html-table",
    "textarea": "html-textarea",
    "video": "html-video", "wbr": "html-wbr", "ul": "html-lists", "ol": "html-lists", "dl": "html-lists",
    **{f"h{n}": "html-h1-h6" for n in range(1, 7)},
    **dict.fromkeys(("article", "aside", "details", "figcaption", "figure", "footer", "header", "main", "mark", "nav",
                     "section", "summary", "time"), "html-semantics"),
}
_ATTRIBUTES = {
    "align": "html-align", "aria-describedby": "html-aria-describedby", "aria-hidden": "html-aria-hidden",
    "aria-label": "html-aria-label", "aria-labelledby": "html-aria-labelledby", "aria-live": "html-aria-live",
    "background": "html-background", "cellpadding": "html-cellpadding", "cellspacing": "html-cellspacing",
    "dir": "html-dir", "height": "html-height", "hidden": "html-hidden", "lang": "html-lang",
    "loading": "html-loading-attribute", "popover": "html-popover", "required": "html-required", "role": "html-role",
    "srcset": "html-srcset", "target": "html-target", "valign": "html-valign", "width": "html-width",
}
_IMAGE_TYPES = {"apng": "image-apng", "avif": "image-avif", "bmp": "image-bmp", "gif": "image-gif", "ico": "image-ico",
                "jpg": "image-jpg", "jpeg": "image-jpg", "png": "image-png", "svg": "image-svg", "tif": "image-tiff",
                "tiff": "image-tiff", "webp": "image-webp", "heic": "image-heif", "heif": "image-heif"}
_MEDIA_FEATURES = {"prefers-color-scheme": "css-at-media-prefers-color-scheme",
                   "prefers-reduced-motion": "css-at-media-prefers-reduced-motion",
                   "orientation": "css-at-media-orientation", "hover": "css-at-media-hover",
                   "device-pixel-ratio": "css-at-media-device-pixel-ratio"}
# properties whose caniemail feature goes by another name
_PROPERTY_FEATURE = {
    **{f"margin-{side}": "css-margin" for side in ("top", "right", "bottom", "left")},
    **{f"padding-{side}": "css-padding" for side in ("top", "right", "bottom", "left")},
    **{f"border-{side}": "css-border" for side in ("top", "right", "bottom", "left")},
    **{f"border-{side}-{part}": "css-border"
       for side in ("top", "right", "bottom", "left") for part in ("color", "style", "width")},
    **{f"border-{part}": "css-border" for part in ("color", "style", "width")},
    **{f"border-{a}-{b}-radius": "css-border-radius" for a in ("top", "bottom") for b in ("left", "right")},
    **dict.fromkeys(("left", "right", "top", "bottom"), "css-left-right-top-bottom"),
    "font-family": "", "mso-hide": "", "mso-line-height-rule": "", "mso-table-lspace": "", "mso-table-rspace": "",
    "mso-padding-alt": "", "-webkit-text-size-adjust": "", "-ms-text-size-adjust": "", "-ms-interpolation-mode": "",
    "supported-color-schemes": "",
}


@dataclass(frozen=True)
class ClientIssue:
    """A feature the email uses, the major clients that do not support it, and the share of support."""

    slug: str
    title: str
    unsupported: tuple[str, ...]
    supported_share: float  # of every tested client and platform, latest version: supported
    partial_share: float  # ... partly supported
    url: str

    def message(self) -> str:
        partly = f", {self.partial_share:.0%} partly" if self.partial_share else ""
        return (f"{self.title} ({self.slug}) is not supported in {_grouped(self.unsupported)}; "
                f"{self.supported_share:.0%} of tested clients support it{partly}")

    def as_dict(self) -> dict:
        return {"feature": self.slug, "title": self.title, "unsupported": list(self.unsupported),
                "supported_share": round(self.supported_share, 3), "partial_share": round(self.partial_share, 3),
                "url": self.url}


@lru_cache(maxsize=1)
def data() -> dict:
    """The vendored caniemail data: ``{slug: feature}`` plus ``_updated`` (the data's date)."""
    from importlib.resources import files

    raw = json.loads(files("newsletter.compose").joinpath("data/caniemail.json").read_text(encoding="utf-8"))
    features = {feature["slug"]: feature for feature in raw["data"]}
    features["_updated"] = raw.get("last_update_date", "")
    return features


def used_features(html: str) -> set[str]:
    """The caniemail feature slugs that ``html`` uses (outside comments)."""
    known = data()
    html = _COMMENT.sub("", html)
    found: set[str] = set()
    styles: list[str] = [m.group(1) for m in _STYLE_ELEMENT.finditer(html)]
    for match in _TAG.finditer(html):
        name = match.group(1).lower()
        found.add(_ELEMENTS.get(name, ""))
        for attribute, quoted in _ATTRIBUTE.findall(match.group(2)):
            attribute = attribute.lower()
            value = quoted.strip("\"'") if quoted else ""
            found.add(_ATTRIBUTES.get(attribute, ""))
            if attribute == "style":
                found |= _declaration_features(value, known)
            elif attribute == "href" and name == "a":
                found.add("html-mailto-links" if value.lower().startswith("mailto:")
                          else "html-anchor-links" if value.startswith("#") else "")
            elif attribute == "src" and name == "img":
                found.add(_image_feature(value))
            elif attribute == "name" and name == "meta" and value.lower() == "color-scheme":
                found.add("html-meta-color-scheme")
    for css in styles:
        found |= _stylesheet_features(_COMMENT.sub("", css), known)
    if html.lstrip()[:9].lower() == "<!doctype":
        found.add("html-doctype")
    return {slug for slug in found if slug in known}


def _image_feature(src: str) -> str:
    if src.lower().startswith("data:"):
        return "image-base64"
    extension = re.sub(r"[?#].*", "", src).rsplit(".", 1)[-1].lower()
    return _IMAGE_TYPES.get(extension, "")


def _declaration_features(declarations: str, known: dict) -> set[str]:
    """Features of ``prop: value; ...``: the property, a property-value pair, !important, functions."""
    found: set[str] = set()
    for declaration in declarations.split(";"):
        prop, _, value = declaration.partition(":")
        prop, value = prop.strip().lower(), value.strip().lower()
        if not prop or not value:
            continue
        if "!important" in value:
            found.add("css-important")
            value = value.replace("!important", "").strip()
        if prop.startswith("--"):
            found.add("css-variables")
            continue
        found.add(_PROPERTY_FEATURE.get(prop, f"css-{prop}"))
        found.add(f"css-{prop}-{value}")  # css-display-none, css-display-flex...
        found |= {_FUNCTION_FEATURE[name.lower()] for name in _FUNCTION.findall(value)}
    return found


def _stylesheet_features(css: str, known: dict) -> set[str]:
    found: set[str] = set()
    for at_rule, condition in _AT_RULE.findall(css):
        at_rule = at_rule.lower()
        found.add(f"css-at-{at_rule}")
        if at_rule == "media":
            found |= {slug for feature, slug in _MEDIA_FEATURES.items() if feature in condition.lower()}
    for selectors, declarations in _RULE.findall(css):
        found |= _declaration_features(declarations, known)
        found |= _selector_features(re.sub(r"@[^{]*\{", "", selectors).strip())
    return found


def _selector_features(selectors: str) -> set[str]:
    found: set[str] = set()
    if not selectors:
        return found
    if "," in selectors:
        found.add("css-selector-grouping")
    for selector in selectors.split(","):
        selector = selector.strip()
        if "[" in selector:
            found.add("css-selector-attribute")
            selector = re.sub(r"\[[^\]]*\]", "[]", selector)
        if re.search(r"\s*>\s*", selector):
            found.add("css-selector-child")
        if re.search(r"[^\s>+~,]\s+[^\s>+~,]", selector):
            found.add("css-selector-descendant")
        if "+" in selector:
            found.add("css-selector-adjacent-sibling")
        if "~" in selector:
            found.add("css-selector-general-sibling")
        if "*" in selector:
            found.add("css-selector-universal")
        if re.search(r"\.[\w-]", selector):
            found.add("css-selector-class")
        if re.search(r"#[\w-]", selector):
            found.add("css-selector-id")
        if re.search(r"(^|[\s>+~])[a-zA-Z][\w-]*", selector):
            found.add("css-selector-type")
        if re.search(r"[\w\]\)](\.|#|\[)", selector) or re.search(r"\.[\w-]+\.", selector):
            found.add("css-selector-chaining")
        found |= {f"css-pseudo-element-{name}" for name in re.findall(r"::([\w-]+)", selector)}
        found |= {f"css-pseudo-class-{name}" for name in re.findall(r"(?<!:):([\w-]+)", selector)}
    return found


def _grouped(clients: tuple[str, ...]) -> str:
    """``Gmail (web), Gmail (iOS app), Gmail (Android app)`` said as ``Gmail (web and apps)``."""
    for family in ("Gmail", "Yahoo"):
        members = [c for c in MAJOR_CLIENTS.values() if c.startswith(family + " (")]
        if all(c in clients for c in members):
            clients = tuple(f"{family} (web and apps)" if c == members[0] else c
                            for c in clients if c not in members[1:])
    return ", ".join(clients)


def _latest(versions: dict[str, str]) -> str:
    """The support letter of the latest tested version (caniemail lists versions oldest first)."""
    return next(reversed(versions.values()), "u").split(" ", 1)[0][:1] if versions else "u"


def client_issues(html: str) -> list[ClientIssue]:
    """Every used feature that a major client does not support, in caniemail's order."""
    known = data()
    used = used_features(html)
    issues = []
    for slug, feature in known.items():
        if slug not in used:
            continue
        stats = feature.get("stats", {})
        unsupported = tuple(label for (family, platform), label in MAJOR_CLIENTS.items()
                            if _latest(stats.get(family, {}).get(platform, {})) == "n")
        if not unsupported:
            continue
        results = [_latest(versions) for platforms in stats.values() for versions in platforms.values()]
        total = len(results) or 1
        issues.append(ClientIssue(slug, feature.get("title", slug), unsupported, results.count("y") / total,
                                  results.count("a") / total, feature.get("url", "")))
    return issues


def client_findings(edition) -> list:
    """``client-support`` warnings for ``edition`` (see :func:`client_issues`)."""
    from newsletter.compose.edition import Finding

    return [Finding("warning", "client-support", issue.message()) for issue in client_issues(edition.html)]
