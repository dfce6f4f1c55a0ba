"""The scheduler step with an injected clock, on real SQLite and real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from corral import schedule
from corral.clock import FakeClock
from corral.scheduler import Scheduler
from corral.spec import CatchupPolicy, JobSpec
from corral.store import Store, open_store
from corral.store import tables as t

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def hourly(**kw: object) -> JobSpec:
    base = JobSpec(name="hourly", command=("/bin/true",), shell=False, schedules=(schedule.parse("0 * * * *"),))
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    """The same scheduler tests on real SQLite and real PostgreSQL."""
    store = open_store(store_url)
    yield store
    store.close()


def states(store: Store, job: str = "hourly") -> list[tuple[str, str, str | None]]:
    return [
        (r.scheduled_for.strftime("%H:%M"), r.state, r.reason)
        for r in store.list_runs(job=job, limit=1000, oldest_first=True)
    ]


def test_a_new_job_starts_from_now_without_backfilling(db: Store) -> None:
    clock = FakeClock(T0 + 30 * timedelta(minutes=1))
    sched = Scheduler(db, {"hourly": hourly()})
    nxt = sched.enqueue_due(clock.now())
    assert states(db) == [] and nxt == T0 + H


def test_each_due_slot_becomes_one_pending_run(db: Store) -> None:
    clock = FakeClock(T0 + timedelta(minutes=30))
    sched = Scheduler(db, {"hourly": hourly()})
    sched.enqueue_due(clock.now())
    clock.set(T0 + H)
    assert sched.enqueue_due(clock.now()) == T0 + 2 * H
    assert states(db) == [("01:00", "pending", None)]
    # Asking again at the same instant changes nothing.
    sched.enqueue_due(clock.now())
    assert len(states(db)) == 1


def test_a_restart_never_fires_a_slot_twice(db: Store) -> None:
    clock = FakeClock(T0 + timedelta(minutes=59))
    Scheduler(db, {"hourly": hourly()}).enqueue_due(clock.now())
    clock.set(T0 + H + timedelta(seconds=1))
    Scheduler(db, {"hourly": hourly()}).enqueue_due(clock.now())
    # A second scheduler process with a stale cursor races for the same slot.
    stale = Scheduler(db, {"hourly": hourly()})
    stale._cursors["hourly"] = T0  # noqa: SLF001 - simulate a process that read the cursor earlier
    stale._loaded = True  # noqa: SLF001
    stale.enqueue_due(clock.now())
    assert states(db) == [("01:00", "pending", None)]


def test_a_slot_while_the_previous_run_is_running_is_skipped_with_its_reason(db: Store) -> None:
    clock = FakeClock(T0 + timedelta(minutes=59))
    sched = Scheduler(db, {"hourly": hourly()})
    sched.enqueue_due(clock.now())
    clock.set(T0 + H)
    sched.enqueue_due(clock.now())
    first = db.list_runs(job="hourly")[0]
    assert db.claim(first.id, node="n", now=clock.now())
    clock.set(T0 + 2 * H)
    sched.enqueue_due(clock.now())
    assert states(db)[-1] == ("02:00", "skipped", "overlap")
    assert "previous run 1 of hourly still running for 1h00m" in (db.list_runs(job="hourly")[0].message or "")


def test_paused_slots_are_recorded_as_skipped(db: Store) -> None:
    clock = FakeClock(T0 + timedelta(minutes=59))
    sched = Scheduler(db, {"hourly": hourly()})
    sched.enqueue_due(clock.now())
    db.set_paused("hourly", True, now=clock.now())
    clock.set(T0 + H)
    sched.enqueue_due(clock.now())
    assert states(db) == [("01:00", "skipped", "paused")]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", [("01:00", "skipped", "catchup"), ("02:00", "skipped", "catchup"), ("03:00", "skipped", "catchup"),
                  ("04:00", "skipped", "catchup"), ("05:00", "skipped", "catchup")]),
        ("latest", [("01:00", "skipped", "catchup"), ("02:00", "skipped", "catchup"), ("03:00", "skipped", "catchup"),
                    ("04:00", "skipped", "catchup"), ("05:00", "pending", None)]),
    ],
)
def test_slots_missed_while_down_follow_catchup(db: Store, mode: str, expected: list[tuple[str, str, str | None]]) -> None:
    job = hourly(catchup=CatchupPolicy(mode))  # type: ignore[arg-type]
    clock = FakeClock(T0 + timedelta(minutes=30))
    Scheduler(db, {"hourly": job}).enqueue_due(clock.now())
    clock.set(T0 + 5 * H + timedelta(minutes=20))  # down from 00:30 to 05:20
    Scheduler(db, {"hourly": job}).enqueue_due(clock.now())
    assert states(db) == expected
    assert all(r.catchup for r in db.list_runs(job="hourly"))


def test_catchup_all_queues_missed_slots_behind_each_other(db: Store) -> None:
    job = hourly(catchup=CatchupPolicy("all"), overlap="queue_all")
    clock = FakeClock(T0 + timedelta(minutes=30))
    Scheduler(db, {"hourly": job}).enqueue_due(clock.now())
    clock.set(T0 + 3 * H + timedelta(minutes=20))
    Scheduler(db, {"hourly": job}).enqueue_due(clock.now())
    assert states(db) == [("01:00", "pending", None), ("02:00", "queued", None), ("03:00", "queued", None)]


def test_a_long_outage_of_a_frequent_job_is_summarised_not_lost(db: Store) -> None:
    job = replace(hourly(), name="minutely", schedules=(schedule.parse("* * * * *"),))
    clock = FakeClock(T0)
    Scheduler(db, {"minutely": job}).enqueue_due(clock.now())
    clock.set(T0 + timedelta(days=2))
    Scheduler(db, {"minutely": job}).enqueue_due(clock.now())
    runs = db.list_runs(job="minutely", limit=5000)
    assert len(runs) == 1001
    summary = [r for r in runs if "further missed slots" in (r.message or "")]
    assert len(summary) == 1 and summary[0].state == t.SKIPPED


def test_catchup_latest_after_a_long_outage_runs_the_newest_slot(db: Store) -> None:
    job = replace(hourly(), name="minutely", schedules=(schedule.parse("* * * * *"),), catchup=CatchupPolicy("latest"))
    clock = FakeClock(T0)
    Scheduler(db, {"minutely": job}).enqueue_due(clock.now())
    clock.set(T0 + timedelta(days=2, seconds=30))
    Scheduler(db, {"minutely": job}).enqueue_due(clock.now())
    pending = [r for r in db.list_runs(job="minutely", limit=5000) if r.state == t.PENDING]
    assert [r.scheduled_for for r in pending] == [T0 + timedelta(days=2)]
    skipped = [r for r in db.list_runs(job="minutely", limit=5000) if r.state == t.SKIPPED]
    summary = [r for r in skipped if "further missed slots" in (r.message or "")]
    listed = len(skipped) - len(summary)
    extra = int((summary[0].message or "").split()[0])
    assert listed + extra + 1 == 2 * 24 * 60  # every missed slot is accounted for


def test_after_completion_runs_first_at_sight_then_gap_after_each_end(db: Store) -> None:
    job = replace(hourly(), name="tidy", schedules=(schedule.parse({"after_completion": "6h"}),))
    clock = FakeClock(T0)
    sched = Scheduler(db, {"tidy": job})
    sched.enqueue_due(clock.now())
    runs = db.list_runs(job="tidy")
    assert [r.state for r in runs] == ["pending"]
    db.claim(runs[0].id, node="n", now=clock.now())
    clock.advance(2 * H)
    db.transition(runs[0].id, t.SUCCEEDED, now=clock.now(), exit_code=0)
    sched.forget_due("tidy")
    assert sched.enqueue_due(clock.now()) == T0 + 8 * H
    clock.set(T0 + 8 * H)
    sched.enqueue_due(clock.now())
    assert [(r.scheduled_for, r.state) for r in db.list_runs(job="tidy", oldest_first=True)] == [
        (T0, "succeeded"), (T0 + 8 * H, "pending")
    ]


def test_replace_asks_the_running_run_to_stop(db: Store) -> None:
    job = hourly(overlap="replace")
    clock = FakeClock(T0 + timedelta(minutes=59))
    sched = Scheduler(db, {"hourly": job})
    sched.enqueue_due(clock.now())
    clock.set(T0 + H)
    sched.enqueue_due(clock.now())
    first = db.list_runs(job="hourly")[0]
    db.claim(first.id, node="n", now=clock.now())
    clock.set(T0 + 2 * H)
    sched.enqueue_due(clock.now())
    assert db.get_run(first.id).stop_requested == "replaced"
    assert states(db)[-1] == ("02:00", "queued", None)
