"""The Alembic migrations build exactly the declared tables, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from corral.store import open_store
from corral.store.migrate import HEAD, current_revision, head_revision
from corral.store.tables import metadata


def test_migrating_an_empty_database_matches_the_declared_tables(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert current_revision(store.engine) == head_revision(store.engine) == HEAD
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
    finally:
        store.close()
