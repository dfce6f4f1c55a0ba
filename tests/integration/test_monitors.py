"""Monitor-only jobs against a real store: pings keep them up, a missed ping
makes them late then down at the right instants (injected clock), state
changes go through the events outbox and alert like any job, and the
``/ping/<uuid>`` routes."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from corral import config, monitor, notify
from corral.clock import FakeClock
from corral.store import Store, open_store
from corral.web import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

UTC = timezone.utc
PING_ID = "3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44"
# 03:00 in Seoul is 18:00 UTC the day before.
JOB_FILE = textwrap.dedent(
    f"""\
    jobs:
      legacy-backup:
        schedule: "0 3 * * *"
        timezone: Asia/Seoul
        monitor: {{grace: 10m, id: {PING_ID}}}
      legacy-report:
        schedule: "30 * * * *"
        monitor: {{grace: 5m}}
    """
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _at(day: int, hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, ms * 1000, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    yield s
    s.close()


def _cfg(tmp_path: Path) -> config.spec.Config:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    return config.load(path, environ={})


def test_ping_ids_are_given_or_made_once_and_kept(store: Store, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    ids = monitor.Watcher(store, cfg.jobs).ping_ids(T0)
    assert ids["legacy-backup"] == PING_ID
    made = ids["legacy-report"]
    assert str(__import__("uuid").UUID(made)) == made
    # Another engine, a restart, a reload: the same ids.
    assert monitor.Watcher(store, cfg.jobs).ping_ids(T0 + timedelta(days=1)) == ids
    assert store.monitor_id("legacy-report") == made


def test_on_time_pings_stay_up_and_a_missed_one_goes_late_then_down_at_the_right_instants(
    store: Store, tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path)
    jobs = {"legacy-backup": cfg.jobs["legacy-backup"]}
    watcher = monitor.Watcher(store, jobs)
    assert watcher.check(T0) == []  # new: first slot at 18:00 UTC
    assert store.monitors()["legacy-backup"]["state"] == "new"
    assert watcher.next_check == _at(1, 18) + timedelta(milliseconds=1)
    # Five nights of on-time pings (the backup ends 5 minutes after 03:00 Seoul).
    states = []
    for day in range(1, 6):
        assert store.record_ping(PING_ID, "start", None, now=_at(day, 18)) == "legacy-backup"
        store.record_ping(PING_ID, "success", 0, now=_at(day, 18, 5))
        for now in (_at(day, 18, 5), _at(day, 23), _at(day + 1, 17, 59)):
            watcher.check(now)
            states.append(store.monitors()["legacy-backup"]["state"])
    assert set(states) == {"up"}
    # Night 6 never pings: up until 18:00, late just after, down just after 18:10.
    assert watcher.check(_at(6, 18)) == []
    assert [c["new"] for c in watcher.check(_at(6, 18, 0, 1))] == ["late"]
    assert watcher.next_check == _at(6, 18, 10) + timedelta(milliseconds=1)
    assert watcher.check(_at(6, 18, 10)) == []
    down = watcher.check(_at(6, 18, 10, 1))
    assert [(c["old"], c["new"], c["reason"]) for c in down] == [("late", "down", "no_ping")]
    assert watcher.check(_at(6, 20)) == []  # no repeat
    # The late ping arrives: up again.
    store.record_ping(PING_ID, "success", None, now=_at(6, 21))
    assert [c["new"] for c in watcher.check(_at(6, 21))] == ["up"]
    # A failing run is down at once.
    store.record_ping(PING_ID, "fail", 3, now=_at(7, 18, 2))
    failed = watcher.check(_at(7, 18, 2))
    assert [c["new"] for c in failed] == ["down"] and "exit code 3" in failed[0]["message"]

    # Every change went through the outbox, in order.
    store.publish_events(now=_at(8, 0))
    feed = [(e.type, e.old_state, e.new_state, e.at) for e in store.events_after(0) if e.job == "legacy-backup"]
    assert feed == [
        ("monitor.transition", "new", "up", _at(1, 18, 5)),
        ("monitor.transition", "up", "late", _at(6, 18, 0, 1)),
        ("monitor.transition", "late", "down", _at(6, 18, 10, 1)),
        ("monitor.transition", "down", "up", _at(6, 21)),
        ("monitor.transition", "up", "down", _at(7, 18, 2)),
    ]
    pings = store.list_pings("legacy-backup", limit=3)
    assert [(p["kind"], p["exit_code"]) for p in pings] == [("fail", 3), ("success", None), ("success", 0)]


def test_monitor_states_alert_like_a_job(store: Store, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    watcher = monitor.Watcher(store, {"legacy-backup": cfg.jobs["legacy-backup"]})
    channel = notify.Channel(name="ops", type="webhook", url="http://127.0.0.1:9/hook")
    rule = notify.Rule(channels=("ops",), on=("failure", "recovery", "missed"))
    notifier = notify.Notifier(store, {"ops": channel}, default=rule, jobs=cfg.jobs)
    watcher.check(_at(1, 12))
    store.record_ping(PING_ID, "success", None, now=_at(1, 18, 5))
    for now in (_at(1, 18, 5), _at(2, 18, 0, 1), _at(2, 18, 10, 1), _at(2, 19)):
        watcher.check(now)
        notifier.step(now)
    store.record_ping(PING_ID, "success", None, now=_at(2, 20))
    watcher.check(_at(2, 20))
    notifier.step(_at(2, 20))
    sent = [(d["kind"], d["job"]) for d in store.list_deliveries()]
    assert sorted(sent) == sorted([("missed", "legacy-backup"), ("failure", "legacy-backup"), ("recovery", "legacy-backup")])
    texts = " | ".join(d["payload"] for d in store.list_deliveries())
    assert "monitor legacy-backup is late" in texts and "monitor legacy-backup is down" in texts
    assert "monitor legacy-backup is up again after being down for" in texts
    assert not store.alert_states("legacy-backup")["failure"]["active"]


def test_ping_routes(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    clock = FakeClock(_at(1, 18, 5))
    app = create_app(path, url, clock=clock)
    store = open_store(url)
    try:
        with TestClient(app, base_url="http://127.0.0.1:8377") as client:
            r = client.get(f"/ping/{PING_ID}")  # no monitor row yet: the web app makes it from the job file
            assert r.status_code == 200 and r.text == "OK\n"
            assert client.post(f"/ping/{PING_ID.upper()}/start").status_code == 200
            assert client.post(f"/ping/{PING_ID}/fail", content=b"boom\n").status_code == 200
            assert client.get(f"/ping/{PING_ID}/3").status_code == 200
            assert client.post(f"/ping/{PING_ID}/0", content=b"x" * 20_000 + b"tail\n").status_code == 200
            bad = client.get(f"/ping/{PING_ID}/sometimes")
            assert bad.status_code == 400 and "/ping/<uuid>/start" in bad.text
            assert client.get("/ping/00000000-0000-4000-8000-000000000000").status_code == 404
            assert client.get("/ping/not-a-uuid").status_code == 404
            too_big = client.post(f"/ping/{PING_ID}", content=b"y" * 70_000)
            assert too_big.status_code == 413
        pings = store.list_pings("legacy-backup")
        assert [(p["kind"], p["exit_code"]) for p in reversed(pings)] == [
            ("success", None), ("start", None), ("fail", None), ("fail", 3), ("success", 0)
        ]
        assert pings[0]["body"].endswith("tail\n") and len(pings[0]["body"]) == 10_000
        assert pings[2]["body"] == "boom\n" and pings[0]["remote"]
        row = store.monitors()["legacy-backup"]
        assert row["last_success_at"] == _at(1, 18, 5) and row["last_exit_code"] == 0
    finally:
        store.close()


def test_pings_need_no_credentials_on_a_dashboard_that_does(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    store.add_user("admin", "admin", "not-a-real-hash", now=T0)
    app = create_app(path, url, host="0.0.0.0", clock=FakeClock(T0))
    try:
        with TestClient(app, base_url="http://corral.example.com") as client:
            assert client.get("/api/jobs", headers={"accept": "application/json"}).status_code == 401
            assert client.post(f"/ping/{PING_ID}/start", headers={"origin": "http://elsewhere.example"}).status_code == 200
            assert client.get(f"/ping/{PING_ID}").status_code == 200
        assert [p["kind"] for p in store.list_pings("legacy-backup")] == ["success", "start"]
    finally:
        store.close()


def test_the_engine_checks_monitors_in_its_loop_and_wakes_for_the_next_change(store: Store, tmp_path: Path) -> None:
    from corral.engine import Engine

    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    clock = FakeClock(_at(1, 17, 59))
    engine = Engine(config.load(path, environ={}), store, clock=clock)
    engine.step()
    assert store.monitors()["legacy-backup"]["state"] == "new"
    assert engine.monitors.next_check == _at(1, 18) + timedelta(milliseconds=1)
    assert store.list_runs(job="legacy-backup") == []  # never run
    engine.notifier._wake.clear()
    clock.set(_at(1, 17, 59, 59, 500))
    engine.step()
    assert not engine.notifier._wake.is_set()  # nothing changed: the notifier sleeps on
    clock.set(_at(1, 18, 0, 1))
    engine.step()  # due: checked without waiting for the store poll
    assert store.monitors()["legacy-backup"]["state"] == "late"
    assert engine.notifier._wake.is_set()  # a state change is an event to alert on: at once
    clock.set(_at(1, 18, 10, 1))
    engine.step()
    assert store.monitors()["legacy-backup"]["state"] == "down"
    assert store.list_runs(job="legacy-backup") == []


def test_corral_monitors_prints_each_ping_url(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from corral import cli

    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    db = f"sqlite:///{tmp_path / 'corral.db'}"
    assert cli.run(["monitors", "-c", str(path), "--db", db, "--json", "--url", "https://corral.example/"]) == 0
    listed = {item["job"]: item for item in json.loads(capsys.readouterr().out)}
    assert listed["legacy-backup"]["ping_url"] == f"https://corral.example/ping/{PING_ID}"
    made = store.monitor_id("legacy-report")
    assert made and listed["legacy-report"]["ping_url"] == f"https://corral.example/ping/{made}"
    assert cli.run(["monitors", "-c", str(path), "--db", db]) == 0
    assert f"ping URL:  http://127.0.0.1:8377/ping/{PING_ID}" in capsys.readouterr().out


def test_a_monitor_only_job_cannot_be_triggered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from corral import cli

    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    assert cli.run(["trigger", "legacy-backup", "-c", str(path), "--db", url]) == 1
    assert "legacy-backup is a monitor-only job: corral does not run it" in capsys.readouterr().err
    app = create_app(path, url, clock=FakeClock(T0))
    with TestClient(app, base_url="http://127.0.0.1:8377") as client:
        refused = client.post("/api/jobs/legacy-backup/trigger", json={})
        assert refused.status_code == 409 and "monitor-only" in refused.text
        # The dashboard still shows the job (and /metrics counts it).
        for page in ("/", "/jobs/legacy-backup", "/api/jobs/legacy-backup", "/metrics"):
            assert client.get(page).status_code == 200, page
