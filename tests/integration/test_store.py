"""The store contract, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event as sa_event

from corral import errors
from corral.store import Store, open_store
from corral.store import tables as t

T0 = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)


def test_a_slot_can_be_recorded_only_once(store: Store) -> None:
    first = store.create_run(job="a", state="pending", trigger="schedule", scheduled_for=T0, now=T0, slot=True)
    again = store.create_run(job="a", state="pending", trigger="schedule", scheduled_for=T0, now=T0, slot=True)
    assert first is not None and again is None
    assert len(store.list_runs(job="a")) == 1


def test_manual_runs_at_the_same_instant_are_all_kept(store: Store) -> None:
    ids = [store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0) for _ in range(3)]
    assert len(set(ids)) == 3


def test_datetimes_come_back_as_aware_utc(store: Store) -> None:
    seoul = T0.astimezone(timezone(timedelta(hours=9)))
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=seoul, now=T0)
    run = store.get_run(rid)  # type: ignore[arg-type]
    assert run.scheduled_for == T0 and run.scheduled_for.tzinfo is not None
    assert run.scheduled_for.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0.replace(tzinfo=None), now=T0)


def test_exactly_one_claimer_wins(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None
    wins: list[bool] = []
    barrier = threading.Barrier(4)

    def claim(node: str) -> None:
        barrier.wait()
        wins.append(store.claim(rid, node=node, now=T0))

    threads = [threading.Thread(target=claim, args=(f"n{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(wins) == [False, False, False, True]
    assert store.get_run(rid).state == t.RUNNING


def test_many_claimers_of_many_runs_each_win_a_run_exactly_once(store: Store) -> None:
    # claim_many changes runs given the same values with one UPDATE per
    # state they leave; it must stay exact under competition.
    ids = [store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0) for _ in range(40)]
    store.transition(ids[0], t.CANCELLED, now=T0, expect=(t.PENDING,))  # no longer claimable
    won: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def claim(node: str) -> None:
        barrier.wait()
        won[node] = store.claim_many(ids, node=node, now=T0)  # type: ignore[arg-type]

    threads = [threading.Thread(target=claim, args=(f"n{i}",)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    claimed = sorted(i for got in won.values() for i in got)
    assert claimed == sorted(ids[1:])  # type: ignore[type-var]
    runs = store.get_runs(ids)  # type: ignore[arg-type]
    for node, got in won.items():
        assert all(runs[i].state == t.RUNNING and runs[i].node == node for i in got)
    store.publish_events(now=T0)
    moves = [e for e in store.events_after(0, limit=1000) if e.new_state == t.RUNNING]
    assert sorted(e.run_id for e in moves) == claimed  # one event per claimed run, none for losers
    assert all(e.old_state == t.PENDING for e in moves)


def test_ending_many_runs_stays_exact_when_another_writer_gets_in_between(store: Store, store_url: str) -> None:
    # Ending many runs is one executemany; if another writer (here: another
    # node marking one of them lost) changes a run between our read and our
    # write, the batch is rolled back and redone run by run.
    ids = [store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0) for _ in range(6)]
    assert store.claim_many(ids, node="n", now=T0) == ids  # type: ignore[arg-type]
    other = open_store(store_url, migrate=False)
    interfered: list[int] = []

    def meddle(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if executemany and statement.startswith("UPDATE runs") and not interfered:
            interfered.append(ids[2])  # type: ignore[arg-type]
            other.transition(ids[2], t.LOST, now=T0, expect=(t.RUNNING,), reason="lost")  # type: ignore[arg-type]

    sa_event.listen(store.engine, "before_cursor_execute", meddle)
    try:
        ends = [(i, t.FAILED, {"exit_code": n, "reason": "exit_code"}) for n, i in enumerate(ids)]
        won = store.transition_many(ends, now=T0, expect=(t.RUNNING,))  # type: ignore[arg-type]
    finally:
        sa_event.remove(store.engine, "before_cursor_execute", meddle)
        other.close()
    assert interfered and won == [True, True, False, True, True, True]
    runs = store.get_runs(ids)  # type: ignore[arg-type]
    assert runs[ids[2]].state == t.LOST  # type: ignore[index]
    assert [runs[i].exit_code for i in ids if i != ids[2]] == [0, 1, 3, 4, 5]  # type: ignore[index]
    store.publish_events(now=T0)
    finals = [e for e in store.events_after(0, limit=1000) if e.new_state in (t.FAILED, t.LOST)]
    assert sorted((e.run_id, e.new_state) for e in finals) == sorted(
        [(i, t.FAILED) for i in ids if i != ids[2]] + [(ids[2], t.LOST)]
    )


def test_a_final_run_never_changes_again(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None
    assert store.claim(rid, node="n", now=T0)
    assert store.transition(rid, t.SUCCEEDED, now=T0 + timedelta(seconds=5), exit_code=0)
    assert not store.transition(rid, t.FAILED, now=T0 + timedelta(seconds=6))
    run = store.get_run(rid)
    assert run.state == t.SUCCEEDED and run.ended_at == T0 + timedelta(seconds=5) and run.duration == 5


def test_cancelling_a_waiting_run_ends_it_at_once(store: Store) -> None:
    rid = store.create_run(job="a", state="queued", trigger="schedule", scheduled_for=T0, now=T0)
    run = store.request_stop(rid, "cancel", now=T0)  # type: ignore[arg-type]
    assert run.state == t.CANCELLED and run.reason == "cancel"
    with pytest.raises(errors.Conflict, match="already ended"):
        store.request_stop(rid, "cancel", now=T0)  # type: ignore[arg-type]


def test_cancelling_a_running_run_asks_its_node_to_stop_it(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None and store.claim(rid, node="n", now=T0)
    run = store.request_stop(rid, "cancel", now=T0)
    assert run.state == t.RUNNING and run.stop_requested == "cancel"


def test_unknown_runs_are_reported_with_a_hint(store: Store) -> None:
    with pytest.raises(errors.NotFound, match="corral runs"):
        store.get_run(999)


def test_runs_are_listed_newest_first_and_filtered(store: Store) -> None:
    for i in range(5):
        store.create_run(
            job="a" if i % 2 else "b", state="skipped" if i == 4 else "pending", trigger="schedule",
            scheduled_for=T0 + timedelta(hours=i), now=T0, slot=True,
        )
    assert [r.scheduled_for.hour for r in store.list_runs()] == [5, 4, 3, 2, 1]
    assert [r.job for r in store.list_runs(job="a")] == ["a", "a"]
    assert [r.state for r in store.list_runs(states=["skipped"])] == ["skipped"]
    newest = store.list_runs(limit=2)
    assert [r.id for r in store.list_runs(limit=2, before_id=newest[-1].id)] == [newest[-1].id - 1, newest[-1].id - 2]


def test_pause_and_cursor_live_in_job_state(store: Store) -> None:
    store.set_paused("a", True, now=T0, by="ops")
    store.set_cursor("a", T0, now=T0)
    state = store.job_states()["a"]
    assert state["paused"] is True and state["paused_by"] == "ops" and state["cursor"] == T0
    store.set_paused("a", False, now=T0)
    assert store.job_states()["a"]["paused"] is False
    assert store.job_states()["a"]["cursor"] == T0


def test_durations_come_from_finished_executions_only(store: Store) -> None:
    for minutes, state in [(10, t.SUCCEEDED), (20, t.FAILED), (30, t.CANCELLED)]:
        rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
        assert rid is not None and store.claim(rid, node="n", now=T0)
        store.transition(rid, state, now=T0, ended_at=T0 + timedelta(minutes=minutes))
    assert sorted(store.durations("a")) == [600.0, 1200.0]


def test_migrating_twice_is_harmless(store_url: str) -> None:
    open_store(store_url).close()
    s = open_store(store_url)
    assert s.list_runs() == []
    s.close()


def test_a_store_that_cannot_be_opened_says_which(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.StoreError, match="not usable|cannot use"):
        open_store(f"sqlite:///{blocker}/sub/corral.db")


def test_recent_durations_of_many_jobs_match_durations_of_each(store: Store) -> None:
    for job, n in (("a", 5), ("b", 2), ("c", 0)):
        for i in range(n):
            start = T0 + timedelta(hours=i)
            rid = store.create_run(job=job, state=t.PENDING, trigger="manual", scheduled_for=start, now=start)
            assert rid is not None and store.claim(rid, node="n", now=start)
            store.transition(rid, t.SUCCEEDED if i != 1 else t.FAILED, now=start + timedelta(seconds=10 + i), exit_code=0)
    store.create_run(job="a", state=t.SKIPPED, trigger="schedule", scheduled_for=T0, now=T0, reason="overlap")
    found = store.recent_durations(["a", "b", "c", "nope"], limit=3)
    assert found == {job: store.durations(job, limit=3) for job in ("a", "b", "c", "nope")}
    assert found["a"] == [14.0, 13.0, 12.0] and found["b"] == [11.0, 10.0] and found["c"] == []
    assert store.recent_durations([]) == {}


def test_step_rows_are_created_once_kept_ones_whole_and_changed_only_from_the_expected_state(store: Store) -> None:
    first = store.create_run(job="p", state="failed", trigger="manual", scheduled_for=T0, now=T0)
    run_id = store.create_run(job="p", state="running", trigger="retry", scheduled_for=T0, now=T0)
    assert first is not None and run_id is not None
    before = store.create_steps(first, [dict(name="fetch", position=0, state="succeeded")], now=T0)[0].id
    later = T0 + timedelta(minutes=5)
    kept = dict(name="fetch", position=0, state="succeeded", reason="kept", message="kept: succeeded in run 1",
                started_at=T0, ended_at=later, exit_code=0, peak_rss=1024, cpu_seconds=0.5, log_path="/logs/fetch.log",
                log_bytes=12, outputs='{"count": "3"}', kept_from=before)
    rows = [kept, dict(name="load", position=1, state="pending"), dict(name="report", position=2, state="pending")]
    steps = store.create_steps(run_id, rows, now=later)
    assert [(s.name, s.state, s.attempt) for s in steps] == [("fetch", "succeeded", 1), ("load", "pending", 1), ("report", "pending", 1)]
    assert steps[0].kept_from == before and steps[0].output_values == {"count": "3"} and steps[0].started_at == T0
    assert steps[1].started_at is None and steps[1].outputs is None and steps[1].created_at == later
    # A second call (a restart that starts the run's steps again) inserts nothing and changes nothing.
    assert store.create_steps(run_id, [dict(name="load", position=1, state="running")], now=later) == steps
    load = steps[1].id
    assert store.transition_steps([(load, "running", dict(pid=42, started_at=later), ("pending",))], now=later) == [True]
    # Not pending any more: a second start is refused; the end is taken.
    done = store.transition_steps(
        [(load, "running", dict(pid=43), ("pending",)), (load, "succeeded", dict(exit_code=0), ("running",))], now=later
    )
    assert done == [False, True]
    row = store.get_steps(run_id)[1]
    assert (row.state, row.pid, row.exit_code, row.ended_at) == ("succeeded", 42, 0, later)
