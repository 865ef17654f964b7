"""``newsletter worker``: a scale-out worker (sending on the workers: :mod:`newsletter.usecases.dispatch`)."""

from __future__ import annotations

import logging

import click

from newsletter.cli._common import pass_app


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
