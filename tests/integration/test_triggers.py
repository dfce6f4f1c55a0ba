"""The worker's trigger and wait_for paths with fixed instants, on real SQLite and PostgreSQL.

No process runs: runs are claimed in the store and their ends are recorded as
executor outcomes, as the supervisor would report them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral import executor, triggers
from corral.spec import JobSpec, RetryPolicy, Settings, TriggerSpec, WaitCondition
from corral.store import Store, open_store
from corral.store import tables as t
from corral.worker import Worker

T0 = datetime(2026, 5, 11, 4, 43, tzinfo=timezone.utc)


def job(name: str, **kw: object) -> JobSpec:
    return replace(JobSpec(name=name, command=("/bin/true",), shell=False), **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    store = open_store(store_url)
    yield store
    store.close()


def worker(store: Store, tmp_path: Path, *jobs: JobSpec) -> Worker:
    settings = Settings(config_path=tmp_path / "corral.yaml", log_dir=tmp_path / "logs")
    supervisor = executor.Supervisor(on_exit=lambda outcome: None)  # never started: nothing is launched
    return Worker(store, supervisor, settings, {j.name: j for j in jobs}, node="test:1")


def ended(store: Store, w: Worker, job_name: str, exit_code: int, now: datetime) -> int:
    run_id = store.create_run(job=job_name, state=t.PENDING, trigger="manual", scheduled_for=now, now=now)
    assert run_id is not None and store.claim(run_id, node="test:1", now=now)
    w.record(
        executor.Outcome(
            run_id=run_id, exit_code=exit_code, signal=None, ended_at=now, duration=1.0, peak_rss=None,
            cpu_seconds=None, log_bytes=0, log_dropped=0, stopped_by=None, error=None, reason=None,
        ),
        now,
    )
    return run_id


def test_a_triggered_run_goes_through_the_overlap_policy(db: Store, tmp_path: Path) -> None:
    publish = job("publish", triggers=(TriggerSpec("collect", "success"),), overlap="skip")
    w = worker(db, tmp_path, job("collect"), publish)
    busy = db.create_run(job="publish", state=t.PENDING, trigger="manual", scheduled_for=T0, now=T0)
    assert busy is not None and db.claim(busy, node="test:1", now=T0)
    up = ended(db, w, "collect", 0, T0)
    (run,) = [r for r in db.list_runs(job="publish") if r.id != busy]
    assert (run.state, run.trigger, run.admitted) == (t.PENDING, "upstream", False)
    assert triggers.upstream_of(run.params) == up
    w.admit_new(T0)
    run = db.get_run(run.id)
    assert (run.state, run.reason) == (t.SKIPPED, "overlap")


def test_a_paused_job_records_the_trigger_as_skipped(db: Store, tmp_path: Path) -> None:
    w = worker(db, tmp_path, job("collect"), job("publish", triggers=(TriggerSpec("collect", "always"),)))
    db.set_paused("publish", True, now=T0)
    ended(db, w, "collect", 1, T0)
    (run,) = db.list_runs(job="publish")
    assert (run.state, run.reason) == (t.SKIPPED, "paused")


def test_a_failure_that_is_retried_fires_only_after_the_last_try(db: Store, tmp_path: Path) -> None:
    collect = job("collect", retries=RetryPolicy(attempts=1, backoff=timedelta(0), jitter=0))
    w = worker(db, tmp_path, collect, job("alarm", triggers=(TriggerSpec("collect", "failure"),)))
    ended(db, w, "collect", 1, T0)
    assert db.list_runs(job="alarm") == []
    (retry,) = [r for r in db.list_runs(job="collect") if r.state == t.PENDING]
    assert db.claim(retry.id, node="test:1", now=T0)
    w.record(
        executor.Outcome(
            run_id=retry.id, exit_code=1, signal=None, ended_at=T0, duration=1.0, peak_rss=None,
            cpu_seconds=None, log_bytes=0, log_dropped=0, stopped_by=None, error=None, reason=None,
        ),
        T0,
    )
    (alarm,) = db.list_runs(job="alarm")
    assert triggers.upstream_of(alarm.params) == retry.id


def test_a_waiting_run_stays_pending_says_why_and_times_out(db: Store, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    cond = WaitCondition("path", str(flag), timeout=timedelta(minutes=10))
    publish = job("publish", wait_for=(cond,), wait_poll=timedelta(seconds=30))
    alarm = job("alarm", triggers=(TriggerSpec("publish", "failure"),))
    w = worker(db, tmp_path, publish, alarm)
    run_id = db.create_run(job="publish", state=t.PENDING, trigger="manual", scheduled_for=T0, now=T0)
    assert run_id is not None

    assert w.dispatch(T0) == T0 + timedelta(seconds=30)
    run = db.get_run(run_id)
    assert (run.state, run.message) == (t.PENDING, f"waiting for: {flag} to exist")
    assert w.dispatch(T0 + timedelta(minutes=9, seconds=50)) == T0 + timedelta(minutes=10)

    w.dispatch(T0 + timedelta(minutes=10))
    run = db.get_run(run_id)
    assert (run.state, run.reason) == (t.FAILED, "wait_timeout")
    assert run.message == f"gave up waiting for {flag} to exist within 10m"
    (told,) = db.list_runs(job="alarm")
    assert triggers.upstream_of(told.params) == run_id
