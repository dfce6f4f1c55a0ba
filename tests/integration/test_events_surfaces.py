"""The event feed and metrics as users see them: ``corral events``,
``GET /api/events``, ``GET /metrics`` (checked with Prometheus's promtool)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from corral import cli
from corral.clock import FakeClock
from corral.store import Store, open_store
from corral.store import tables as t
from corral.web import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)
JOBS = """\
jobs:
  nightly:
    run: "echo nightly"
    schedule: "0 1 * * *"
  hourly:
    run: "echo hi"
    schedule: "0 * * * *"
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(JOBS)
    return path


@pytest.fixture
def store(job_file: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{job_file.parent / '.corral' / 'corral.db'}")
    yield s
    s.close()


def _history(store: Store) -> list[int]:
    ids = []
    for i, state in enumerate([t.SUCCEEDED, t.FAILED, t.SUCCEEDED]):
        rid = store.create_run(job="nightly", state=t.PENDING, trigger="schedule", scheduled_for=T0, now=T0)
        assert rid is not None
        store.claim(rid, node="n", now=T0)
        store.transition(rid, state, now=T0 + timedelta(seconds=30 * (i + 1)), exit_code=0 if state == t.SUCCEEDED else 2)
        ids.append(rid)
    store.create_run(job="hourly", state=t.SKIPPED, trigger="schedule", scheduled_for=T0, now=T0, reason="overlap")
    return ids


def test_corral_events_prints_the_feed_after_n(job_file: Path, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _history(store)
    assert cli.run(["events", "-c", str(job_file), "--after", "0", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 11))
    assert lines[2] == {**lines[2], "type": "run.transition", "old_state": "running", "new_state": "succeeded"}
    assert cli.run(["events", "-c", str(job_file), "--after", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "hourly" in out[1] and "-> skipped" in out[1] and "overlap" in out[1]


def test_corral_events_follow_prints_events_as_they_come(job_file: Path, store: Store) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "events", "-c", str(job_file), "--after", "0", "--follow", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        _history(store)
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while len(got) < 10 and time.monotonic() < deadline:
            got.append(json.loads(proc.stdout.readline()))
        assert [e["seq"] for e in got] == list(range(1, 11))
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _client(job_file: Path, store: Store) -> TestClient:
    app = create_app(job_file, store.url, clock=FakeClock(T0))
    return TestClient(app, base_url="http://127.0.0.1:8377")


def test_api_events_pages_through_the_feed(job_file: Path, store: Store) -> None:
    _history(store)
    with _client(job_file, store) as client:
        first = client.get("/api/events", params={"after": 0, "limit": 4}).json()
        assert [e["seq"] for e in first["events"]] == [1, 2, 3, 4]
        assert first["next_after"] == 4 and first["more"] is True
        rest = client.get("/api/events", params={"after": first["next_after"]}).json()
        assert [e["seq"] for e in rest["events"]] == [5, 6, 7, 8, 9, 10] and rest["more"] is False
        only = client.get("/api/events", params={"after": 0, "job": "hourly"}).json()
        assert [e["new_state"] for e in only["events"]] == ["skipped"]
        bad = client.get("/api/events", params={"afterr": 0})
        assert bad.status_code == 400 and "accepted: after, limit, job" in bad.json()["error"]


def test_metrics_report_runs_durations_and_skips(job_file: Path, store: Store) -> None:
    _history(store)
    store.publish_events()
    with _client(job_file, store) as client:
        res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert 'corral_runs_total{job="nightly",state="succeeded"} 2.0' in text
    assert 'corral_runs_total{job="nightly",state="failed"} 1.0' in text
    assert 'corral_skipped_slots_total{job="hourly",reason="overlap"} 1.0' in text
    assert 'corral_run_duration_seconds_count{job="nightly"} 3.0' in text
    assert 'corral_run_duration_seconds_bucket{job="nightly",le="60.0"} 2.0' in text
    assert 'corral_run_duration_seconds_sum{job="nightly"} 180.0' in text
    last = next(line for line in text.splitlines() if line.startswith("corral_last_success_timestamp_seconds{"))
    assert last.startswith('corral_last_success_timestamp_seconds{job="nightly"}')
    assert float(last.split()[-1]) == (T0 + timedelta(seconds=90)).timestamp()
    assert 'corral_runs_in_flight{job="hourly"} 0.0' in text
    assert "corral_events_last_seq 10.0" in text and "corral_events_unpublished 0.0" in text


def test_promtool_accepts_the_metrics(job_file: Path, store: Store, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    _history(store)
    with _client(job_file, store) as client:
        body = client.get("/metrics").content
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
