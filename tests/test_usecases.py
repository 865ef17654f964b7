"""The campaign use cases called as a library: Settings and plain values in, a result out, no CLI object."""

from __future__ import annotations

import dataclasses

import pytest
from newsletter.errors import InputError

from support.articles import RECENT, SEED
from support.cli import populate


def test_the_dispatcher_is_chosen_from_the_broker_url(settings):
    from newsletter.usecases.dispatch import OnWorkers, ThisMachine, dispatcher_for

    assert type(dispatcher_for(None, settings)) is ThisMachine
    scaled = dataclasses.replace(settings, broker_url="redis://127.0.0.1:6379/0")
    assert type(dispatcher_for(None, scaled)) is OnWorkers


def test_prepare_edition_stops_at_the_first_preflight_error(settings):
    from newsletter.usecases.editions import prepare_edition

    with pytest.raises(InputError, match="has no URL"):
        prepare_edition(settings, str(SEED))
    assert prepare_edition(settings, str(SEED), recent_url=RECENT).recent.url == RECENT


def test_send_now_without_a_cli(workspace, cli, tmp_path):
    from newsletter.config import load_settings
    from newsletter.store.db import open_store
    from newsletter.usecases import campaigns as use
    from newsletter.usecases.dispatch import Watch

    populate(cli, tmp_path, 3)
    settings = load_settings(workspace)
    store = open_store(settings)
    plan = use.plan_send(store, settings, str(SEED), "readers", compose=use.ComposeOptions(recent_url=RECENT))
    assert (plan.audience, plan.transport) == (3, "file")
    notes, progress = [], []
    report = use.send_now(store, settings, plan, Watch(note=notes.append,
                                                       on_progress=lambda done, total: progress.append(done)))
    assert (report.status, report.sent, report.failed) == ("sent", 3, 0)
    assert notes == [f"Campaign {report.campaign_id}: sending to 3 subscribers of readers via file"]
    assert progress[-1] == 3
    assert len(list((workspace / "outbox").glob("*.eml"))) == 3
