"""``newsletter campaigns report N`` and ``newsletter campaigns compare``: engagement, as pictures.

Registered on the ``campaigns`` group (``newsletter.cli.campaigns``). The
numbers come from ``newsletter.usecases.reports``; this module only draws
them: Rich bars and a sparkline in the terminal, JSON, a standalone HTML
page (``newsletter.web.report_page``) and, where matplotlib is installed,
a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from newsletter.cli._common import json_option, pass_app, print_json, say, stdout_console, table

SPARK = "▁▂▃▄▅▆▇█"
BAR = 30  # characters of the longest bar


@click.command("report")
@click.argument("campaign_id", type=int)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write a standalone HTML report (inline SVG charts, no script, no network) to FILE.")
@click.option("--png", "png_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write the charts as a PNG image to FILE (needs matplotlib: pip install 'newsletter[charts]').")
@json_option
@pass_app
def report(app, campaign_id, html_file, png_file, as_json):
    """Report one campaign: delivery, bounces, complaints, unsubscribes, clicks per link, domains, timeline.

    Rates are compared with the previous five campaigns. Clicks and opens
    classified as machine (scanners, link checkers, Apple's prefetch) are
    shown apart and left out of the rates; opens are estimates.

    \b
    Example:
      newsletter campaigns report 7
      newsletter campaigns report 7 --html report-7.html --json
    """
    from newsletter.usecases.reports import campaign_report

    data = campaign_report(app.store, campaign_id)
    if html_file:
        _write_html(Path(html_file), data)
    if png_file:
        _write_png(Path(png_file), data)
    if as_json:
        print_json(data)
        return
    _print_report(data)
    for written in filter(None, (html_file, png_file)):
        say(f"Wrote {written}")


@click.command("compare")
@click.option("--last", type=click.IntRange(min=1, max=100), default=5, show_default=True,
              help="How many of the newest campaigns that went out.")
@json_option
@pass_app
def compare(app, last, as_json):
    """List the last N campaigns side by side: audience, delivery, click, unsubscribe and complaint rates.

    \b
    Example:
      newsletter campaigns compare --last 10
      newsletter campaigns compare --json
    """
    from newsletter.usecases.reports import compare as build

    rows = build(app.store, last)
    if as_json:
        print_json(rows)
        return
    if not rows:
        say("No campaign has gone out yet.")
        return
    stdout_console().print(table(f"The last {len(rows)} campaigns", [
        "ID", "Subject", "List", "Sent", "Delivered", "Clicked", "Unsubscribed", "Complained", "Trend"], [
        [r["campaign_id"], r["subject"], r["list"], r["counts"]["sent"], _pct(r["rates"]["delivery_rate"]),
         _pct(r["rates"]["click_rate"]), _pct(r["rates"]["unsubscribe_rate"]), _pct(r["rates"]["complaint_rate"]),
         _bar(r["rates"]["click_rate"] or 0, max(x["rates"]["click_rate"] or 0 for x in rows) or 1, 10)]
        for r in rows], drop=("Trend", "List")))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _bar(value: float, top: float, width: int = BAR) -> str:
    return "█" * round(value / top * width) if top else ""


def sparkline(values: list[int]) -> str:
    """One character per value, from ▁ (zero) to █ (the peak)."""
    peak = max(values + [0])
    if not peak:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / peak * (len(SPARK) - 1)))] for v in values)


def _print_report(data: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.text import Text

    console = stdout_console()
    counts, rates, previous = data["counts"], data["rates"], data["previous"]["rates"]
    console.print(Text(f"Campaign {data['campaign_id']}: {data['subject']}", style="bold"))
    console.print(f"List {data['list']} · sent {data['sent_at'][:16].replace('T', ' ')} UTC · "
                  f"tracking {data['tracking']['mode']}", markup=False)
    console.print(table("Totals", ["Sent", "Delivered", "Bounced", "Complained", "Unsubscribed", "Unique clicks",
                                   "Clicks", "Machine clicks", "Opens (est.)"], [[
        counts["sent"], counts["delivered"], counts["bounced"], counts["complained"], counts["unsubscribed"],
        counts["unique_clicks"], counts["clicks"], counts["machine_clicks"], counts["opens"]]]))
    names = [("delivery_rate", "Delivered"), ("click_rate", "Clicked"), ("open_rate", "Opened (est.)"),
             ("unsubscribe_rate", "Unsubscribed"), ("bounce_rate", "Bounced"), ("complaint_rate", "Complained")]
    top = max([v for v in list(rates.values()) + list(previous.values()) if v is not None] + [0.0001])
    lines = Text()
    for key, label in names:
        this, before, change = rates[key], previous[key], data["compared"][key]
        lines.append(f"{label:<15}{_pct(this):>7} ")
        lines.append(_bar(this or 0, top), style="green")
        trend = "" if change is None else f"  {'+' if change >= 0 else '−'}{abs(change) * 100:.1f} pts vs before"
        lines.append(f"{trend}  (previous {len(data['previous']['campaign_ids'])}: {_pct(before)})\n")
    console.print(Panel(lines, title="Rates", expand=False))
    timeline = data["timeline"]
    # Each label on its own line: 72 hours and the panel's border fit an 80-column terminal.
    lines = Text()
    for label, name in (("people's clicks", "clicks"), ("machine clicks", "machine_clicks"),
                        ("opens (estimates)", "opens")):
        lines.append(f"{label}: {sum(timeline[name])}\n", style="dim")
        lines.append(sparkline(timeline[name]) + ("\n" if name != "opens" else ""))
    console.print(Panel(lines, title="First 72 hours, one character an hour", expand=False))
    if data["links"]:
        peak = max(link["clicks"] for link in data["links"]) or 1
        console.print(table("Links", ["Clicks", "Unique", "Machine", "Bar", "URL"], [
            [link["clicks"], link["unique_clicks"], link["machine_clicks"], _bar(link["clicks"], peak, 20),
             link["url"]] for link in data["links"]], drop=("Bar",)))
    console.print(table("Top recipient domains", ["Domain", "Sent", "Delivered", "Bounced", "Clicked"], [
        [d["domain"], d["sent"], d["delivered"], d["bounced"], d["clicked"]] for d in data["domains"]]))
    notes = ["Opens are estimates (privacy proxies and image blocking)."]
    if data["click_basis"] == "clicks":
        notes.append("Aggregate tracking: the click rate counts people's clicks, not unique readers.")
    if data["delivered_estimated"]:
        notes.append("No provider reported deliveries: delivered is sent minus bounces.")
    say(" ".join(notes))


def _write_html(path: Path, data: dict[str, Any]) -> None:
    from newsletter.fileio import write_atomically
    from newsletter.web.report_page import report_html

    write_atomically(path, report_html(data))


def _write_png(path: Path, data: dict[str, Any]) -> None:
    """The timeline and per-link charts as one PNG (matplotlib's Agg backend: no display needed)."""
    from newsletter.errors import InputError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--png needs matplotlib, which is not installed",
                         hint="pip install 'newsletter[charts]', or use --html FILE") from None
    timeline = data["timeline"]
    figure, (hours, links) = plt.subplots(2, 1, figsize=(10, 7), dpi=120)
    xs = list(range(len(timeline["clicks"])))
    hours.bar(xs, timeline["clicks"], color="#1b5e4f", label="clicks (people)")
    hours.bar(xs, timeline["machine_clicks"], bottom=timeline["clicks"], color="#b9c3c9", label="machine clicks")
    hours.plot(xs, timeline["opens"], color="#c7772e", label="opens (estimates)")
    hours.set_title(f"Campaign {data['campaign_id']}: first 72 hours")
    hours.set_xlabel("hours after sending")
    hours.legend()
    shown = data["links"][:10]
    links.barh([link["url"][:60] for link in shown][::-1], [link["clicks"] for link in shown][::-1],
               color="#1b5e4f")
    links.set_title("Clicks per link (people)")
    figure.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, format="png")
    plt.close(figure)
    tmp.replace(path)
