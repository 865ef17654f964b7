"""``newsletter worker``: a scale-out worker; and the scale-out side of ``newsletter send``."""

from __future__ import annotations

import logging

import click

from newsletter.cli._common import pass_app, say


@click.command("worker")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to run on this machine.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Chunks sent at once by each process.")
@click.option("--queues", "queues", multiple=True, metavar="NAME",
              help="Queues to consume (default: newsletter). Repeat for several.")
@click.option("--idle-requeue", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds idle before this worker queues again chunks whose messages were lost.")
@click.option("--verbose", "-v", is_flag=True, help="Log Dramatiq's own messages too.")
@pass_app
def worker(app, processes, threads, queues, idle_requeue, verbose):
    """Send campaign chunks from the broker (NEWSLETTER_BROKER_URL) until stopped.

    Run any number, on any machines sharing the database and the broker. Each
    chunk (at most 1,000 recipients) is logged with its counts. SIGTERM or
    Ctrl-C: finish the chunk in flight, then exit 0.

    \b
    Example:
      export NEWSLETTER_DATABASE_URL=postgresql+psycopg://news@db/newsletter
      export NEWSLETTER_BROKER_URL=redis://queue:6379/0
      newsletter worker --processes 4
    """
    from newsletter.distributed.broker import require_broker_url

    settings = app.settings
    require_broker_url(settings)
    from newsletter.delivery import get_transport

    get_transport(settings)  # a missing API key or SMTP URL is a one-line error now, not at the first chunk
    if processes > 1:
        from newsletter.distributed.worker import run_processes

        argv = ["--workspace", str(settings.workspace), "worker", "--threads", str(threads),
                "--idle-requeue", str(idle_requeue), *sum((["--queues", q] for q in queues), [])]
        raise SystemExit(run_processes(processes, argv + (["--verbose"] if verbose else [])))
    _configure_logging(verbose)
    from newsletter.distributed.worker import run_worker

    raise SystemExit(run_worker(settings, threads=threads, queues=tuple(queues), idle_requeue=idle_requeue))


def _configure_logging(verbose: bool) -> None:
    """One line per event on stderr; Dramatiq's chatter only with --verbose."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("dramatiq").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pika").setLevel(logging.WARNING)


def send_through_workers(store, settings, campaign_id: int, limit: int | None):
    """``newsletter send`` with a broker: queue the campaign's chunks, then follow the ledger
    until the workers are done. Ctrl-C stops following, not the workers. Returns a SendReport."""
    from newsletter.distributed.dispatch import enqueue_campaign

    return follow_workers(store, campaign_id, enqueue_campaign(store, settings, campaign_id, limit=limit))


def follow_workers(store, campaign_id: int, chunks: int):
    """Follow a campaign the workers send (``chunks`` just queued) until done or Ctrl-C."""
    import time

    from newsletter.cli._common import graceful_stop, progress, rate_text
    from newsletter.distributed.dispatch import follow_campaign

    say(f"Queued {chunks} chunk(s) for the workers ('newsletter worker'); following progress "
        f"(Ctrl-C stops following, not the send)")
    started = time.monotonic()
    with graceful_stop() as stop, progress() as bar:
        task = bar.add_task("Sending", total=None, rate="")

        def on_progress(state):
            counts = state["counts"]
            done = sum(counts.values()) - counts["pending"] - counts["sending"]
            bar.update(task, completed=done, total=sum(counts.values()),
                       rate=rate_text(done, time.monotonic() - started))

        report = follow_campaign(store, campaign_id, stop=stop, on_progress=on_progress)
    if report.status == "sending":
        say(f"Stopped following; the workers carry on. Follow with: newsletter campaigns show {campaign_id}")
    return report
