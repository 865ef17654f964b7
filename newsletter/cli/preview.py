"""``newsletter preview``: the local preview server with live reload.

Thin: check the article and the port, build the app
(:func:`newsletter.web.preview.create_preview_app`), run it under uvicorn.
Starlette and uvicorn are imported inside the command so ``newsletter
--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli._common import pass_app, say
from newsletter.cli.compose import compose_options


@click.command("preview")
@click.argument("article", metavar="ARTICLE")
@compose_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (anything but loopback is reachable by others).")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--no-open", is_flag=True, help="Do not open a browser (headless use).")
@click.option("--list", "list_name", default=None, help="With --where: the list whose members 'Render as' offers.")
@click.option("--segment", default=None, help="'Render as' offers this segment's members (the send's audience).")
@click.option("--where", default=None, help="'Render as' offers the list's members matching this filter.")
@pass_app
def preview(app, article, recent_title, recent_url, theme, host, port, no_open, list_name, segment, where):
    """Preview ARTICLE's email in the browser while you write it.

    The page shows the email at desktop and phone widths, in light and dark
    mode, its plain-text part, raw source and pre-flight findings; renders it
    as any subscriber; sends a [TEST] copy through the configured transport.
    Saving the article or a template updates the page within a second or two.

    \b
    Example:
      newsletter preview articles/ketamine.md
      newsletter preview article.txt --recent-url https://example.org/blog/types --port 8030 --no-open
      newsletter preview articles/event.md --segment london-vips
    """
    from newsletter.config import is_loopback_host
    from newsletter.errors import InputError
    from newsletter.web.preview_server import bind_socket, local_hosts, make_server, open_when_started, page_url

    path = Path(article)
    if not path.is_file():
        raise InputError(f"article not found: {article}", hint="give the path of a .md, .txt or .html file")
    settings = app.settings
    audience = None
    if segment or where or list_name:
        from newsletter.usecases.segments import resolve_audience

        audience = resolve_audience(app.store, list_name, segment, where)
    if not is_loopback_host(host):
        say(f"[yellow]Warning:[/] listening on {_escape(host)}: anyone who can reach this machine"
            " can see the preview and send test emails.")
    sock = bind_socket(host, port)
    try:
        server = _server(app, settings, path, sock, host, recent_title, recent_url, theme, make_server, local_hosts,
                         audience)
        url = page_url(host, sock.getsockname()[1])
        say(f"Previewing [bold]{_escape(article)}[/] at {url}  (Ctrl-C to stop)")
        if not no_open:
            open_when_started(server, url)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; for a preview it is the normal way out
        say("Preview stopped.")
    finally:
        sock.close()


def _server(app, settings, path, sock, host, recent_title, recent_url, theme, make_server, local_hosts,
            audience=None):
    from newsletter.web.preview import create_preview_app

    web_app = create_preview_app(
        settings, path, recent_title=recent_title, recent_url=recent_url, theme=theme,
        store_opener=lambda: app.store, allowed_hosts=local_hosts(host), audience=audience,
    )
    error = web_app.state.preview.snapshot.error
    if error:
        say(f"[red]{_escape(error['message'])}[/] (the page shows it; fix and save to update)")
    return make_server(web_app, sock)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
