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


def test_processes_starting_together_on_a_fresh_store_migrate_it_once(store_url: str) -> None:
    # corral up and a CLI command started at the same moment both find no
    # schema; one creates it, the other must then find it current.
    import subprocess
    import sys

    import time

    start = time.time() + 2.0  # all of them past their imports, then at once
    script = (
        "import sys, time; from corral.store import Store; from corral.store.migrate import upgrade; "
        "s = Store(sys.argv[1]); time.sleep(max(0.0, float(sys.argv[2]) - time.time())); upgrade(s.engine)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, store_url, str(start)], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    results = [(proc.communicate(timeout=120)[1], proc.returncode) for proc in procs]
    assert all(code == 0 for _, code in results), results
    store = open_store(store_url, migrate=False)
    try:
        assert current_revision(store.engine) == HEAD
    finally:
        store.close()


def test_a_connection_opening_while_another_holds_a_fresh_file_waits_for_wal(tmp_path) -> None:
    # SQLite refuses the switch to WAL at once, without its busy handler, while
    # another connection writes to the file; the store retries instead of failing.
    import sqlite3
    import threading

    from corral.store import Store

    path = tmp_path / "corral.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer, as a migrating process is
    holder.execute("INSERT INTO t VALUES (1)")
    committing = threading.Event()

    def commit() -> None:
        committing.set()  # before the commit: the timer thread may still be alive after it
        holder.execute("COMMIT")

    released = threading.Timer(0.5, commit)
    released.start()
    store = Store(f"sqlite:///{path}")
    try:
        with store.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
        assert committing.is_set()  # it waited for the holder, not around it
    finally:
        released.join()
        holder.close()
        store.close()
