"""``newsletter doctor``: what receiving servers will see of this workspace's mail."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, stdout_console, table


@click.command("doctor")
@json_option
@pass_app
def doctor(app, as_json):
    """Check SPF, DKIM, DMARC, the bounce domain's MX and the SMTP relay's TLS.

    Looks the From domain's records up in DNS (the system's resolver, or
    [doctor] dns_server / NEWSLETTER_DNS_SERVER as host:port), compares each
    configured DKIM selector's record with its key, and talks to the relay
    up to STARTTLS (nothing is sent, no password either). What it could not
    check (offline, resolver or relay unreachable) shows as unknown. Exits 1
    when a check failed.

    \b
    Example:
      newsletter doctor
      newsletter doctor --json
      NEWSLETTER_DNS_SERVER=127.0.0.1:5353 newsletter doctor
    """
    from newsletter.usecases.doctor import run_doctor

    report = run_doctor(app.settings)
    if as_json:
        print_json(report.as_dict())
    else:
        rows = [[check.name, str(check.result),
                 check.detail + (f" (hint: {check.hint})" if check.hint else "")] for check in report.checks]
        stdout_console().print(table("What receiving servers will see", ["Check", "Result", "Detail"], rows))
    if report.failed:
        raise SystemExit(1)
