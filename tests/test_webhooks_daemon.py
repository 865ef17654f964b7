"""The scheduler daemon (`newsletter run`) delivers webhooks: a campaign scheduled from the command line is
reported scheduled, started and sent, in that order, to a real local receiver, signed."""

from __future__ import annotations

import shutil

from standardwebhooks.webhooks import Webhook

from support.hook_receiver import receiver
from test_daemon import ARTICLE, schedule, started_daemons, wait_status


def test_the_daemon_delivers_a_campaigns_events_in_order(workspace, cli):
    shutil.copy(ARTICLE, workspace / "articles" / "budget.md")
    for n in range(2):
        assert cli("subscribers", "add", f"reader{n}@example.org", "--list", "readers").exit_code == 0
    with receiver() as hook, started_daemons(workspace) as start:
        added = cli("webhooks", "add", hook.url, "--event", "campaign.scheduled", "--event", "campaign.started",
                    "--event", "campaign.sent", "--json").json()
        daemon = start()
        daemon.wait_for("scheduler started")
        campaign_id = schedule(cli, 1.5)
        wait_status(cli, campaign_id, "sent")
        got = hook.wait_for(3, timeout=60)
        assert daemon.stop() == 0
    events = [Webhook(added["secret"]).verify(r.body, r.headers) for r in got]
    assert [e["type"] for e in events] == ["campaign.scheduled", "campaign.started", "campaign.sent"]
    assert {e["data"]["id"] for e in events} == {campaign_id}
    assert events[0]["data"]["scheduled_at"] and events[2]["data"]["finished_at"]
    assert "webhooks: delivered" in daemon.text()
