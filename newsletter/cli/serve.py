"""``newsletter serve``: the public endpoints every email links to, under uvicorn.

Thin: build the app (:func:`newsletter.web.app.create_app`), bind the port
(a port in use is one line and a hint), run uvicorn. Starlette and uvicorn
are imported inside the command so ``newsletter --help`` stays fast.
"""

from __future__ import annotations

import click

from newsletter.cli._common import pass_app, say


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; put a TLS reverse proxy in front for NEWSLETTER_BASE_URL.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="Proxies trusted for X-Forwarded-For/-Proto (comma-separated, or '*').")
@pass_app
def serve(app, host, port, forwarded_allow_ips):
    """Serve one-click unsubscribe, double opt-in, the SendGrid event webhook and the web archive.

    \b
    Paths under NEWSLETTER_BASE_URL:
      GET/POST /unsubscribe/TOKEN   GET/POST /confirm/TOKEN   POST /subscribe
      POST /webhooks/sendgrid       GET /archive[/SLUG]       GET /feed.xml
      POST /webhooks/mailgun
      POST /webhooks/ses (Amazon SES events through SNS)
      GET /c/TOKEN (tracked links: 303 to the link)   GET /o/TOKEN (open pixel)

    \b
    Example:
      newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web.preview_server import bind_socket

    settings = app.settings
    sock = bind_socket(host, port)
    try:
        web_app = _build(settings, app)
        bound = sock.getsockname()[1]
        say(f"Serving {settings.base_url} on http://{host}:{bound}  (Ctrl-C to stop)")
        if getattr(web_app.state, "api", False):
            say(f"HTTP API: {settings.base_url}/api/ (OpenAPI: /api/openapi.json); tokens: newsletter tokens list")
        else:
            say("HTTP API: off, /api/ answers 404 (no API token; create one with: newsletter tokens create NAME "
                "--scope subscribers:write)")
        if not settings.sendgrid_webhook_key:
            say("[yellow]Note:[/] /webhooks/sendgrid answers 503 until NEWSLETTER_SENDGRID_WEBHOOK_KEY is set.")
        postmark_hook = settings.postmark_webhook_user and settings.postmark_webhook_password
        if settings.transport == "postmark" and not postmark_hook:
            say("[yellow]Note:[/] /webhooks/postmark answers 503 until NEWSLETTER_POSTMARK_WEBHOOK_USER and "
                "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD are set.")
        if settings.transport == "mailgun" and not settings.mailgun_webhook_signing_key:
            say("[yellow]Note:[/] /webhooks/mailgun answers 503 until MAILGUN_WEBHOOK_SIGNING_KEY is set.")
        if settings.transport == "ses" and not settings.ses_topic_arns:
            say("[yellow]Note:[/] /webhooks/ses answers 503 until NEWSLETTER_SES_TOPIC_ARNS is set.")
        _run(web_app, sock, host, bound, forwarded_allow_ips)
        say("Stopped.")
    finally:
        sock.close()


def _build(settings, app):
    from newsletter.web.app import create_app

    return create_app(settings, app.store)


def _run(web_app, sock, host, port, forwarded_allow_ips) -> None:
    import uvicorn

    # No access log: request paths carry unsubscribe and confirmation tokens.
    config = uvicorn.Config(web_app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips,
                            timeout_graceful_shutdown=5, server_header=False)
    server = uvicorn.Server(config)
    previous = _quiet_sigterm()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled: stopping is the normal way out
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _quiet_sigterm():
    """Let SIGTERM end the server with exit 0 (a service manager's normal stop).

    uvicorn shuts down gracefully on SIGTERM, then raises the signal again
    with the handler it found installed; by default that kills the process
    (exit -15). The handler installed here makes that second delivery a no-op.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: None)
