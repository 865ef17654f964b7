"""Scale-out sending: PostgreSQL for the store, Dramatiq (Redis or RabbitMQ) for the work.

Setting ``NEWSLETTER_BROKER_URL`` turns it on. A campaign's ledger is cut
into chunks of at most 1,000 rows (:mod:`newsletter.distributed.dispatch`);
each chunk is one Dramatiq message carrying only ids
(:mod:`newsletter.distributed.actors`); ``newsletter worker`` processes on
any number of machines consume them (:mod:`newsletter.distributed.worker`)
and send through the same engine code as the single-machine path
(:mod:`newsletter.distributed.chunks`). One send rate holds across all
workers, and a provider's 429 pauses all of them
(:mod:`newsletter.distributed.limits`).

Importing this package connects to nothing: the broker is built on first use.
"""
