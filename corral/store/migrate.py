"""Apply Alembic migrations to a store, programmatically (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from corral import errors

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0006"
"""The newest migration's revision. Checked against Alembic by the tests; lets a
store that is already current open without importing Alembic (about 10 MB)."""


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, read without Alembic."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


_PG_LOCK_KEY = 0x636F7272  # "corr"


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On SQLite, an exclusive lock on a file beside the database for the
    time of the upgrade (PostgreSQL uses an advisory lock in the transaction)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; cheap when already there."""
    try:
        if revision == "head" and current_revision(engine) == HEAD:
            return
        from alembic import command

        # Two processes starting on a fresh store (corral up and a CLI command)
        # must not both create the tables: one migrates, the other then finds
        # the schema current (Alembic reads the revision after the lock).
        with _migration_lock(engine), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except (SQLAlchemyError, OSError) as exc:
        from corral.store.queries import redact

        raise errors.StoreError(f"store {redact(str(engine.url))} is not usable: {exc}") from exc


def upgrade_in_child(url: str, engine: Engine) -> None:
    """Upgrade the schema from a short-lived child process.

    ``corral up`` runs for months: keeping Alembic (about 10 MB) out of its
    memory is worth one extra process start when the schema must change."""
    import subprocess
    import sys

    if current_revision(engine) == HEAD:
        return
    proc = subprocess.run(
        [sys.executable, "-m", "corral.store.migrate", url], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        from corral.store.queries import redact

        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise errors.StoreError(f"could not upgrade the schema of {redact(url)}: {detail[0]}")


if __name__ == "__main__":  # python -m corral.store.migrate URL
    import sys

    from corral.store.queries import Store

    _store = Store(sys.argv[1])
    upgrade(_store.engine)
    _store.close()
