"""A campaign report as one standalone HTML page: inline CSS and SVG charts, no script, no network.

:func:`report_html` takes the dict of ``newsletter.events.engagement.campaign_report``.
The layout is one column on a phone (375 px) and two on a desktop (1200 px);
every chart is an SVG that scales to its box and carries its numbers as
text, so it reads without colour and prints.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlsplit

ACCENT = "#1b5e4f"
MACHINE = "#b9c3c9"
OPEN = "#c7772e"

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f5;color:#1d2327;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;line-height:1.25;margin:8px 0 4px} h2{font-size:1.05rem;margin:0 0 10px}
.meta{color:#51575d;margin:0 0 16px}
.grid{display:grid;grid-template-columns:1fr;gap:16px}
@media (min-width:800px){.grid{grid-template-columns:1fr 1fr} .wide{grid-column:1/-1}}
.card{background:#fff;border-radius:10px;padding:16px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px}
.tile{background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile b{display:block;font-size:1.4rem} .tile span{color:#51575d;font-size:.85rem}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{text-align:left;padding:6px 4px;border-bottom:1px solid #e4e8e6;vertical-align:top}
td.n,th.n{text-align:right} td.n{white-space:nowrap}
@media (max-width:480px){main{padding:10px} .card{padding:12px} table{font-size:.82rem} th,td{padding:5px 3px}}
.scroll{overflow-x:auto}
.narrow-only{display:none}
@media (max-width:600px){.narrow-only{display:block} .wide-only{display:none}}
td.url{word-break:break-all}
.note{color:#51575d;font-size:.85rem;margin:8px 0 0}
svg{display:block;width:100%;height:auto}
.legend span{display:inline-block;margin-right:12px;font-size:.85rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _delta(value: float | None) -> str:
    if value is None:
        return ""
    points = value * 100
    return f"{'+' if points >= 0 else '−'}{abs(points):.1f} pts"


def report_html(report: dict[str, Any]) -> str:
    """The whole page for ``report``."""
    counts, rates = report["counts"], report["rates"]
    title = f"Campaign {report['campaign_id']}: {report['subject']}"
    tiles = [("Sent", f"{counts['sent']:,}"), ("Delivered", f"{counts['delivered']:,}"),
             ("Click rate", _pct(rates["click_rate"])), ("Unique clicks", f"{counts['unique_clicks']:,}"),
             ("Clicks (people)", f"{counts['clicks']:,}"), ("Machine clicks", f"{counts['machine_clicks']:,}"),
             ("Bounced", f"{counts['bounced']:,}"), ("Complained", f"{counts['complained']:,}"),
             ("Unsubscribed", f"{counts['unsubscribed']:,}"), ("Opens (estimate)", f"{counts['opens']:,}")]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">List {escape(report["list"])} · sent {escape(report["sent_at"][:16].replace("T", " "))} '
        f'UTC · tracking {escape(report["tracking"]["mode"])} · status {escape(report["status"])}</p>',
        '<section class="tiles" aria-label="Totals">',
        *(f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in tiles),
        "</section>", '<div class="grid" style="margin-top:16px">',
        _card("Clicks per hour, first 72 hours", _timeline_svg(report["timeline"]), wide=True,
              note="Bars: people's clicks; grey: machine clicks (scanners, link checkers); orange line: opens "
                   "(estimates)."),
        _card("Rates against the previous campaigns", _rates_svg(report), note=_previous_note(report)),
        _card("Links", _links_block(report["links"])),
        _card("Recipient domains", _domains_table(report["domains"])),
        _card("What the numbers mean", _notes(report)),
        "</div></main></body></html>",
    ]
    return "\n".join(parts)


def _card(heading: str, body: str, *, wide: bool = False, note: str = "") -> str:
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return (f'<section class="card{" wide" if wide else ""}"><h2>{escape(heading)}</h2>{body}{extra}</section>')


def _timeline_svg(timeline: dict[str, Any]) -> str:
    """Two drawings of the timeline: a wide one, and one with larger type for phones (CSS shows one)."""
    legend = (f'<p class="legend"><span><i style="background:{ACCENT}"></i>people</span>'
              f'<span><i style="background:{MACHINE}"></i>machines</span>'
              f'<span><i style="background:{OPEN}"></i>opens</span></p>')
    return (f'<div class="wide-only">{_timeline_drawing(timeline, 720, 220, 11, 12)}</div>'
            f'<div class="narrow-only">{_timeline_drawing(timeline, 340, 220, 12, 24)}</div>{legend}')


def _timeline_drawing(timeline: dict[str, Any], width: int, height: int, font: int, every: int) -> str:
    clicks, machine, opens = timeline["clicks"], timeline["machine_clicks"], timeline["opens"]
    hours = len(clicks)
    left, bottom = 12 + 3 * font, 12 + font
    peak = max([c + m for c, m in zip(clicks, machine, strict=True)] + opens + [1])
    step = (width - left - 4) / hours
    scale = (height - bottom - 10) / peak
    out = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Clicks and opens per hour">']
    for tick in (0, peak // 2, peak):
        y = height - bottom - tick * scale
        out.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e8e6"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="{font}" text-anchor="end" '
                   f'fill="#51575d">{tick}</text>')
    for i, (human, bot) in enumerate(zip(clicks, machine, strict=True)):
        x = left + i * step + 1
        if human:
            out.append(f'<rect x="{x:.1f}" y="{height - bottom - human * scale:.1f}" width="{step - 2:.1f}" '
                       f'height="{human * scale:.1f}" fill="{ACCENT}"><title>hour {i}: {human} clicks</title></rect>')
        if bot:
            out.append(f'<rect x="{x:.1f}" y="{height - bottom - (human + bot) * scale:.1f}" width="{step - 2:.1f}" '
                       f'height="{bot * scale:.1f}" fill="{MACHINE}"><title>hour {i}: {bot} machine</title></rect>')
    if any(opens):
        points = " ".join(f"{left + (i + 0.5) * step:.1f},{height - bottom - n * scale:.1f}"
                          for i, n in enumerate(opens))
        out.append(f'<polyline points="{points}" fill="none" stroke="{OPEN}" stroke-width="2"/>')
    for hour in range(0, hours + 1, every):
        anchor = "end" if hour == hours else "middle"
        out.append(f'<text x="{left + hour * step:.1f}" y="{height - 4}" font-size="{font}" '
                   f'text-anchor="{anchor}" fill="#51575d">{hour}h</text>')
    out.append("</svg>")
    return "".join(out)


def _rates_svg(report: dict[str, Any]) -> str:
    rates, previous = report["rates"], report["previous"]["rates"]
    names = [("delivery_rate", "Delivered"), ("click_rate", "Clicked"), ("open_rate", "Opened (est.)"),
             ("unsubscribe_rate", "Unsubscribed"), ("bounce_rate", "Bounced"), ("complaint_rate", "Complained")]
    width, row = 360, 44
    top = max([v for v in list(rates.values()) + list(previous.values()) if v is not None] + [0.01])
    out = [f'<svg viewBox="0 0 {width} {row * len(names)}" role="img" aria-label="Rates">']
    for i, (key, label) in enumerate(names):
        y = i * row
        this, before = rates.get(key), previous.get(key)
        out.append(f'<text x="0" y="{y + 13}" font-size="12" fill="#1d2327">{escape(label)}</text>'
                   f'<text x="{width}" y="{y + 13}" font-size="12" text-anchor="end" fill="#1d2327">'
                   f'{_pct(this)} <tspan fill="#51575d">(before {_pct(before)})</tspan></text>')
        if this is not None:
            out.append(f'<rect x="0" y="{y + 18}" width="{max(this / top * width, 1):.1f}" height="10" rx="2" '
                       f'fill="{ACCENT}"/>')
        if before is not None:
            out.append(f'<rect x="0" y="{y + 30}" width="{max(before / top * width, 1):.1f}" height="6" rx="2" '
                       f'fill="{MACHINE}"/>')
    out.append("</svg>")
    return "".join(out)


def _previous_note(report: dict[str, Any]) -> str:
    ids = report["previous"]["campaign_ids"]
    if not ids:
        return "No earlier campaign to compare with."
    return f"Dark bars: this campaign; grey: the average of campaigns {', '.join(map(str, ids))}."


def _links_block(links: list[dict[str, Any]]) -> str:
    if not links:
        return '<p class="note">No tracked links in this campaign.</p>'
    top = max([link["clicks"] + link["machine_clicks"] for link in links] + [1])
    rows = []
    for link in links:
        bar = (f'<svg viewBox="0 0 100 8" preserveAspectRatio="none" style="height:8px" aria-hidden="true">'
               f'<rect width="{link["clicks"] / top * 100:.1f}" height="8" fill="{ACCENT}"/>'
               f'<rect x="{link["clicks"] / top * 100:.1f}" width="{link["machine_clicks"] / top * 100:.1f}" '
               f'height="8" fill="{MACHINE}"/></svg>')
        rows.append(f'<tr><td class="url">{escape(link["url"])}{bar}</td><td class="n">{link["clicks"]}</td>'
                    f'<td class="n">{link["unique_clicks"]}</td><td class="n">{link["machine_clicks"]}</td></tr>')
    return ('<table><thead><tr><th>Link</th><th class="n">Clicks</th><th class="n">Unique</th>'
            '<th class="n">Machine</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            + '<p class="note">Unique counts only readers tracked personally (with their consent).</p>')


def _domains_table(domains: list[dict[str, Any]]) -> str:
    if not domains:
        return '<p class="note">No recipients.</p>'
    rows = "".join(f'<tr><td>{escape(d["domain"])}</td><td class="n">{d["sent"]}</td><td class="n">'
                   f'{d["delivered"]}</td><td class="n">{d["bounced"]}</td><td class="n">{d["clicked"]}</td></tr>'
                   for d in domains)
    head = ('<th>Domain</th><th class="n">Sent</th><th class="n">Delivered</th><th class="n">Bounced</th>'
            '<th class="n">Clicked</th>')
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'



def _notes(report: dict[str, Any]) -> str:
    items = ["Opens are estimates: privacy proxies (Apple Mail Privacy Protection) fetch images without a reader, "
             "and many readers block images.",
             "Machine clicks (security scanners, link checkers, requests seconds after delivery) are counted apart "
             "and left out of every rate."]
    if report["click_basis"] == "clicks":
        items.append("No per-reader clicks were recorded (aggregate tracking): the click rate is people's clicks "
                     "over delivered messages, and one reader may click more than once.")
    if report["delivered_estimated"]:
        items.append("The provider reported no deliveries: delivered is sent minus bounces.")
    links = [link for link in report["links"]]
    hosts = sorted({urlsplit(link["url"]).hostname or "" for link in links} - {""})
    if hosts:
        items.append("Links go to " + ", ".join(hosts) + ".")
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
