"""Alerts raised by time passing: overrun and missed, with an injected ``now``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral import config, notify
from corral.store import Store, open_store
from corral.store import tables as t

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)

JOBS = """
notify:
  channels: {hook: {type: webhook, url: "http://127.0.0.1:9/hook"}}
  default: {on: [failure, overrun, missed], missed_after: 26h}
jobs:
  nightly: {run: "true", expected_duration: 2h}
  report: {run: "true"}
  quiet: {run: "true", notify: {on: [failure]}}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


@pytest.fixture
def notifier(store: Store) -> notify.Notifier:
    return notify.Notifier.from_config(store, config.loads(JOBS, path="/tmp/corral.yaml", environ={}))


def _start(store: Store, job: str, at: datetime) -> int:
    rid = store.create_run(job=job, state=t.PENDING, trigger="schedule", scheduled_for=at, now=at)
    assert rid is not None
    store.claim(rid, node="n", now=at)
    return rid


def _kinds(store: Store) -> list[tuple[str, str, int | None]]:
    rows = sorted(store.list_deliveries(), key=lambda r: r["id"])
    return [(r["kind"], r["job"], r["run_id"]) for r in rows]


def test_a_run_past_its_expected_duration_alerts_once(store: Store, notifier: notify.Notifier) -> None:
    rid = _start(store, "nightly", T0)
    assert notifier.check_time(T0 + timedelta(hours=2)) == 0  # exactly at the limit: not yet
    assert notifier.check_time(T0 + timedelta(hours=2, minutes=1)) == 1
    assert notifier.check_time(T0 + timedelta(hours=5)) == 0  # once per run
    assert _kinds(store) == [("overrun", "nightly", rid)]
    text = json.loads(store.list_deliveries()[0]["payload"])["text"]
    assert "still running after 2h01m" in text or "still running after 2h1m" in text
    assert "expected_duration 2h" in text


def test_the_next_run_that_overruns_alerts_again(store: Store, notifier: notify.Notifier) -> None:
    first = _start(store, "nightly", T0)
    notifier.check_time(T0 + timedelta(hours=3))
    store.transition(first, t.SUCCEEDED, now=T0 + timedelta(hours=3, minutes=5))
    notifier.step(T0 + timedelta(hours=3, minutes=6))  # the end clears the overrun
    second = _start(store, "nightly", T0 + timedelta(days=1))
    notifier.check_time(T0 + timedelta(days=1, hours=3))
    assert [k for k in _kinds(store) if k[0] == "overrun"] == [("overrun", "nightly", first), ("overrun", "nightly", second)]


def test_without_expected_duration_it_is_k_times_the_p95_of_history(store: Store, notifier: notify.Notifier) -> None:
    for day in range(notify.MIN_HISTORY):
        rid = _start(store, "report", T0 + timedelta(days=day))
        store.transition(rid, t.SUCCEEDED, now=T0 + timedelta(days=day, minutes=10))
    notifier.step(T0 + timedelta(days=5))
    start = T0 + timedelta(days=6)
    rid = _start(store, "report", start)
    notifier.check_time(start + timedelta(minutes=19))  # 2 x p95 (10m) = 20m
    assert [k for k in _kinds(store) if k[0] == "overrun"] == []
    notifier.check_time(start + timedelta(minutes=21))
    assert [k for k in _kinds(store) if k[0] == "overrun"] == [("overrun", "report", rid)]


def test_too_little_history_never_guesses_an_overrun(store: Store, notifier: notify.Notifier) -> None:
    _start(store, "report", T0)
    assert notifier.check_time(T0 + timedelta(days=3)) == 0


def test_no_success_within_the_window_is_missed_once_until_a_success(store: Store, notifier: notify.Notifier) -> None:
    assert notifier.check_time(T0) == 0  # starts watching: the window begins now
    assert notifier.check_time(T0 + timedelta(hours=25)) == 0
    raised = notifier.check_time(T0 + timedelta(hours=26, minutes=1))
    assert raised == 2  # nightly and report; "quiet" does not ask for missed
    assert notifier.check_time(T0 + timedelta(hours=40)) == 0  # once per window
    assert sorted(k[1] for k in _kinds(store)) == ["nightly", "report"]
    # A success restarts the window: missed again only 26h after it.
    rid = _start(store, "nightly", T0 + timedelta(hours=41))
    store.transition(rid, t.SUCCEEDED, now=T0 + timedelta(hours=41, minutes=30))
    notifier.step(T0 + timedelta(hours=42))
    assert notifier.check_time(T0 + timedelta(hours=41 + 26)) == 0
    assert notifier.check_time(T0 + timedelta(hours=41 + 26, minutes=31)) == 1
    text = json.loads(sorted(store.list_deliveries(), key=lambda r: r["id"])[-1]["payload"])["text"]
    assert text.startswith("nightly missed: no successful run for 1d2h (expected one within 1d2h)")


def test_the_first_start_on_an_old_store_reads_history_without_announcing_it(store: Store, notifier: notify.Notifier) -> None:
    old = _start(store, "report", T0)
    store.transition(old, t.FAILED, now=T0 + timedelta(minutes=1))
    assert notifier.catch_up(T0 + timedelta(days=1)) > 0
    assert store.list_deliveries() == []
    assert notifier.catch_up(T0 + timedelta(days=1)) == 0  # only ever once
    # The old failure is remembered: failing again later is not news, its end is.
    assert store.alert_states("report")["failure"]["active"] is True
    again = _start(store, "report", T0 + timedelta(days=1))
    store.transition(again, t.FAILED, now=T0 + timedelta(days=1, minutes=1))
    notifier.step(T0 + timedelta(days=1, minutes=2))
    assert store.list_deliveries() == []


def test_a_live_reload_gives_the_engine_s_notifier_the_new_channels(tmp_path: Path, store: Store) -> None:
    from corral.engine import Engine

    path = tmp_path / "corral.yaml"
    path.write_text(JOBS)
    engine = Engine(config.load(path, environ={}), store)
    assert list(engine.notifier.channels) == ["hook"] and engine.notifier.rule_for("report").missed_after == timedelta(hours=26)
    path.write_text(JOBS.replace("hook:", "pager:").replace("missed_after: 26h", "missed_after: 2d"))
    engine.reload()
    assert list(engine.notifier.channels) == ["pager"] and engine.notifier.rule_for("report").missed_after == timedelta(days=2)


IDLE_JOBS = """
notify:
  channels: {hook: {type: webhook, url: "http://127.0.0.1:9/hook"}}
  default: {channels: [hook], on: [failure, overrun]}
jobs:
  nightly: {run: "true", expected_duration: 2h}
  report: {run: "true", notify: {channels: [hook], on: [missed], missed_after: 26h}}
"""


def test_an_idle_notifier_sleeps_until_something_can_fall_due(store: Store) -> None:
    cfg = config.loads(IDLE_JOBS.replace("  report", "  # report"), path="/tmp/corral.yaml", environ={})
    n = notify.Notifier.from_config(store, cfg)
    n.look_at_time(T0)
    assert n.next_time_alert is None
    assert n.idle_wait(T0, 600.0) == 600.0  # nothing running, nothing to miss: no wake-up at all
    # A run starts: the engine's wake makes the notifier look again within TIME_CHECK of its last look.
    _start(store, "nightly", T0 + timedelta(minutes=5))
    n._changed()
    assert n.idle_wait(T0 + timedelta(minutes=5), 600.0) == 0.0
    n.look_at_time(T0 + timedelta(minutes=5))
    assert n.next_time_alert == T0 + timedelta(hours=2, minutes=5)  # its expected_duration ends
    assert n.idle_wait(T0 + timedelta(minutes=5), 600.0) == 600.0
    assert n.idle_wait(T0 + timedelta(hours=2), 600.0) == 300.0
    # Looking before it is due does nothing; at the limit the alert goes out once, then nothing is due.
    n.look_at_time(T0 + timedelta(hours=1))
    assert _kinds(store) == []
    n.look_at_time(T0 + timedelta(hours=2, minutes=5, seconds=1))
    assert [k[0] for k in _kinds(store)] == ["overrun"]
    assert n.next_time_alert is None


def test_a_missed_window_and_a_delivery_retry_set_the_wake_up(store: Store) -> None:
    n = notify.Notifier.from_config(store, config.loads(IDLE_JOBS, path="/tmp/corral.yaml", environ={}))
    n.look_at_time(T0)  # starts watching "report": the window ends 26 h from now
    assert n.next_time_alert == T0 + timedelta(hours=26)
    assert n.idle_wait(T0, 7 * 86400.0) == 26 * 3600.0
    n.look_at_time(T0 + timedelta(hours=26, seconds=1))
    [row] = store.list_deliveries()
    assert row["kind"] == "missed" and row["status"] == "pending"
    # The webhook's port is closed: the delivery fails and is retried after its backoff.
    n.deliver_due(T0 + timedelta(hours=26, seconds=1))
    [row] = store.list_deliveries()
    assert row["status"] == "pending" and row["attempts"] == 1
    retry_in = (row["next_attempt_at"] - (T0 + timedelta(hours=26, seconds=1))).total_seconds()
    assert 0 < retry_in <= 3600
    assert n.idle_wait(T0 + timedelta(hours=26, seconds=1), 7 * 86400.0) == pytest.approx(retry_in)


def test_the_notifier_reads_only_events_that_can_alert_and_its_cursor_passes_the_rest(store: Store, notifier: notify.Notifier) -> None:
    ids = [_start(store, "report", T0) for _ in range(3)]  # created and started: nothing to alert on
    assert notifier.step(T0, limit=4) is True  # 6 events, read 4 at a time
    assert store.event_cursor(notify.CONSUMER) == 4
    assert notifier.step(T0) is False
    assert store.event_cursor(notify.CONSUMER) == store.last_event_seq() == 6
    store.transition(ids[1], t.FAILED, now=T0 + timedelta(minutes=1), exit_code=3)
    assert notifier.step(T0 + timedelta(minutes=1)) is False
    assert store.event_cursor(notify.CONSUMER) == 7
    assert _kinds(store) == [("failure", "report", ids[1])]
    # What it skipped reading is still in the feed for everyone else.
    assert [e.seq for e in store.events_after(0, 100)] == [1, 2, 3, 4, 5, 6, 7]
    alertable = store.events_between(
        0, 7, types=notify.ALERT_TYPES, run_types=notify.RUN_EVENT_TYPES, run_states=tuple(t.FINAL_STATES)
    )
    assert [e.seq for e in alertable] == [7]


def test_a_reload_that_adds_a_missed_rule_makes_the_idle_notifier_look_again(store: Store) -> None:
    without = config.loads(IDLE_JOBS.replace("  report", "  # report"), path="/tmp/corral.yaml", environ={})
    n = notify.Notifier.from_config(store, without)
    n.look_at_time(T0)
    assert n.idle_wait(T0, 600.0) == 600.0
    n.look_at_time(T0 + timedelta(seconds=1))  # nothing due: no look
    assert n.next_time_alert is None
    n.configure(config.loads(IDLE_JOBS, path="/tmp/corral.yaml", environ={}))
    n.look_at_time(T0 + timedelta(seconds=2))  # the new rules are looked at at once
    assert n.next_time_alert == T0 + timedelta(hours=26, seconds=2)
