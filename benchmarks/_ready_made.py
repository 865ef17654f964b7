"""The ready-made limit of a SendGrid send, shared by bench_send.py and bench_postgres.py.

Issue 15's and issue 20's measure (the same one, by the lead's decision):
ready-made v3 bodies of 1,000 personalizations (substitutions and headers as
the transport builds them, the composed HTML of the send's own edition once a
body), built beforehand as dicts, each JSON-encoded with the standard
library as it is posted, one request after another over one keep-alive
connection to the same stand-in (tests/fake_sendgrid.py --fast). A send is
printed as this time divided by its own: 1.0 would mean the send costs
nothing beyond posting its requests.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

API_KEY = "SG.bench.key"


def composed_html(folder: Path, article: str = "articles/welcome.md") -> str:
    """The HTML a send from ``folder`` composes from ``article`` (the same edition, composed once here)."""
    from newsletter.compose.edition import compose_edition
    from newsletter.config import load_settings

    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return compose_edition(folder / article, load_settings(folder)).html
    finally:
        os.chdir(cwd)


def ready_made_seconds(url: str, rows: int, html: str, api_key: str = API_KEY) -> float:
    """Seconds to POST ``rows`` recipients to the stand-in at ``url`` as ready-made v3 bodies of 1,000
    personalizations (``html`` once a body), one request after another over one keep-alive connection."""
    from newsletter.providers.sendgrid.body import build_body
    from newsletter.providers.sendgrid.client import MAIL_SEND_PATH

    from support.delivery import make_message, make_recipients

    message = make_message(html=html)
    bodies = [build_body(message, make_recipients(1000, start))[0] for start in range(0, 10_000, 1000)]
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    start = time.perf_counter()
    for number in range(max(1, rows // 1000)):
        # Encoded per request, as any client must; the --fast stand-in does not parse it.
        payload = json.dumps(bodies[number % len(bodies)], separators=(",", ":")).encode()
        connection.request("POST", MAIL_SEND_PATH, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            raise SystemExit(f"the stand-in answered {response.status} to a ready-made body")
    seconds = time.perf_counter() - start
    connection.close()
    return seconds
