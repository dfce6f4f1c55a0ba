"""Alembic environment: runs on the connection handed in by corral.store.migrate."""

from alembic import context

from corral.store.tables import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
