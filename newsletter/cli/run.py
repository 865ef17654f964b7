"""``newsletter run``: the scheduler daemon."""

from __future__ import annotations

import os

import click

from newsletter.cli._common import pass_app


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@click.command("run")
@click.option("--sync-interval", type=click.FloatRange(min=0.05), default=None, metavar="SECONDS",
              help="How often to pick up campaigns scheduled by other commands (default 2; "
                   "env NEWSLETTER_SCHEDULER_SYNC_SECONDS).")
@click.option("--lease-seconds", type=click.FloatRange(min=0.5), default=None, metavar="SECONDS",
              help="How long the daemon's lease lasts unless renewed (default 30; "
                   "env NEWSLETTER_SCHEDULER_LEASE_SECONDS).")
@click.option("--wait", is_flag=True, help="If another daemon holds the lease, wait and take over when it expires.")
@pass_app
def run(app, sync_interval, lease_seconds, wait):
    """Run the scheduler daemon: send scheduled campaigns when they are due.

    One daemon per database (it holds a lease row; a second one refuses to
    start). Campaigns scheduled while it runs are picked up within the sync
    interval. A send whose time passed while it was down still goes out within
    [scheduler] misfire_grace_seconds (default 3600); later ones become
    `missed`. On start it resumes sends a stopped daemon left unfinished, and
    it resumes a send whose sender died: a process gone from this machine, or
    one on another machine silent for NEWSLETTER_SENDER_STALE_SECONDS
    (default 120); a sender that still beats is left alone.
    SIGTERM or Ctrl-C: finish the batch in flight, then exit.

    \b
    Example:
      newsletter run
      newsletter run --wait          # stand by until the running daemon's lease expires
    """
    from newsletter.scheduler.daemon import LEASE_SECONDS, SYNC_SECONDS, run_daemon

    sync = sync_interval or _env_float("NEWSLETTER_SCHEDULER_SYNC_SECONDS", SYNC_SECONDS)
    lease = lease_seconds or _env_float("NEWSLETTER_SCHEDULER_LEASE_SECONDS", LEASE_SECONDS)
    code = run_daemon(app.store, app.settings, sync_seconds=max(sync, 0.05), lease_seconds=max(lease, 0.5), wait=wait)
    raise SystemExit(code)
