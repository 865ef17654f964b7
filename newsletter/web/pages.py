"""Server-rendered pages of the public app: Jinja2 templates from ``templates/web/``.

A workspace's own ``templates/web/<page>.html`` overrides the built-in page
of that name. Pages carry no external assets; the headers below keep the
tokens in our URLs from leaking through ``Referer`` and forbid framing.
"""

from __future__ import annotations

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
                       "lang": settings.language or "en"}

    def render(self, template: str, **context) -> str:
        return self.env.get_template(f"web/{template}").render(**self.common, **context)

    def page(self, template: str, status: int = 200, **context) -> HTMLResponse:
        """An HTML response of ``template`` with the protective headers."""
        return HTMLResponse(self.render(template, **context), status_code=status, headers=PAGE_HEADERS)

    def message(self, heading: str, *paragraphs: str, status: int = 200, link: dict | None = None) -> HTMLResponse:
        """A simple page: a heading, some paragraphs and perhaps one link."""
        return self.page("message.html", status, heading=heading, paragraphs=paragraphs, link=link)


def mask_email(address: str) -> str:
    """``r•••@example.org``: enough for a reader to recognise, not enough to harvest from a forwarded link."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"
