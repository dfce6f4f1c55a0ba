"""The event feed: outbox rows written with each change, numbered by one publisher.

Runs on real SQLite and real PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from corral.store import Store
from corral.store import tables as t
from corral.store.queries import event_row

T0 = datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)


def _feed(store: Store) -> list[tuple[str, int | None, str | None, str | None]]:
    store.publish_events(now=T0)
    return [(e.type, e.run_id, e.old_state, e.new_state) for e in store.events_after(0, 1000)]


def test_every_state_change_of_a_run_becomes_one_event(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None
    assert store.claim(rid, node="n1", now=T0)
    assert store.transition(rid, t.FAILED, now=T0 + timedelta(seconds=5), reason="exit_code", message="exited 3")
    assert _feed(store) == [
        ("run.created", rid, None, "pending"),
        ("run.transition", rid, "pending", "running"),
        ("run.transition", rid, "running", "failed"),
    ]
    last = store.events_after(2)[0]
    assert last.seq == 3 and last.job == "a" and last.reason == "exit_code" and last.message == "exited 3"
    assert last.at == T0 + timedelta(seconds=5) and len(last.payload_hash) == 64


def test_a_change_that_loses_its_race_writes_no_event(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None
    assert store.claim(rid, node="n1", now=T0)
    assert not store.claim(rid, node="n2", now=T0)
    assert store.transition_many([(rid, t.SUCCEEDED, {}), (rid, t.FAILED, {})], now=T0, expect=(t.RUNNING,)) == [
        True,
        False,
    ]
    assert [e[3] for e in _feed(store)] == ["pending", "running", "succeeded"]


def test_the_event_is_written_in_the_same_transaction_as_the_change(store: Store) -> None:
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None
    try:
        with store._tx() as conn:
            store._transition_in(conn, [(rid, t.RUNNING, {})], now=T0, allowed=(t.PENDING,))
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    assert store.get_run(rid).state == t.PENDING
    assert [e[0] for e in _feed(store)] == ["run.created"]


def test_slot_runs_already_present_emit_nothing(store: Store) -> None:
    store.create_run(job="a", state="pending", trigger="schedule", scheduled_for=T0, now=T0, slot=True)
    store.create_run(job="a", state="pending", trigger="schedule", scheduled_for=T0, now=T0, slot=True)
    assert len(_feed(store)) == 1


def test_pause_resume_and_stop_requests_are_events(store: Store) -> None:
    store.set_paused("a", True, now=T0, by="ann")
    store.set_paused("a", True, now=T0, by="ann")  # no change: no event
    store.set_paused("a", False, now=T0)
    rid = store.create_run(job="a", state="pending", trigger="manual", scheduled_for=T0, now=T0)
    assert rid is not None and store.claim(rid, node="n", now=T0)
    store.request_stop(rid, "cancelled", now=T0)
    assert _feed(store) == [
        ("job.paused", None, "active", "paused"),
        ("job.resumed", None, "paused", "active"),
        ("run.created", rid, None, "pending"),
        ("run.transition", rid, "pending", "running"),
        ("run.stop_requested", rid, "running", "running"),
    ]


def test_identical_re_emissions_are_published_once(store: Store) -> None:
    row = event_row("job.paused", "a", None, "active", "paused", None, None, T0)
    store.append_events([row])
    store.append_events([dict(row, at=T0 + timedelta(seconds=1))])  # same content, later
    assert store.publish_events(now=T0) == 1
    store.append_events([event_row("job.resumed", "a", None, "paused", "active", None, None, T0)])
    store.append_events([row])  # paused again after a resume: a real change
    assert store.publish_events(now=T0) == 2
    assert [e.seq for e in store.events_after(0)] == [1, 2, 3]
    assert store.unpublished_events() == 0


def test_a_poller_never_sees_a_gap_or_a_repeat(store: Store) -> None:
    ids = store.create_runs(
        [dict(job=f"j{i % 5}", state="pending", trigger="manual", scheduled_for=T0) for i in range(60)], now=T0
    )
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        after = 0
        while not stop.is_set() or store.unpublished_events():
            store.publish_events()
            for event in store.events_after(after, 17):
                seen.append(event.seq)
                after = event.seq

    poller = threading.Thread(target=poll)
    poller.start()
    for rid in ids:
        assert rid is not None
        store.transition(rid, t.RUNNING, now=T0)
        store.transition(rid, t.SUCCEEDED, now=T0)
    stop.set()
    poller.join(30)
    store.publish_events()
    after = seen[-1] if seen else 0
    seen.extend(e.seq for e in store.events_after(after, 1000))
    assert seen == list(range(1, 181))


def test_consumer_cursors_remember_how_far_they_read(store: Store) -> None:
    assert store.event_cursor("notifier") == 0
    store.save_event_cursor("notifier", 41, now=T0)
    store.save_event_cursor("notifier", 42, now=T0)
    assert store.event_cursor("notifier") == 42
