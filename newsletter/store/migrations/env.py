"""Alembic environment: runs migrations on the connection the store hands over.

``newsletter.store.db.migrate`` puts an open connection in
``config.attributes["connection"]``; there is no alembic.ini.
"""

from alembic import context

from newsletter.store.schema import metadata as target_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
