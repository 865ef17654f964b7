"""``newsletter webhooks ...``: outgoing webhooks (see ``newsletter.usecases.webhooks``)."""

from __future__ import annotations

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table


@click.group("webhooks")
def webhooks():
    """Send events (unsubscribes, bounces, campaigns sent, ...) to other systems over HTTP, signed.

    Events are written to an outbox with the change they report and sent by
    the scheduler daemon (newsletter run) or by `newsletter webhooks deliver`.

    \b
    Example:
      newsletter webhooks add https://crm.example.org/hooks/newsletter --event subscriber.unsubscribed
    """


def _when(value) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, metavar="TYPE",
              help="An event type to send (see `newsletter webhooks events`; * for all). Repeat for more.")
@click.option("--secret", default=None, metavar="whsec_...",
              help="The signing secret (default: a fresh one, printed once).")
@json_option
@pass_app
def add(app, url, events, secret, as_json):
    """Add an endpoint and print its signing secret (shown only this once: keep it in the receiver).

    \b
    Example:
      newsletter webhooks add https://crm.example.org/hooks/newsletter \\
        --event subscriber.unsubscribed --event subscriber.complained --event campaign.sent
    """
    from newsletter.usecases.webhooks import add_endpoint

    endpoint = add_endpoint(app.store, url, events, secret)
    if as_json:
        print_json(endpoint)
        return
    click.echo(endpoint["secret"])
    say(f"Added endpoint {endpoint['id']} for {', '.join(endpoint['events'])}; the line above is its signing "
        "secret (shown only now)")


@webhooks.command("list")
@json_option
@pass_app
def list_command(app, as_json):
    """List the endpoints: events, enabled or why not, failures in a row, deliveries waiting.

    \b
    Example:
      newsletter webhooks list --json
    """
    from newsletter.usecases.webhooks import list_endpoints

    rows = list_endpoints(app.store)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Id", "URL", "Events", "State", "Failures", "Waiting", "Delivered"],
                                 [[r["id"], r["url"], ", ".join(r["events"]),
                                   "enabled" if r["enabled"] else f"disabled: {r['disabled_reason']}",
                                   r["failures"], r["pending"], r["delivered"]] for r in rows]))
    disabled = [r for r in rows if not r["enabled"]]
    say(f"{len(rows)} endpoints" + (f"; {len(disabled)} disabled (enable again with newsletter webhooks enable "
                                    f"{disabled[0]['id']})" if disabled else ""))


@webhooks.command("remove")
@click.argument("endpoint_id", type=int)
@pass_app
def remove(app, endpoint_id):
    """Remove an endpoint with its waiting deliveries and its attempts.

    \b
    Example:
      newsletter webhooks remove 3
    """
    from newsletter.usecases.webhooks import remove_endpoint

    remove_endpoint(app.store, endpoint_id)
    say(f"Removed endpoint {endpoint_id}")


@webhooks.command("enable")
@click.argument("endpoint_id", type=int)
@pass_app
def enable(app, endpoint_id):
    """Enable an endpoint that was disabled after repeated failures; what waited for it goes at the next pass.

    \b
    Example:
      newsletter webhooks enable 3
    """
    from newsletter.usecases.webhooks import enable_endpoint

    enable_endpoint(app.store, endpoint_id)
    say(f"Enabled endpoint {endpoint_id}")


@webhooks.command("events")
@json_option
def events_command(as_json):
    """List the event types an endpoint can receive, with an example of each one's data.

    \b
    Example:
      newsletter webhooks events --json
    """
    from newsletter.usecases.webhooks import catalogue

    rows = catalogue()
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["Type", "Sent when"], [[r["type"], r["description"]] for r in rows]))


@webhooks.command("deliveries")
@click.option("--failed", is_flag=True, help="Only the failed attempts.")
@click.option("--endpoint", "endpoint_id", type=int, default=None, help="Only this endpoint's attempts.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_app
def deliveries(app, failed, endpoint_id, limit, as_json):
    """Show the latest delivery attempts, newest first: event, endpoint, answer, next try.

    \b
    Example:
      newsletter webhooks deliveries --failed
    """
    from newsletter.usecases.webhooks import attempts

    rows = attempts(app.store, failed_only=failed, endpoint_id=endpoint_id, limit=limit)
    if as_json:
        print_json(rows)
        return
    stdout_console().print(table(None, ["When", "Event", "Type", "Endpoint", "Try", "Answer", "State", "Next try"],
                                 [[_when(r["at"]), r["event_id"], r["type"], r["url"], r["attempt"],
                                   r["status_code"] if r["ok"] else (r["error"] or r["status_code"]),
                                   r["state"] or "", _when(r["next_attempt_at"])] for r in rows],
                                 drop=("Endpoint",)))
    say(f"{len(rows)} attempts")


@webhooks.command("deliver")
@json_option
@pass_app
def deliver(app, as_json):
    """Deliver what is due now, once (the daemon does this every few seconds; this is for cron and tests).

    \b
    Example:
      */5 * * * *  cd /srv/newsletter && newsletter webhooks deliver
    """
    from newsletter.usecases.webhooks import deliver as deliver_now

    report = deliver_now(app.store)
    data = {"delivered": report.delivered, "retrying": report.retrying, "given_up": report.given_up,
            "released": report.released, "disabled": report.disabled}
    if as_json:
        print_json(data)
    else:
        say(f"Delivered {report.delivered}, retrying {report.retrying}, given up {report.given_up}")
    for url in report.disabled:
        say(f"Disabled {url}: it kept failing (see newsletter webhooks list; enable it again when fixed)")


@webhooks.command("test")
@click.argument("url")
@json_option
@pass_app
def test(app, url, as_json):
    """POST a signed webhook.test event to URL now, and say what it answered.

    The endpoint's secret signs it when URL is an endpoint's; otherwise a
    fresh secret, printed, so the receiver's check can be tried by hand.

    \b
    Example:
      newsletter webhooks test https://crm.example.org/hooks/newsletter
    """
    from newsletter.errors import DeliveryError
    from newsletter.usecases.webhooks import send_test

    answer = send_test(app.store, url)
    if as_json:
        print_json(answer)
    elif answer.get("secret"):
        click.echo(answer["secret"])
    if not answer["ok"]:
        raise DeliveryError(f"{url} answered {answer['error']}",
                            hint="check that the receiver is running and answers 2xx to a POST")
    if not as_json:
        say(f"{url} answered {answer['status']} to event {answer['id']}")
