"""Server-rendered pages of the public app: Jinja2 templates from ``templates/web/``.

A workspace's own ``templates/web/<page>.html`` overrides the built-in page
of that name. Pages carry no external assets; the headers below keep the
tokens in our URLs from leaking through ``Referer`` and forbid framing.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from starlette.responses import HTMLResponse

# Our own pages: inline styles only, forms post to us, never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class Pages:
    """Renders the templates of ``templates/web/`` with the workspace's name and address."""

    def __init__(self, settings):
        import jinja2

        search = []
        workspace_templates = Path(settings.workspace) / "templates"
        if (workspace_templates / "web").is_dir():
            search.append(str(workspace_templates))
        search.append(str(files("newsletter.templates")))
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True)
        self.common = {"newsletter_name": settings.name, "postal_address": settings.postal_address,
                       "lang": settings.language or "en", "brand": brand(settings)}

    def render(self, template: str, **context) -> str:
        return self.env.get_template(f"web/{template}").render(**self.common, **context)

    def page(self, template: str, status: int = 200, **context) -> HTMLResponse:
        """An HTML response of ``template`` with the protective headers."""
        return HTMLResponse(self.render(template, **context), status_code=status, headers=PAGE_HEADERS)

    def message(self, heading: str, *paragraphs: str, status: int = 200, link: dict | None = None) -> HTMLResponse:
        """A simple page: a heading, some paragraphs and perhaps one link."""
        return self.page("message.html", status, heading=heading, paragraphs=paragraphs, link=link)


# The colours of a theme's pages: ``templates/<theme>/colours.toml`` (the workspace's theme folder first).
# Keys: accent (buttons and links), accent_text (the text on a button), background, text, and their
# dark-mode twins dark_accent, dark_accent_text, dark_background, dark_text. Missing keys keep these.
DEFAULT_COLOURS = {"accent": "#1f4e8c", "accent_text": "#ffffff", "background": "#ffffff", "text": "#1f2328",
                   "dark_accent": "#8fb8ef", "dark_accent_text": "#0d1620", "dark_background": "#121416",
                   "dark_text": "#e6e8ea"}
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".svg": "image/svg+xml"}
LOGO_MAX_BYTES = 256 * 1024


def brand(settings) -> dict[str, str]:
    """The workspace's look on its public pages: name, the theme's colours and the logo as a data URL.

    ConfigError for a colours file or logo that cannot be used (read once, when the app starts).
    """
    return {"name": settings.name, **theme_colours(settings), "logo": logo_data_url(settings)}


def theme_colours(settings) -> dict[str, str]:
    import tomllib

    from newsletter.errors import ConfigError

    theme = settings.theme or "default"
    candidates = [Path(settings.workspace) / "templates" / theme / "colours.toml",
                  Path(str(files("newsletter.templates"))) / theme / "colours.toml"]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        return dict(DEFAULT_COLOURS)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc})", hint="fix the file or remove it") from None
    colours = dict(DEFAULT_COLOURS)
    for key, value in raw.items():
        if key not in DEFAULT_COLOURS:
            raise ConfigError(f"{path}: unknown colour {key!r}", hint=f"use {', '.join(DEFAULT_COLOURS)}")
        if not isinstance(value, str) or not _COLOUR.fullmatch(value):
            # Only #rrggbb reaches the page's CSS: nothing else can close the style block.
            raise ConfigError(f"{path}: {key} must be a colour like \"#1f4e8c\"", hint="write it as #rrggbb")
        colours[key] = value
    return colours


def logo_data_url(settings) -> str:
    """The logo file inlined as a ``data:`` URL (the pages load nothing from elsewhere); empty: no logo."""
    import base64

    from newsletter.errors import ConfigError

    if not settings.logo:
        return ""
    path = Path(settings.workspace) / settings.logo
    kind = LOGO_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"the logo {settings.logo!r} is not a PNG, JPEG, GIF, WebP or SVG file",
                          hint="set [web] logo to an image file in the workspace")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"the logo {settings.logo!r} cannot be read ({exc.strerror})",
                          hint="set [web] logo to an image file in the workspace") from None
    if len(data) > LOGO_MAX_BYTES:
        raise ConfigError(f"the logo is {len(data) // 1024} KB (at most {LOGO_MAX_BYTES // 1024} KB)",
                          hint="use a smaller image")
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def mask_email(address: str) -> str:
    """``r•••@example.org``: enough for a reader to recognise, not enough to harvest from a forwarded link."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"
