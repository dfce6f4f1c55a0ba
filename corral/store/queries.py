"""The only module that builds SQL. Named functions, one transaction each.

Every change of a run's state goes through :meth:`Store.transition` (or the
batch forms built on the same conditional UPDATE), so a later event outbox can
be written in the same transaction in one place.
"""

from __future__ import annotations

import functools
import json
import os
import socket
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
from corral.store.tables import job_state, nodes, runs


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


def _run(row: Any) -> Run:
    return Run(**{name: row._mapping[name] for name in _RUN_COLUMNS})


def _now() -> datetime:
    return datetime.now(timezone.utc)


def slot_key(job: str, instant: datetime) -> str:
    return f"{job}@{instant.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def default_node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets CLI readers and `corral up` work at once; NORMAL is durable
    # across process crashes (only an OS crash can lose the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
        out: list[int | None] = []
        with self._tx() as conn:
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
                if values.get("state") in t.FINAL_STATES and values.get("ended_at") is None:
                    values["ended_at"] = now
                stmt = self._insert_stmt(tuple(sorted(values)), bool(is_slot))
                row = conn.execute(stmt, {f"v_{k}": v for k, v in values.items()}).first()
                out.append(None if row is None else int(row[0]))
        return out

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a Store lives as long as the process
    def _insert_stmt(self, keys: tuple[str, ...], on_slot: bool) -> Any:
        # Statements are built once and reused with new parameters: building a
        # statement costs far more than executing it.
        stmt = self._insert(runs).values({k: sa.bindparam(f"v_{k}", type_=runs.c[k].type) for k in keys})
        if on_slot:
            stmt = stmt.on_conflict_do_nothing(index_elements=["slot_key"])
        return stmt.returning(runs.c.id)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _update_stmt(keys: tuple[str, ...], expect: tuple[str, ...] | None) -> Any:
        cond = [runs.c.id == sa.bindparam("w_id", type_=runs.c.id.type)]
        if expect is not None:
            cond.append(runs.c.state.in_(expect))
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
        """Apply several conditional state changes in one transaction."""
        allowed = tuple(expect) if expect is not None else t.ACTIVE_STATES
        results: list[bool] = []
        with self._tx() as conn:
            for run_id, to_state, values in changes:
                if to_state not in t.ALL_STATES:
                    raise ValueError(f"unknown run state {to_state!r}")
                update = dict(values, state=to_state, updated_at=now)
                if to_state in t.FINAL_STATES and "ended_at" not in update:
                    update["ended_at"] = now
                stmt = self._update_stmt(tuple(sorted(update)), allowed)
                params = {f"v_{k}": v for k, v in update.items()}
                params["w_id"] = run_id
                res = conn.execute(stmt, params)
                results.append(res.rowcount == 1)
        return results

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
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.state == t.RUNNING)
                .values(stop_requested=why, updated_at=now)
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
        with self._tx() as conn:
            for run_id, values in changes:
                if "state" in values:
                    raise ValueError("use transition() to change a run's state")
                update = dict(values, updated_at=now)
                params = {f"v_{k}": v for k, v in update.items()}
                params["w_id"] = run_id
                conn.execute(self._update_stmt(tuple(sorted(update)), None), params)

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
        query = sa.select(runs).where(runs.c.state.in_(t.ACTIVE_STATES))
        if job is not None:
            query = query.where(runs.c.job == job)
        with self._read() as conn:
            return [_run(r) for r in conn.execute(query.order_by(runs.c.id))]

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
            .where(
                runs.c.job == job,
                runs.c.state.in_((t.SUCCEEDED, t.FAILED, t.TIMED_OUT)),
                runs.c.started_at.is_not(None),
                runs.c.ended_at.is_not(None),
            )
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [(e - s).total_seconds() for s, e in conn.execute(query)]

    def job_summaries(self) -> dict[str, dict[str, Any]]:
        """Per job: last run, counts of runs by state, active count."""
        with self._read() as conn:
            counts = conn.execute(
                sa.select(runs.c.job, runs.c.state, sa.func.count()).group_by(runs.c.job, runs.c.state)
            ).all()
            last_ids = conn.execute(
                sa.select(sa.func.max(runs.c.id)).where(runs.c.state != t.SKIPPED).group_by(runs.c.job)
            ).all()
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
            self._upsert_job_state(
                conn, job, now, paused=paused, paused_at=now if paused else None, paused_by=by if paused else None
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

    # -- maintenance ------------------------------------------------------------

    def migrate(self) -> None:
        from corral.store import migrate

        migrate.upgrade(self.engine)


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
