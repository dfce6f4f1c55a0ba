"""The only module that builds SQL. Named functions, one transaction each.

Every change of a run's state goes through :meth:`Store.transition` (or the
batch forms built on the same conditional UPDATE), and writes its event row
(the outbox, see docs/events.md) in the same transaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from corral import errors
from corral.store import tables as t
from corral.store.tables import event_cursors, event_publisher, events, job_state, nodes, runs


@dataclass(frozen=True)
class Run:
    id: int
    job: str
    state: str
    reason: str | None
    message: str | None
    trigger: str
    slot_key: str | None
    scheduled_for: datetime
    created_at: datetime
    updated_at: datetime
    admitted: bool
    catchup: bool
    not_before: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    signal: int | None
    attempt: int
    retry_of: int | None
    node: str | None
    pid: int | None
    pgid: int | None
    proc_start: float | None
    peak_rss: int | None
    cpu_seconds: float | None
    log_path: str | None
    log_bytes: int | None
    log_dropped: int | None
    stop_requested: str | None
    params: str | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def active(self) -> bool:
        return self.state in t.ACTIVE_STATES

    def as_dict(self) -> dict[str, Any]:
        """The run as JSON-ready values (ISO-8601 instants with offset)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            out[f.name] = value
        out["duration"] = self.duration
        out["params"] = json.loads(self.params) if self.params else None
        return out


_RUN_COLUMNS = [c.name for c in runs.columns]
def _moved(
    evs: list[dict[str, Any]], job: str, run_id: int, old: str, new: str, update: dict[str, Any], now: datetime
) -> None:
    """Add the event of a run's state change (none if the state stayed)."""
    if old != new:
        evs.append(event_row("run.transition", job, run_id, old, new, update.get("reason"), update.get("message"), now))


class _Contended(Exception):
    """A batched state change found a run changed by another writer (see transition_many)."""


_ALIKE_MIN = 4
"""Runs given the same change at once from which one UPDATE for all pays off."""
# Rows of ``select(runs)`` are built positionally, which is several times
# faster than by name; that needs the dataclass to list the columns in order.
assert _RUN_COLUMNS == [f.name for f in fields(Run)], "Run's fields must follow the runs table's columns"


def _run(row: Any) -> Run:
    if len(row) == len(_RUN_COLUMNS) and row._fields[0] == "id":
        return Run(*row)
    return Run(**{name: row._mapping[name] for name in _RUN_COLUMNS})


def _finished_execution(job: str) -> tuple[Any, ...]:
    """Runs of ``job`` that started and ended with a duration worth learning from."""
    return (
        runs.c.job == job,
        runs.c.state.in_((t.SUCCEEDED, t.FAILED, t.TIMED_OUT)),
        runs.c.started_at.is_not(None),
        runs.c.ended_at.is_not(None),
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Event:
    """One published entry of the event feed; ``seq`` is gapless."""

    seq: int
    type: str
    job: str
    run_id: int | None
    old_state: str | None
    new_state: str | None
    reason: str | None
    message: str | None
    at: datetime
    payload_hash: str

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["at"] = self.at.isoformat()
        return out


_EVENT_COLUMNS = [f.name for f in fields(Event)]

PUBLISH_LOCK = 0x636F7272
"""PostgreSQL advisory lock key held by the one event publisher ("corr")."""


def event_row(
    type: str,
    job: str,
    run_id: int | None,
    old_state: str | None,
    new_state: str | None,
    reason: str | None,
    message: str | None,
    at: datetime,
) -> dict[str, Any]:
    """An outbox row. The hash covers what the event says, not when: the same
    change emitted twice hashes the same and is published once."""
    subject = f"run:{run_id}" if run_id is not None else f"job:{job}"
    digest = hashlib.sha256(
        "\x1f".join((type, job, str(run_id), old_state or "", new_state or "", reason or "")).encode()
    ).hexdigest()
    return {
        "type": type,
        "job": job,
        "run_id": run_id,
        "old_state": old_state,
        "new_state": new_state,
        "reason": reason,
        "message": message,
        "at": at,
        "subject": subject,
        "payload_hash": digest,
    }


_EVENT_INSERT = events.insert()
_RUN_STATES = sa.select(runs.c.id, runs.c.job, runs.c.state).where(
    runs.c.id.in_(sa.bindparam("ids", expanding=True))
)
_UNPUBLISHED = (
    sa.select(events.c.id, events.c.subject, events.c.payload_hash)
    .where(events.c.published_at.is_(None))
    .order_by(events.c.id)
    .limit(sa.bindparam("limit"))
)
_PUBLISH = "UPDATE events SET seq = {p}, published_at = {p} WHERE id = {p}"
"""The numbering of many events, sent to the driver as it is (see publish_events)."""
_AFTER = (
    sa.select(*(events.c[name] for name in _EVENT_COLUMNS))
    .where(events.c.seq > sa.bindparam("after"))
    .order_by(events.c.seq)
    .limit(sa.bindparam("limit"))
)


def slot_key(job: str, instant: datetime) -> str:
    return f"{job}@{instant.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def default_node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=15000")
    # WAL lets CLI readers and `corral up` work at once; NORMAL is durable
    # across process crashes (only an OS crash can lose the last commits).
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enter_wal(cursor: Any, patience: float = 15.0) -> None:
    """Switch a database file to WAL, which sticks to the file once done.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy handler, when several processes open a
    fresh file together (corral up and a CLI command): so the switch is
    retried here until one of them has done it for all."""
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def sqlite_url_for(path: Path) -> str:
    return f"sqlite:///{path}"


class Store:
    """corral's state in SQLite or PostgreSQL, through named operations."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        try:
            if engine is None:
                if url.startswith("sqlite"):
                    db_path = sa.engine.make_url(url).database
                    if db_path and db_path != ":memory:":
                        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
                    engine = sa.create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})
                else:
                    if url.startswith("postgresql://") or url.startswith("postgres://"):
                        url = "postgresql+psycopg://" + url.split("://", 1)[1]
                    engine = sa.create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError, OSError) as exc:
            raise errors.StoreError(f"cannot use store {redact(url)}: {exc}") from exc
        self.engine = engine
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _set_sqlite_pragmas)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise errors.StoreError(f"store {redact(self.url)} is not usable: {exc.orig}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise errors.StoreError(f"store {redact(self.url)} is not usable: {exc.orig}") from exc

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # -- runs: creation ---------------------------------------------------

    def create_run(
        self,
        *,
        job: str,
        state: str,
        trigger: str,
        scheduled_for: datetime,
        now: datetime,
        reason: str | None = None,
        message: str | None = None,
        slot: bool = False,
        admitted: bool = True,
        catchup: bool = False,
        not_before: datetime | None = None,
        attempt: int = 1,
        retry_of: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> int | None:
        """Insert one run. With ``slot=True`` the run is keyed on its slot and
        ``None`` is returned if that slot already has a run."""
        ids = self.create_runs(
            [
                dict(
                    job=job,
                    state=state,
                    trigger=trigger,
                    scheduled_for=scheduled_for,
                    reason=reason,
                    message=message,
                    slot=slot,
                    admitted=admitted,
                    catchup=catchup,
                    not_before=not_before,
                    attempt=attempt,
                    retry_of=retry_of,
                    params=params,
                )
            ],
            now=now,
        )
        return ids[0]

    def create_runs(self, specs: Sequence[dict[str, Any]], *, now: datetime) -> list[int | None]:
        """Insert several runs in one transaction; slot runs already present are
        left alone (their position in the result is ``None``)."""
        rows: list[dict[str, Any]] = []
        for spec in specs:
            values = dict(spec)
            is_slot = values.pop("slot", False)
            params = values.pop("params", None)
            values.update(
                created_at=now,
                updated_at=now,
                slot_key=slot_key(values["job"], values["scheduled_for"]) if is_slot else None,
                params=json.dumps(params, sort_keys=True) if params else None,
            )
            values.setdefault("admitted", True)
            values.setdefault("catchup", False)
            values.setdefault("attempt", 1)
            values.setdefault("not_before", None)
            values.setdefault("reason", None)
            values.setdefault("message", None)
            if values.get("state") in t.FINAL_STATES and values.get("ended_at") is None:
                values["ended_at"] = now
            rows.append(values)
        # Rows with the same columns are inserted with one statement (many
        # VALUES, RETURNING the ids); a slot row already present is left alone.
        groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
        for index, values in enumerate(rows):
            groups.setdefault((tuple(sorted(values)), values["slot_key"] is not None), []).append(index)
        out: list[int | None] = [None] * len(rows)
        with self._tx() as conn:
            for (keys, on_slot), members in groups.items():
                params_list = [{f"v_{k}": rows[i][k] for k in keys} for i in members]
                if on_slot:
                    got = {key: int(rid) for rid, key in conn.execute(self._insert_stmt(keys, True), params_list)}
                    for i in members:
                        # A slot listed twice: only its first row was inserted.
                        out[i] = got.pop(rows[i]["slot_key"], None)
                else:
                    result = conn.execute(self._insert_stmt(keys, False), params_list)
                    for i, row in zip(members, result):
                        out[i] = int(row[0])
            evs = [
                event_row(
                    "run.created", values["job"], out[i], None, values["state"],
                    values.get("reason"), values.get("message"), now,
                )
                for i, values in enumerate(rows)
                if out[i] is not None
            ]
            self._append_events(conn, evs)
        return out

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a Store lives as long as the process
    def _insert_stmt(self, keys: tuple[str, ...], on_slot: bool) -> Any:
        # Statements are built once and reused with new parameters: building a
        # statement costs far more than executing it.
        stmt = self._insert(runs).values({k: sa.bindparam(f"v_{k}", type_=runs.c[k].type) for k in keys})
        if on_slot:
            # Matched to their rows by slot key, which is unique: no order needed.
            return stmt.on_conflict_do_nothing(index_elements=["slot_key"]).returning(runs.c.id, runs.c.slot_key)
        return stmt.returning(runs.c.id, sort_by_parameter_order=True)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _update_stmt(keys: tuple[str, ...], expect: tuple[str, ...] | None) -> Any:
        cond = [runs.c.id == sa.bindparam("w_id", type_=runs.c.id.type)]
        if expect is not None:  # constants in the statement: no IN list expanded on each use
            cond.append(runs.c.state.in_([sa.literal(state, runs.c.state.type) for state in expect]))
        return runs.update().where(*cond).values({k: sa.bindparam(f"v_{k}", type_=runs.c[k].type) for k in keys})

    # -- runs: state changes ------------------------------------------------

    def transition(
        self,
        run_id: int,
        to_state: str,
        *,
        now: datetime,
        expect: Iterable[str] | None = None,
        **values: Any,
    ) -> bool:
        """Move one run to ``to_state`` if it is in one of ``expect`` (default:
        any active state). Returns False when another actor got there first."""
        return self.transition_many([(run_id, to_state, values)], now=now, expect=expect)[0]

    def transition_many(
        self,
        changes: Sequence[tuple[int, str, dict[str, Any]]],
        *,
        now: datetime,
        expect: Iterable[str] | None = None,
    ) -> list[bool]:
        """Apply several conditional state changes in one transaction, each
        with its event row."""
        allowed = tuple(expect) if expect is not None else t.ACTIVE_STATES
        for _run_id, to_state, _values in changes:
            if to_state not in t.ALL_STATES:
                raise ValueError(f"unknown run state {to_state!r}")
        if not changes:
            return []
        try:
            with self._tx() as conn:
                return self._transition_in(conn, changes, now=now, allowed=allowed, batched=True)
        except _Contended:
            # Another writer changed some of these runs between our read and
            # our write: the whole transaction was rolled back; redo it one
            # run at a time, which settles each run exactly.
            with self._tx() as conn:
                return self._transition_in(conn, changes, now=now, allowed=allowed, batched=False)

    def _transition_in(
        self,
        conn: Connection,
        changes: Sequence[tuple[int, str, dict[str, Any]]],
        *,
        now: datetime,
        allowed: tuple[str, ...],
        batched: bool = False,
    ) -> list[bool]:
        # The event needs the state each run leaves. It is read first, then the
        # UPDATE is made conditional on exactly that state: if another actor
        # changed the run in between (the read is not locked), the UPDATE
        # matches nothing and the run is read again, so the old state recorded
        # is always the one this UPDATE replaced.
        current = {r.id: (r.job, r.state) for r in conn.execute(_RUN_STATES, {"ids": [c[0] for c in changes]})}
        evs: list[dict[str, Any]] = []
        done = self._transition_alike(conn, changes, current, evs, now=now, allowed=allowed) if batched else {}
        results: list[bool] = []
        for index, (run_id, to_state, values) in enumerate(changes):
            if index in done:
                results.append(done[index])
                continue
            update = dict(values, state=to_state, updated_at=now)
            if to_state in t.FINAL_STATES and "ended_at" not in update:
                update["ended_at"] = now
            keys = tuple(sorted(update))
            params = {f"v_{k}": v for k, v in update.items()}
            params["w_id"] = run_id
            won = False
            for _attempt in range(10):
                seen = current.get(run_id)
                if seen is None or seen[1] not in allowed:
                    break
                if conn.execute(self._update_stmt(keys, (seen[1],)), params).rowcount == 1:
                    won = True
                    current[run_id] = (seen[0], to_state)
                    _moved(evs, seen[0], run_id, seen[1], to_state, update, now)
                    break
                current.update((r.id, (r.job, r.state)) for r in conn.execute(_RUN_STATES, {"ids": [run_id]}))
            results.append(won)
        self._append_events(conn, evs)
        return results

    def _transition_alike(
        self,
        conn: Connection,
        changes: Sequence[tuple[int, str, dict[str, Any]]],
        current: dict[int, tuple[str, str]],
        evs: list[dict[str, Any]],
        *,
        now: datetime,
        allowed: tuple[str, ...],
    ) -> dict[int, bool]:
        """The fast path of _transition_in: runs given the same state and values
        (a claim of many runs) change with one UPDATE per state they leave,
        still conditional on that state, instead of one UPDATE each. Returns
        {index in changes: won} for the changes it settled; runs it did not
        win are left to the one-by-one path, which reads them again."""
        if len(changes) < _ALIKE_MIN or len({c[0] for c in changes}) != len(changes):
            return {}
        groups: dict[tuple[str, tuple[tuple[str, Any], ...]], list[int]] = {}
        for index, (_, to_state, values) in enumerate(changes):
            try:
                key = (to_state, tuple(sorted(values.items())))
                hash(key)
            except TypeError:
                continue
            groups.setdefault(key, []).append(index)
        done: dict[int, bool] = {}
        for (to_state, items), members in groups.items():
            if len(members) < _ALIKE_MIN:
                continue
            update = dict(items, state=to_state, updated_at=now)
            if to_state in t.FINAL_STATES and "ended_at" not in update:
                update["ended_at"] = now
            params = {f"v_{k}": v for k, v in update.items()}
            by_old: dict[str, list[int]] = {}
            for index in members:
                seen = current.get(changes[index][0])
                if seen is None or seen[1] not in allowed:
                    done[index] = False
                else:
                    by_old.setdefault(seen[1], []).append(index)
            for old, indexes in by_old.items():
                stmt = self._bulk_update_stmt(tuple(sorted(update)), old)
                ids = [changes[i][0] for i in indexes]
                won = {row[0] for row in conn.execute(stmt, dict(params, w_ids=ids))}
                for index in indexes:
                    run_id = changes[index][0]
                    if run_id not in won:
                        continue
                    done[index] = True
                    job = current[run_id][0]
                    current[run_id] = (job, to_state)
                    _moved(evs, job, run_id, old, to_state, update, now)
        if self.engine.dialect.supports_sane_multi_rowcount:
            self._transition_similar(conn, changes, current, evs, done, now=now, allowed=allowed)
        return done

    def _transition_similar(
        self,
        conn: Connection,
        changes: Sequence[tuple[int, str, dict[str, Any]]],
        current: dict[int, tuple[str, str]],
        evs: list[dict[str, Any]],
        done: dict[int, bool],
        *,
        now: datetime,
        allowed: tuple[str, ...],
    ) -> None:
        """Runs given the same state and the same fields (different values: the
        end of many runs) leaving the same state change with one executemany.
        Every row must match; if one does not, _Contended rolls the whole
        transaction back (see transition_many)."""
        groups: dict[tuple[str, tuple[str, ...], str], list[int]] = {}
        for index, (run_id, to_state, values) in enumerate(changes):
            seen = current.get(run_id)
            if index in done or seen is None or seen[1] not in allowed:
                continue
            groups.setdefault((to_state, tuple(sorted(values)), seen[1]), []).append(index)
        for (to_state, _keys, old), members in groups.items():
            if len(members) < _ALIKE_MIN:
                continue
            updates = []
            for index in members:
                update = dict(changes[index][2], state=to_state, updated_at=now)
                if to_state in t.FINAL_STATES and "ended_at" not in update:
                    update["ended_at"] = now
                updates.append(update)
            keys = tuple(sorted(updates[0]))
            params = [dict({f"v_{k}": v for k, v in update.items()}, w_id=changes[i][0]) for i, update in zip(members, updates)]
            if conn.execute(self._update_each_stmt(keys, old), params).rowcount != len(params):
                raise _Contended
            for index, update in zip(members, updates):
                run_id = changes[index][0]
                done[index] = True
                job = current[run_id][0]
                current[run_id] = (job, to_state)
                _moved(evs, job, run_id, old, to_state, update, now)

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _update_each_stmt(keys: tuple[str, ...], expect: str) -> Any:
        """For executemany: no expanding IN, which executemany cannot take."""
        return (
            runs.update()
            .where(runs.c.id == sa.bindparam("w_id", type_=runs.c.id.type), runs.c.state == expect)
            .values({k: sa.bindparam(f"v_{k}", type_=runs.c[k].type) for k in keys})
        )

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _bulk_update_stmt(keys: tuple[str, ...], expect: str) -> Any:
        return (
            runs.update()
            .where(runs.c.id.in_(sa.bindparam("w_ids", expanding=True)), runs.c.state == expect)
            .values({k: sa.bindparam(f"v_{k}", type_=runs.c[k].type) for k in keys})
            .returning(runs.c.id)
        )

    def update_run(self, run_id: int, *, now: datetime, **values: Any) -> bool:
        """Change fields of a run without changing its state (pid, log figures, admission)."""
        if "state" in values:
            raise ValueError("use transition() to change a run's state")
        with self._tx() as conn:
            res = conn.execute(runs.update().where(runs.c.id == run_id).values(updated_at=now, **values))
        return res.rowcount == 1

    def claim(self, run_id: int, *, node: str, now: datetime) -> bool:
        """Take a pending run for execution. Exactly one claimer wins."""
        return self.transition(run_id, t.RUNNING, now=now, expect=(t.PENDING,), node=node, started_at=now)

    def request_stop(self, run_id: int, why: str, *, now: datetime) -> Run:
        """Ask for an active run to stop. Runs not yet started end right here as
        cancelled; running ones are stopped by the node that runs them."""
        run = self.get_run(run_id)
        if not run.active:
            raise errors.Conflict(f"run {run_id} of {run.job} already ended ({run.state}); nothing to cancel")
        if run.state in (t.PENDING, t.QUEUED):
            msg = f"cancelled before it started ({why})"
            if self.transition(run_id, t.CANCELLED, now=now, expect=(t.PENDING, t.QUEUED), reason=why, message=msg):
                return self.get_run(run_id)
        with self._tx() as conn:
            res = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.state == t.RUNNING)
                .values(stop_requested=why, updated_at=now)
            )
            if res.rowcount == 1:
                self._append_events(
                    conn,
                    [event_row("run.stop_requested", run.job, run_id, t.RUNNING, t.RUNNING, why, None, now)],
                )
        return self.get_run(run_id)

    # -- runs: reads ----------------------------------------------------------

    def get_run(self, run_id: int) -> Run:
        with self._read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise errors.NotFound(f"no run {run_id}; `corral runs` lists the recent ones")
        return _run(row)

    def list_runs(
        self,
        *,
        job: str | None = None,
        states: Sequence[str] | None = None,
        limit: int = 50,
        before_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        oldest_first: bool = False,
    ) -> list[Run]:
        query = sa.select(runs)
        if job is not None:
            query = query.where(runs.c.job == job)
        if states:
            query = query.where(runs.c.state.in_(tuple(states)))
        if before_id is not None:
            query = query.where(runs.c.id < before_id)
        if since is not None:
            query = query.where(runs.c.scheduled_for >= since)
        if until is not None:
            query = query.where(runs.c.scheduled_for <= until)
        query = query.order_by(runs.c.id.asc() if oldest_first else runs.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query)]

    def count_runs(self, *, states: Sequence[str]) -> int:
        """How many runs are in one of ``states`` (a cheap probe for a waiting caller)."""
        query = sa.select(sa.func.count()).select_from(runs).where(runs.c.state.in_(tuple(states)))
        with self._read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def get_runs(self, ids: Sequence[int]) -> dict[int, Run]:
        if not ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.id.in_(tuple(ids))))
            return {row.id: _run(row) for row in rows}

    def startable_runs(self, *, limit: int = 1000) -> list[Run]:
        """Admitted pending runs, oldest first: what a worker may claim."""
        return self._pending(admitted=True, limit=limit)

    def unadmitted_runs(self, *, limit: int = 1000) -> list[Run]:
        """Runs created outside the engine (``corral trigger``) awaiting the overlap policy."""
        return self._pending(admitted=False, limit=limit)

    def _pending(self, *, admitted: bool, limit: int) -> list[Run]:
        query = (
            sa.select(runs)
            .where(runs.c.state == t.PENDING, runs.c.admitted.is_(admitted))
            .order_by(runs.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query)]

    def stop_requests(self, ids: Sequence[int]) -> list[Run]:
        """Those of the given running runs that someone asked to stop."""
        if not ids:
            return []
        query = sa.select(runs).where(
            runs.c.state == t.RUNNING, runs.c.stop_requested.is_not(None), runs.c.id.in_(tuple(ids))
        )
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query)]

    def claim_many(self, ids: Sequence[int], *, node: str, now: datetime) -> list[int]:
        """Claim several pending runs in one transaction; returns the ids this node won."""
        won = self.transition_many(
            [(i, t.RUNNING, {"node": node, "started_at": now}) for i in ids], now=now, expect=(t.PENDING,)
        )
        return [i for i, ok in zip(ids, won) if ok]

    def update_runs(self, changes: Sequence[tuple[int, dict[str, Any]]], *, now: datetime) -> None:
        """Change fields (not the state) of several runs in one transaction."""
        if not changes:
            return
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for run_id, values in changes:
            if "state" in values:
                raise ValueError("use transition() to change a run's state")
            update = dict(values, updated_at=now)
            params = {f"v_{k}": v for k, v in update.items()}
            params["w_id"] = run_id
            groups.setdefault(tuple(sorted(update)), []).append(params)
        with self._tx() as conn:
            for keys, rows in groups.items():  # one executemany per set of fields
                conn.execute(self._update_stmt(keys, None), rows)

    def in_flight(self, job: str) -> bool:
        """Whether the job has a pending or running run."""
        query = sa.select(runs.c.id).where(runs.c.job == job, runs.c.state.in_((t.PENDING, t.RUNNING))).limit(1)
        with self._read() as conn:
            return conn.execute(query).first() is not None

    def first_queued(self, job: str) -> Run | None:
        query = sa.select(runs).where(runs.c.job == job, runs.c.state == t.QUEUED).order_by(runs.c.id).limit(1)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _run(row)

    def active_runs(self, job: str | None = None) -> list[Run]:
        """Runs not yet final (pending, queued, running), oldest first."""
        # One indexed lookup per state: with a million final runs the planner
        # reads ``state IN (...)`` as unselective and scans the table.
        found: list[Run] = []
        with self._read() as conn:
            for state in t.ACTIVE_STATES:
                query = sa.select(runs).where(runs.c.state == state)
                if job is not None:
                    query = query.where(runs.c.job == job)
                found.extend(_run(r) for r in conn.execute(query))
        return sorted(found, key=lambda r: r.id)

    def last_run(self, job: str, *, states: Sequence[str] | None = None) -> Run | None:
        query = sa.select(runs).where(runs.c.job == job)
        if states:
            query = query.where(runs.c.state.in_(tuple(states)))
        with self._read() as conn:
            row = conn.execute(query.order_by(runs.c.id.desc()).limit(1)).first()
        return None if row is None else _run(row)

    def last_executed(self, job: str) -> Run | None:
        """The most recent run of ``job`` that actually started."""
        query = (
            sa.select(runs)
            .where(runs.c.job == job, runs.c.started_at.is_not(None))
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _run(row)

    def durations(self, job: str, *, limit: int = 100) -> list[float]:
        """Durations in seconds of the job's most recent finished executions."""
        query = (
            sa.select(runs.c.started_at, runs.c.ended_at)
            .where(*_finished_execution(job))
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [(e - s).total_seconds() for s, e in conn.execute(query)]

    def recent_durations(self, jobs: Sequence[str], *, limit: int = 30) -> dict[str, list[float]]:
        """Per job named, :meth:`durations` of its ``limit`` newest finished executions, newest first.

        One statement per 100 jobs (a UNION ALL of per-job index range reads)
        instead of one round trip per job.
        """
        found: dict[str, list[tuple[int, float]]] = {job: [] for job in jobs}
        names = list(found)
        with self._read() as conn:
            for first in range(0, len(names), 100):
                parts = [
                    sa.select(
                        sa.select(runs.c.job, runs.c.id, runs.c.started_at, runs.c.ended_at)
                        .where(*_finished_execution(job))
                        .order_by(runs.c.id.desc())
                        .limit(limit)
                        .subquery()
                    )
                    for job in names[first : first + 100]
                ]
                for job, _id, start, end in conn.execute(sa.union_all(*parts)).all():
                    found[job].append((_id, (end - start).total_seconds()))
        return {job: [d for _i, d in sorted(pairs, reverse=True)] for job, pairs in found.items()}

    def job_summaries(self, jobs: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per job (all, or those named): last run, counts of runs by state.

        Both queries read only ``ix_runs_job_state_id`` (job, state, id).
        """
        count_q = sa.select(runs.c.job, runs.c.state, sa.func.count()).group_by(runs.c.job, runs.c.state)
        last_q = sa.select(sa.func.max(runs.c.id)).where(runs.c.state != t.SKIPPED).group_by(runs.c.job)
        if jobs is not None:
            if not jobs:
                return {}
            count_q = count_q.where(runs.c.job.in_(tuple(jobs)))
            last_q = last_q.where(runs.c.job.in_(tuple(jobs)))
        with self._read() as conn:
            counts = conn.execute(count_q).all()
            last_ids = conn.execute(last_q).all()
            ids = [r[0] for r in last_ids if r[0] is not None]
            last_rows = conn.execute(sa.select(runs).where(runs.c.id.in_(ids))).all() if ids else []
        out: dict[str, dict[str, Any]] = {}
        for job, state, count in counts:
            out.setdefault(job, {"counts": {}, "last": None})["counts"][state] = count
        for row in last_rows:
            run = _run(row)
            out.setdefault(run.job, {"counts": {}, "last": None})["last"] = run
        return out

    def runs_started_without_pid(self, node: str | None = None) -> list[Run]:
        query = sa.select(runs).where(runs.c.state == t.RUNNING)
        if node is not None:
            query = query.where(runs.c.node == node)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query.order_by(runs.c.id))]

    # -- jobs ---------------------------------------------------------------

    def job_states(self) -> dict[str, dict[str, Any]]:
        with self._read() as conn:
            return {row.job: dict(row._mapping) for row in conn.execute(sa.select(job_state))}

    def _upsert_job_state(self, conn: Connection, job: str, now: datetime, **values: Any) -> None:
        stmt = self._insert(job_state).values(job=job, updated_at=now, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["job"], set_=dict(updated_at=now, **values))
        conn.execute(stmt)

    def set_paused(self, job: str, paused: bool, *, now: datetime, by: str | None = None) -> None:
        with self._tx() as conn:
            was = conn.execute(sa.select(job_state.c.paused).where(job_state.c.job == job)).scalar()
            self._upsert_job_state(
                conn, job, now, paused=paused, paused_at=now if paused else None, paused_by=by if paused else None
            )
            if bool(was) != paused:
                # Two processes pausing at once may both see "active" here; their
                # events hash the same and the publisher keeps one.
                self._append_events(
                    conn,
                    [
                        event_row(
                            "job.paused" if paused else "job.resumed", job, None,
                            "paused" if was else "active", "paused" if paused else "active",
                            None, f"by {by}" if by else None, now,
                        )
                    ],
                )

    def set_cursor(self, job: str, cursor: datetime, *, now: datetime) -> None:
        with self._tx() as conn:
            self._upsert_job_state(conn, job, now, cursor=cursor)

    def set_cursors(self, cursors: dict[str, datetime], *, now: datetime) -> None:
        if not cursors:
            return
        stmt = self._insert(job_state).values(
            job=sa.bindparam("v_job", type_=job_state.c.job.type),
            paused=False,
            cursor=sa.bindparam("v_cursor", type_=job_state.c.cursor.type),
            updated_at=sa.bindparam("v_now", type_=job_state.c.updated_at.type),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["job"], set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at}
        )
        with self._tx() as conn:
            conn.execute(stmt, [{"v_job": j, "v_cursor": c, "v_now": now} for j, c in cursors.items()])

    # -- nodes ----------------------------------------------------------------

    def register_node(self, name: str, *, config_path: str, now: datetime) -> None:
        values = dict(
            hostname=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
            stopped_at=None,
            config_path=config_path,
            config_loaded_at=now,
            config_error=None,
        )
        with self._tx() as conn:
            stmt = self._insert(nodes).values(name=name, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def update_node(self, name: str, *, now: datetime, **values: Any) -> None:
        with self._tx() as conn:
            conn.execute(nodes.update().where(nodes.c.name == name).values(heartbeat_at=now, **values))

    def live_nodes(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(nodes).where(nodes.c.stopped_at.is_(None)).order_by(nodes.c.started_at.desc())
            )
            return [dict(r._mapping) for r in rows]

    # -- pipelines (issue 3): steps and run results ----------------------------
    # Every change of a step's state goes through transition_steps (one
    # transaction per call); create_steps inserts a run's step rows.

    def create_steps(self, run_id: int, rows: Sequence[dict[str, Any]], *, now: datetime) -> list[Step]:
        """Insert the step rows of a run that are not there yet (keyed on run and
        name, so a second call inserts nothing); returns all of the run's steps."""
        # One statement per set of columns given (a fresh run gives the same
        # few for every step; a resumed one more for the kept steps): the
        # columns left out take their defaults, and fewer values are bound.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            values: dict[str, Any] = dict(attempt=1, created_at=now, updated_at=now, run_id=run_id)
            values.update(row)
            keys = tuple(sorted(values))
            groups.setdefault(keys, []).append({f"v_{k}": values[k] for k in keys})
        with self._tx() as conn:
            for keys, params in groups.items():
                conn.execute(self._step_insert_stmt(keys), params)
            found = conn.execute(
                sa.select(t.steps).where(t.steps.c.run_id == run_id).order_by(t.steps.c.position)
            ).all()
        return [_step(r) for r in found]

    def transition_steps(
        self,
        changes: Sequence[tuple[int, str, dict[str, Any]] | tuple[int, str, dict[str, Any], Iterable[str]]],
        *,
        now: datetime,
        expect: Iterable[str] | None = None,
    ) -> list[bool]:
        """Move steps to new states in one transaction, each only if it is in one
        of the states it expects: a change's own fourth item, else ``expect``
        (default: pending or running). Returns which changed."""
        default = tuple(expect) if expect is not None else (t.PENDING, t.RUNNING)
        results: list[bool] = []
        if not changes:
            return results
        with self._tx() as conn:
            for change in changes:
                step_id, to_state, values = change[0], change[1], change[2]
                allowed = tuple(change[3]) if len(change) > 3 else default  # type: ignore[misc]
                if to_state not in t.ALL_STATES or to_state == t.QUEUED:
                    raise ValueError(f"unknown step state {to_state!r}")
                update = dict(values, state=to_state, updated_at=now)
                if to_state in t.FINAL_STATES and "ended_at" not in update:
                    update["ended_at"] = now
                if isinstance(update.get("outputs"), dict):
                    update["outputs"] = json.dumps(update["outputs"], sort_keys=True)
                params = {f"v_{k}": v for k, v in update.items()}
                params["w_id"] = step_id
                params.update({f"w_s{i}": state for i, state in enumerate(allowed)})
                res = conn.execute(self._step_update_stmt(tuple(sorted(update)), len(allowed)), params)
                results.append(res.rowcount == 1)
        return results

    @functools.lru_cache(maxsize=16)  # noqa: B019 - a Store lives as long as the process
    def _step_insert_stmt(self, keys: tuple[str, ...]) -> Any:
        return self._insert(t.steps).values(
            {k: sa.bindparam(f"v_{k}", type_=t.steps.c[k].type) for k in keys}
        ).on_conflict_do_nothing(index_elements=["run_id", "name"])

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _step_update_stmt(keys: tuple[str, ...], expected: int) -> Any:
        """One statement object per set of columns (a pipeline sets the same few
        again and again), so SQLAlchemy finds it compiled in its cache."""
        return (
            t.steps.update()
            .where(
                t.steps.c.id == sa.bindparam("w_id", type_=t.steps.c.id.type),
                t.steps.c.state.in_([sa.bindparam(f"w_s{i}", type_=t.steps.c.state.type) for i in range(expected)]),
            )
            .values({k: sa.bindparam(f"v_{k}", type_=t.steps.c[k].type) for k in keys})
        )

    def get_steps(self, run_id: int) -> list[Step]:
        """The steps of a run in job-file order (empty for a plain run)."""
        query = sa.select(t.steps).where(t.steps.c.run_id == run_id).order_by(t.steps.c.position)
        with self._read() as conn:
            return [_step(r) for r in conn.execute(query)]

    def set_run_result(
        self, run_id: int, *, outputs: dict[str, str], result: dict[str, str] | None, now: datetime
    ) -> None:
        """Store what a run produced: its steps' outputs and its result (verdict, note)."""
        values = dict(
            outputs=json.dumps(outputs, sort_keys=True) if outputs else None,
            verdict=(result or {}).get("verdict"),
            note=(result or {}).get("note"),
            updated_at=now,
        )
        stmt = self._insert(t.run_results).values(run_id=run_id, **values)
        with self._tx() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=["run_id"], set_=values))

    def get_run_result(self, run_id: int) -> dict[str, Any] | None:
        """``{"outputs": {...}, "verdict", "note"}`` of a run, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.run_results).where(t.run_results.c.run_id == run_id)).first()
        if row is None:
            return None
        return {
            "outputs": json.loads(row.outputs) if row.outputs else {},
            "verdict": row.verdict,
            "note": row.note,
        }

    # -- web auth (issue 5): users, API tokens, sessions, audit log ----------------

    def add_user(self, name: str, role: str, password_hash: str, *, now: datetime, replace: bool = False) -> None:
        """Create dashboard user ``name`` (or, with ``replace``, change its role and password).

        Raises :class:`errors.Conflict` when the user exists and ``replace`` is False."""
        users = t.web_users
        with self._tx() as conn:
            exists = conn.execute(sa.select(users.c.name).where(users.c.name == name)).first() is not None
            if exists and not replace:
                raise errors.Conflict(
                    f'user "{name}" already exists; pass --update to change its role and password'
                )
            if exists:
                conn.execute(
                    users.update()
                    .where(users.c.name == name)
                    .values(role=role, password_hash=password_hash, updated_at=now)
                )
                # A new password ends the sessions opened with the old one.
                conn.execute(t.web_sessions.delete().where(t.web_sessions.c.user_name == name))
            else:
                conn.execute(
                    users.insert().values(
                        name=name, role=role, password_hash=password_hash, created_at=now, updated_at=now
                    )
                )

    def get_user(self, name: str) -> dict[str, Any] | None:
        """The user's row (name, role, password_hash, ...), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.web_users).where(t.web_users.c.name == name)).first()
        return None if row is None else dict(row._mapping)

    def list_users(self) -> list[dict[str, Any]]:
        """Every dashboard user, by name, without password hashes."""
        users = t.web_users
        query = sa.select(users.c.name, users.c.role, users.c.created_at, users.c.updated_at).order_by(users.c.name)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def has_credentials(self) -> bool:
        """Whether any user or unrevoked API token exists (then the dashboard asks for them)."""
        with self._read() as conn:
            if conn.execute(sa.select(t.web_users.c.name).limit(1)).first() is not None:
                return True
            query = sa.select(t.web_tokens.c.id).where(t.web_tokens.c.revoked_at.is_(None)).limit(1)
            return conn.execute(query).first() is not None

    def create_token(self, name: str, role: str, secret_hash: str, *, now: datetime, by: str | None = None) -> int:
        """Record an API token (only its hash); returns its id."""
        with self._tx() as conn:
            row = conn.execute(
                t.web_tokens.insert()
                .values(name=name, role=role, secret_hash=secret_hash, created_at=now, created_by=by)
                .returning(t.web_tokens.c.id)
            ).first()
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
            raise errors.StoreError("the store did not return the new token's id")
        return int(row[0])

    def token_by_hash(self, secret_hash: str) -> dict[str, Any] | None:
        """The unrevoked token with this hash, or None."""
        tokens = t.web_tokens
        query = sa.select(tokens).where(tokens.c.secret_hash == secret_hash, tokens.c.revoked_at.is_(None))
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every API token, newest first, without hashes."""
        tokens = t.web_tokens
        query = sa.select(*(c for c in tokens.c if c.name != "secret_hash")).order_by(tokens.c.id.desc())
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def revoke_token(self, token_id: int, *, now: datetime) -> dict[str, Any]:
        """Revoke a token; it stops working at once. Returns the token (without its hash)."""
        tokens = t.web_tokens
        with self._tx() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
            if row is None:
                raise errors.NotFound(f"no API token {token_id}; `corral tokens list` shows them")
            if row.revoked_at is not None:
                raise errors.Conflict(f"API token {token_id} ({row.name}) was already revoked at {row.revoked_at}")
            conn.execute(tokens.update().where(tokens.c.id == token_id).values(revoked_at=now))
        found = dict(row._mapping, revoked_at=now)
        found.pop("secret_hash")
        return found

    def create_session(self, id_hash: str, user: str, *, now: datetime, expires_at: datetime) -> None:
        """Open a sign-in session (and drop expired ones, so the table stays small)."""
        sessions = t.web_sessions
        with self._tx() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at <= now))
            conn.execute(sessions.insert().values(id_hash=id_hash, user_name=user, created_at=now, expires_at=expires_at))

    def session_user(self, id_hash: str, *, now: datetime) -> dict[str, Any] | None:
        """The user (name, role) of an unexpired session, or None."""
        sessions, users = t.web_sessions, t.web_users
        query = (
            sa.select(users.c.name, users.c.role, sessions.c.expires_at)
            .select_from(sessions.join(users, users.c.name == sessions.c.user_name))
            .where(sessions.c.id_hash == id_hash, sessions.c.expires_at > now)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else dict(row._mapping)

    def delete_session(self, id_hash: str) -> None:
        with self._tx() as conn:
            conn.execute(t.web_sessions.delete().where(t.web_sessions.c.id_hash == id_hash))

    def record_audit(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        now: datetime,
        job: str | None = None,
        run_id: int | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one entry to the audit log of who did what; returns its id."""
        with self._tx() as conn:
            row = conn.execute(
                t.audit_log.insert()
                .values(at=now, actor=actor, role=role, action=action, job=job, run_id=run_id, detail=detail)
                .returning(t.audit_log.c.id)
            ).first()
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
            raise errors.StoreError("the store did not return the new audit entry's id")
        return int(row[0])

    def list_audit(
        self,
        *,
        job: str | None = None,
        actor: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Audit entries, newest first (``before_id`` pages back)."""
        log = t.audit_log
        query = sa.select(log)
        if job is not None:
            query = query.where(log.c.job == job)
        if actor is not None:
            query = query.where(log.c.actor == actor)
        if before_id is not None:
            query = query.where(log.c.id < before_id)
        query = query.order_by(log.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [AuditEntry(**dict(r._mapping)) for r in conn.execute(query)]

    # -- events (issue 6): outbox, publisher, feed, consumer cursors ------------

    @staticmethod
    def _append_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Write outbox rows in the caller's transaction (one executemany)."""
        if rows:
            conn.execute(_EVENT_INSERT, rows)

    def append_events(self, rows: list[dict[str, Any]]) -> None:
        """Write outbox rows made with :func:`event_row` in their own transaction
        (for changes that are not run or job states, e.g. a monitor going late)."""
        with self._tx() as conn:
            self._append_events(conn, rows)

    def publish_events(self, *, now: datetime | None = None, limit: int = 2000, wait: bool = False) -> int:
        """Number the outbox rows committed so far: the publisher step.

        One publisher at a time: on PostgreSQL the holder of an advisory
        transaction lock (``wait=False`` gives up at once when another process
        is publishing; it will pick these rows up), on SQLite the holder of the
        database's write lock. Each row gets ``max(seq) + 1`` in outbox order,
        so ``seq`` has no gaps and grows in commit order. A row whose hash
        equals the last published event of the same subject is a re-emission:
        it is marked as seen and gets no number. Returns how many were numbered."""
        now = now or _now()
        with self._read() as conn:
            if conn.execute(_UNPUBLISHED, {"limit": 1}).first() is None:
                return 0
        with self._tx() as conn:
            if self.dialect == "postgresql":
                if wait:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PUBLISH_LOCK)))
                elif not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(PUBLISH_LOCK))).scalar():
                    return 0
            # A write first: on SQLite it takes the write lock before any read,
            # so what is read below cannot change until commit.
            head = self._insert(event_publisher).values(id=1, last_seq=0, published_at=now)
            conn.execute(head.on_conflict_do_update(index_elements=["id"], set_={"published_at": now}))
            rows = conn.execute(_UNPUBLISHED, {"limit": limit}).all()
            if not rows:
                return 0
            last = conn.execute(sa.select(sa.func.max(events.c.seq))).scalar() or 0
            previous = self._last_hashes(conn, {r.subject for r in rows})
            updates = []
            numbered = 0
            process = events.c.published_at.type.bind_processor(conn.dialect)
            at = process(now) if process else now  # what a statement would send for it
            for row in rows:
                seq = None
                if previous.get(row.subject) != row.payload_hash:
                    last += 1
                    numbered += 1
                    seq = last
                    previous[row.subject] = row.payload_hash
                updates.append((seq, at, row.id))
            # Thousands of rows that differ only in two integers: straight to
            # the driver, without a statement's per-row parameter handling.
            conn.exec_driver_sql(_PUBLISH.format(p="?" if conn.dialect.paramstyle == "qmark" else "%s"), updates)
            conn.execute(event_publisher.update().where(event_publisher.c.id == 1).values(last_seq=last))
        return numbered

    @staticmethod
    def _last_hashes(conn: Connection, subjects: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        names = sorted(subjects)
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            latest = (
                sa.select(sa.func.max(events.c.seq).label("seq"))
                .where(events.c.subject.in_(chunk), events.c.seq.is_not(None))
                .group_by(events.c.subject)
                .scalar_subquery()
            )
            query = sa.select(events.c.subject, events.c.payload_hash).where(events.c.seq.in_(latest))
            out.update((r.subject, r.payload_hash) for r in conn.execute(query))
        return out

    def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """Published events with ``seq > after``, in order. Polling with the
        last ``seq`` seen never skips an event and never repeats one."""
        with self._read() as conn:
            return [Event(**r._mapping) for r in conn.execute(_AFTER, {"after": after, "limit": limit})]

    def events_between(
        self, after: int, upto: int, *, types: Sequence[str], run_types: Sequence[str], run_states: Sequence[str]
    ) -> list[Event]:
        """Published events with ``after < seq <= upto``, in order, that are
        of one of ``types``, or of one of ``run_types`` into one of
        ``run_states``: a consumer that needs only those skips the others
        without reading them (``seq`` has no gaps, so the range is exact)."""
        query = (
            sa.select(*(events.c[name] for name in _EVENT_COLUMNS))
            .where(
                events.c.seq > after,
                events.c.seq <= upto,
                sa.or_(
                    events.c.type.in_(tuple(types)),
                    sa.and_(events.c.type.in_(tuple(run_types)), events.c.new_state.in_(tuple(run_states))),
                ),
            )
            .order_by(events.c.seq)
        )
        with self._read() as conn:
            return [Event(**r._mapping) for r in conn.execute(query)]

    def last_event_seq(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(events.c.seq))).scalar() or 0)

    def unpublished_events(self) -> int:
        """Outbox rows the publisher has not looked at yet."""
        with self._read() as conn:
            query = sa.select(sa.func.count()).select_from(events).where(events.c.published_at.is_(None))
            return int(conn.execute(query).scalar() or 0)

    def event_cursor(self, name: str) -> int:
        """How far consumer ``name`` has read the feed (0: not yet)."""
        with self._read() as conn:
            value = conn.execute(sa.select(event_cursors.c.seq).where(event_cursors.c.name == name)).scalar()
        return int(value or 0)

    def save_event_cursor(self, name: str, seq: int, *, now: datetime) -> None:
        with self._tx() as conn:
            stmt = self._insert(event_cursors).values(name=name, seq=seq, updated_at=now)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": seq, "updated_at": now}))

    # -- notifications (issue 6): alert state per job, the delivery outbox -----------

    def alert_states(self, job: str) -> dict[str, dict[str, Any]]:
        """The job's alert conditions (``failure``, ``skipped``, ...) by name."""
        from corral.store.tables import alert_state

        with self._read() as conn:
            rows = conn.execute(sa.select(alert_state).where(alert_state.c.job == job))
            return {r.condition: dict(r._mapping) for r in rows}

    def record_alerts(
        self,
        states: Sequence[dict[str, Any]],
        outbox: Sequence[dict[str, Any]],
        *,
        consumer: str | None,
        seq: int,
        now: datetime,
    ) -> None:
        """In one transaction: new alert states, the deliveries they cause, and
        the consumer's cursor. A crash before commit re-reads the same events.
        ``consumer=None`` leaves every cursor alone (alerts raised by time, not by
        an event: overrun, missed)."""
        from corral.store.tables import alert_state, deliveries

        with self._tx() as conn:
            for st in states:
                values = dict(st, updated_at=now)
                stmt = self._insert(alert_state).values(**values)
                keep = {k: v for k, v in values.items() if k not in ("job", "condition")}
                conn.execute(stmt.on_conflict_do_update(index_elements=["job", "condition"], set_=keep))
            if outbox:
                conn.execute(
                    deliveries.insert(),
                    [dict(d, attempts=0, created_at=now, next_attempt_at=d.get("next_attempt_at", now)) for d in outbox],
                )
            if consumer is None:
                return
            stmt = self._insert(event_cursors).values(name=consumer, seq=seq, updated_at=now)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": seq, "updated_at": now}))

    def due_deliveries(self, now: datetime, *, limit: int = 100) -> list[dict[str, Any]]:
        from corral.store.tables import deliveries

        query = (
            sa.select(deliveries)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def next_delivery_at(self) -> datetime | None:
        """When the earliest pending delivery falls due (None: nothing pending)."""
        from corral.store.tables import deliveries

        query = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(deliveries.c.status == "pending")
        with self._read() as conn:
            return conn.execute(query).scalar()

    def update_delivery(self, delivery_id: int, **values: Any) -> None:
        from corral.store.tables import deliveries

        with self._tx() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(**values))

    def deliveries_since(self, channel: str, since: datetime) -> int:
        """Deliveries sent (or being sent) on ``channel`` since ``since``: the rate limit's count."""
        from corral.store.tables import deliveries

        query = sa.select(sa.func.count()).where(
            deliveries.c.channel == channel,
            deliveries.c.created_at >= since,
            deliveries.c.status.in_(("pending", "sent", "failed")),
        )
        with self._read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def list_deliveries(self, *, limit: int = 100) -> list[dict[str, Any]]:
        from corral.store.tables import deliveries

        with self._read() as conn:
            rows = conn.execute(sa.select(deliveries).order_by(deliveries.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    # -- metrics (issue 6): aggregates read in one go for /metrics -------------------

    def _seconds_between(self, start: Any, end: Any) -> Any:
        if self.dialect == "postgresql":
            return sa.extract("epoch", end - start)
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0

    def metrics_snapshot(self, buckets: Sequence[float]) -> dict[str, Any]:
        """Counts by job and state, skips by reason, cumulative duration buckets
        per job (``le`` each of ``buckets``), last success, deliveries, feed."""
        from corral.store.tables import deliveries

        # One pass over runs: each row's duration is computed once (a
        # MATERIALIZED CTE, else SQLite inlines the expression into every
        # bucket comparison), then grouped by job, state, reason and the index
        # of the first bucket it fits. Python makes the buckets cumulative.
        executed = sa.and_(
            runs.c.state.in_((t.SUCCEEDED, t.FAILED, t.TIMED_OUT)),
            runs.c.started_at.is_not(None),
            runs.c.ended_at.is_not(None),
        )
        each = (
            sa.select(
                runs.c.job,
                runs.c.state,
                runs.c.reason,
                runs.c.ended_at,
                sa.case((executed, self._seconds_between(runs.c.started_at, runs.c.ended_at))).label("d"),
            )
            .cte("each_run")
            .prefix_with("MATERIALIZED")
        )
        bucket = sa.case(*[(each.c.d <= b, i) for i, b in enumerate(buckets)], else_=len(buckets)).label("bucket")
        grouped = sa.select(
            each.c.job,
            each.c.state,
            each.c.reason,
            bucket,
            sa.func.count(),
            sa.func.count(each.c.d),
            sa.func.sum(each.c.d),
            sa.func.max(each.c.ended_at),
        ).group_by(each.c.job, each.c.state, each.c.reason, sa.literal_column("bucket"))
        with self._read() as conn:
            rows = conn.execute(grouped).all()
            sent = conn.execute(
                sa.select(deliveries.c.channel, deliveries.c.status, sa.func.count()).group_by(
                    deliveries.c.channel, deliveries.c.status
                )
            ).all()
            # Two index lookups instead of a scan of the whole outbox.
            last_seq = conn.execute(sa.select(sa.func.max(events.c.seq))).scalar()
            unpublished = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(events.c.published_at.is_(None))
            ).scalar()
        ended_type = runs.c.ended_at.type
        by_state: dict[tuple[str, str], int] = {}
        skipped: dict[tuple[str, str], int] = {}
        hist: dict[str, list[Any]] = {}  # job -> [count, sum, per-bucket counts]
        last_ok: dict[str, Any] = {}
        for job, state, reason, index, count, timed, total, ended in rows:
            by_state[(job, state)] = by_state.get((job, state), 0) + int(count)
            if state == t.SKIPPED:
                skipped[(job, reason or "")] = skipped.get((job, reason or ""), 0) + int(count)
            if timed:
                entry = hist.setdefault(job, [0, 0.0, [0] * (len(buckets) + 1)])
                entry[0] += int(timed)
                entry[1] += float(total or 0.0)
                entry[2][int(index)] += int(timed)
            if state == t.SUCCEEDED and ended is not None and (job not in last_ok or ended > last_ok[job]):
                last_ok[job] = ended
        durations = []
        for job, (count, total, per_bucket) in sorted(hist.items()):
            cumulative, running = [], 0
            for n in per_bucket[: len(buckets)]:
                running += n
                cumulative.append(running)
            durations.append((job, count, round(total, 3), cumulative))
        return {
            "by_state": [(j, s, n) for (j, s), n in sorted(by_state.items())],
            "skipped": [(j, r, n) for (j, r), n in sorted(skipped.items())],
            "durations": durations,
            "last_success": [(j, _utc(v, ended_type, self.engine.dialect)) for j, v in sorted(last_ok.items())],
            "deliveries": [(c, s, int(n)) for c, s, n in sent],
            "last_seq": int(last_seq or 0),
            "unpublished": int(unpublished or 0),
        }

    # -- maintenance ------------------------------------------------------------

    # -- monitor-only jobs (issue 6, item 4): ping ids, pings, states ----------------

    def sync_monitors(self, given: dict[str, str | None], *, now: datetime) -> dict[str, str]:
        """Give every monitor-only job in ``given`` (job -> ``monitor.id`` or None)
        a row; returns each job's ping id. A job without an id keeps the random
        UUID made the first time it was seen; an id from the job file wins."""
        import uuid

        from corral.store.tables import monitors

        names = list(given)
        try:
            with self._tx() as conn:
                rows = {r.job: r for r in conn.execute(sa.select(monitors).where(monitors.c.job.in_(names)))}
                for job, ping_id in given.items():
                    row = rows.get(job)
                    if row is None:
                        conn.execute(
                            monitors.insert().values(
                                job=job, ping_id=ping_id or str(uuid.uuid4()), state="new", state_since=now,
                                watched_since=now, updated_at=now,
                            )
                        )
                    elif ping_id and row.ping_id != ping_id:
                        conn.execute(monitors.update().where(monitors.c.job == job).values(ping_id=ping_id, updated_at=now))
                query = sa.select(monitors.c.job, monitors.c.ping_id).where(monitors.c.job.in_(names))
                return {r.job: r.ping_id for r in conn.execute(query)}
        except sa.exc.IntegrityError as exc:
            raise errors.StoreError(f"two monitor-only jobs use the same monitor.id; give each its own ({exc.orig})") from exc

    def monitors(self) -> dict[str, dict[str, Any]]:
        """Every monitor row by job name."""
        from corral.store.tables import monitors

        with self._read() as conn:
            return {r.job: dict(r._mapping) for r in conn.execute(sa.select(monitors))}

    def monitor_id(self, job: str) -> str | None:
        from corral.store.tables import monitors

        with self._read() as conn:
            return conn.execute(sa.select(monitors.c.ping_id).where(monitors.c.job == job)).scalar()

    def record_ping(
        self,
        ping_id: str,
        kind: str,
        exit_code: int | None,
        *,
        now: datetime,
        remote: str | None = None,
        body: str | None = None,
    ) -> str | None:
        """Store one ping (``success``, ``start`` or ``fail``) and update its
        monitor's last times in one transaction. Returns the job, or None when
        no monitor has this ping id. The state change it may cause is made by
        the engine's next check (:meth:`set_monitor_states`)."""
        from corral.store.tables import monitors, pings

        with self._tx() as conn:
            job = conn.execute(sa.select(monitors.c.job).where(monitors.c.ping_id == ping_id)).scalar()
            if job is None:
                return None
            conn.execute(pings.insert().values(job=job, kind=kind, exit_code=exit_code, at=now, remote=remote, body=body))
            values: dict[str, Any] = {"last_ping_at": now, "updated_at": now}
            if kind == "start":
                values["last_start_at"] = now
            elif kind == "fail":
                values["last_failure_at"] = now
                values["last_exit_code"] = exit_code
            else:
                values["last_success_at"] = now
                values["last_exit_code"] = exit_code
            conn.execute(monitors.update().where(monitors.c.job == job).values(**values))
            return str(job)

    def list_pings(self, job: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """A monitor's pings, newest first."""
        from corral.store.tables import pings

        query = sa.select(pings).where(pings.c.job == job).order_by(pings.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def set_monitor_states(self, changes: Sequence[dict[str, Any]], *, now: datetime) -> int:
        """Move monitors to new states (``job``, ``old``, ``new``, ``reason``,
        ``message``) and write a ``monitor.transition`` event for each in the
        same transaction (the outbox), so the notifier sees them like run
        states. A change whose ``old`` is no longer current is skipped (another
        process got there first). Returns how many changed."""
        from corral.store.tables import monitors

        changed = 0
        with self._tx() as conn:
            rows = []
            for c in changes:
                result = conn.execute(
                    monitors.update()
                    .where(monitors.c.job == c["job"], monitors.c.state == c["old"])
                    .values(state=c["new"], state_since=now, updated_at=now)
                )
                if result.rowcount:
                    changed += 1
                    rows.append(
                        event_row("monitor.transition", c["job"], None, c["old"], c["new"], c.get("reason"), c.get("message"), now)
                    )
            self._append_events(conn, rows)
        return changed

    def migrate(self) -> None:
        from corral.store import migrate

        migrate.upgrade(self.engine)


@dataclass(frozen=True)
class Step:
    """One step of a pipeline run (see :mod:`corral.pipeline`)."""

    id: int
    run_id: int
    name: str
    position: int
    state: str
    reason: str | None
    message: str | None
    attempt: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    signal: int | None
    pid: int | None
    pgid: int | None
    proc_start: float | None
    peak_rss: int | None
    cpu_seconds: float | None
    log_path: str | None
    log_bytes: int | None
    outputs: str | None
    kept_from: int | None

    @property
    def output_values(self) -> dict[str, str]:
        return json.loads(self.outputs) if self.outputs else {}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        out["outputs"] = self.output_values
        return out


def _utc(value: Any, kind: Any, dialect: Any) -> Any:
    """An aggregate's timestamp as an aware UTC datetime (SQLite may give text or a naive value)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return kind.process_result_value(value, dialect)
    return value


def _step(row: Any) -> Step:
    return Step(**row._asdict())


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given
        return url


def open_store(url: str, *, migrate: bool = True) -> Store:
    store = Store(url)
    if migrate:
        store.migrate()
    return store


@dataclass(frozen=True)
class AuditEntry:
    """Who did what from the dashboard or its API, and when (:meth:`Store.record_audit`)."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    job: str | None
    run_id: int | None
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "job": self.job,
            "run_id": self.run_id,
            "detail": self.detail,
        }
