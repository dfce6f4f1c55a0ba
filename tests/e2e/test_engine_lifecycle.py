"""Live reload, timeouts, drain on SIGTERM and catch-up limits with a real engine."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral.store import open_store
from corral.store import tables as t
from tests.e2e.helpers import pid_alive, run_cli, running_engine, start_corral_up, store_outage, wait_for, write_config

pytestmark = pytest.mark.slow


def test_a_timeout_kills_the_whole_tree_including_grandchildren(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  stuck:
    run: "sleep 300 & echo $! > kids; (trap '' TERM; sleep 300) & echo $! >> kids; wait"
    timeout: 1s
    kill_grace: 1s
""",
    )
    with running_engine(path) as (engine, store):
        rid = store.create_run(job="stuck", state="pending", trigger="manual", scheduled_for=datetime.now(timezone.utc),
                               now=datetime.now(timezone.utc), admitted=False)
        engine.wake()
        run = wait_for(lambda: (r := store.get_run(rid)).state in t.FINAL_STATES and r, timeout=20)  # type: ignore[arg-type]
    assert run.state == t.TIMED_OUT and run.reason == "timeout"
    kids = [int(x) for x in (tmp_path / "kids").read_text().split()]
    assert len(kids) == 2
    wait_for(lambda: not any(pid_alive(k) for k in kids), timeout=10, what="grandchildren gone")


def test_env_and_run_metadata_reach_the_job(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  env:
    run: "echo $GREETING $CORRAL_JOB $CORRAL_RUN_ID $CORRAL_ATTEMPT $CORRAL_SCHEDULED_FOR > out"
    env: {GREETING: hello}
""",
    )
    with running_engine(path) as (engine, store):
        now = datetime.now(timezone.utc)
        rid = store.create_run(job="env", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        wait_for(lambda: store.get_run(rid).state == t.SUCCEEDED, timeout=20)  # type: ignore[arg-type]
    words = (tmp_path / "out").read_text().split()
    assert words[:4] == ["hello", "env", str(rid), "1"]
    assert datetime.fromisoformat(words[4]) == now


def test_a_missing_command_is_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    path = write_config(tmp_path, "jobs:\n  typo:\n    run: [/no/such/tool, --flag]\n  fine:\n    run: 'true'\n")
    with running_engine(path) as (engine, store):
        now = datetime.now(timezone.utc)
        bad = store.create_run(job="typo", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        run = wait_for(lambda: (r := store.get_run(bad)).state in t.FINAL_STATES and r, timeout=20)  # type: ignore[arg-type]
        assert run.state == t.FAILED and run.reason == "command_not_found"
        assert "/no/such/tool" in (run.message or "")
        ok = store.create_run(job="fine", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        wait_for(lambda: store.get_run(ok).state == t.SUCCEEDED, timeout=20)  # type: ignore[arg-type]


def test_a_log_file_that_cannot_be_created_is_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    path = write_config(tmp_path, "jobs:\n  blocked:\n    run: 'true'\n  fine:\n    run: 'true'\n")
    with running_engine(path) as (engine, store):
        # The job's log folder is taken by a file: only the spawner finds out, when it opens the log.
        logs = tmp_path / ".corral" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "blocked").write_text("not a folder\n")
        now = datetime.now(timezone.utc)
        bad = store.create_run(job="blocked", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        run = wait_for(lambda: (r := store.get_run(bad)).state in t.FINAL_STATES and r, timeout=20)  # type: ignore[arg-type]
        assert run.state == t.FAILED and run.reason == "spawn_failed"
        assert "cannot open the log file" in (run.message or "") and "Not a directory" in (run.message or "")
        ok = store.create_run(job="fine", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        wait_for(lambda: store.get_run(ok).state == t.SUCCEEDED, timeout=20)  # type: ignore[arg-type]


def test_failed_runs_are_retried_as_new_attempts(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "jobs:\n  flaky:\n    run: 'test -f ok || { touch ok; exit 75; }'\n"
        "    retries: {attempts: 2, backoff: 0s, exit_codes: [75]}\n",
    )
    with running_engine(path) as (engine, store):
        now = datetime.now(timezone.utc)
        first = store.create_run(job="flaky", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        wait_for(lambda: any(r.state == t.SUCCEEDED for r in store.list_runs(job="flaky")), timeout=20)
        runs = store.list_runs(job="flaky", oldest_first=True)
    assert [(r.attempt, r.state, r.exit_code) for r in runs] == [(1, "failed", 75), (2, "succeeded", 0)]
    assert runs[1].retry_of == first and runs[1].trigger == "retry"


def test_an_edit_of_the_job_file_is_picked_up_and_a_bad_edit_is_reported(tmp_path: Path) -> None:
    path = write_config(tmp_path, "jobs:\n  one:\n    run: 'true'\n")
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    try:
        wait_for(lambda: "corral up: 1 job(s)" in log.read_text(), what="started")
        path.write_text("jobs:\n  one:\n    run: 'true'\n  two:\n    run: 'echo two'\n")
        wait_for(lambda: "job file reloaded: 2 job(s)" in log.read_text(), what="reload")
        run = json.loads(run_cli(path, "trigger", "two", "--wait", "--json").stdout)
        assert run["state"] == "succeeded"
        good = path.read_text()
        path.write_text(good + "    schedule: '0 25 * * *'\n")
        wait_for(lambda: "keeping the running configuration" in log.read_text(), what="bad reload reported")
        # The running node keeps the old jobs and records the error where `corral jobs` shows it.
        store = open_store(f"sqlite:///{tmp_path / '.corral/corral.db'}")
        errors = [n["config_error"] for n in store.live_nodes() if n["config_error"]]
        store.close()
        assert errors and "hour 25 is out of range" in errors[0]
        path.write_text(good)
        os.kill(up.pid, signal.SIGHUP)
        wait_for(lambda: log.read_text().count("job file reloaded: 2 job(s)") >= 2, what="fixed file reloaded")
        store = open_store(f"sqlite:///{tmp_path / '.corral/corral.db'}")
        assert not [n for n in store.live_nodes() if n["config_error"]]
        store.close()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)


def test_sigterm_drains_then_terminates_and_records_it(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "drain: 1s\njobs:\n  short:\n    run: 'sleep 0.5; echo done'\n  long:\n    run: 'sleep 120'\n    kill_grace: 1s\n",
    )
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    try:
        wait_for(lambda: "corral up:" in log.read_text(), what="started")
        long_id = json.loads(run_cli(path, "trigger", "long", "--json").stdout)["id"]
        short_id = json.loads(run_cli(path, "trigger", "short", "--json").stdout)["id"]
        wait_for(lambda: json.loads(run_cli(path, "show", str(long_id), "--json").stdout)["pid"], what="long started")
        pid = json.loads(run_cli(path, "show", str(long_id), "--json").stdout)["pid"]
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    long_run = json.loads(run_cli(path, "show", str(long_id), "--json").stdout)
    short_run = json.loads(run_cli(path, "show", str(short_id), "--json").stdout)
    assert short_run["state"] == "succeeded"
    assert long_run["state"] == "cancelled" and long_run["reason"] == "shutdown"
    assert not pid_alive(pid)


def test_catch_up_runs_start_within_the_global_limit(tmp_path: Path) -> None:
    # Hourly at a minute half an hour from now: the two slots of the last two
    # hours were missed, and none is due "on time" while the test runs.
    minute = (datetime.now(timezone.utc).minute + 30) % 60
    jobs = "".join(
        f"  c{i}:\n    run: 'sleep 1'\n    schedule: '{minute} * * * *'\n    catchup: latest\n" for i in range(6)
    )
    path = write_config(tmp_path, f"catchup_concurrency: 2\ndrain: 10s\njobs:\n{jobs}")
    store = open_store(f"sqlite:///{tmp_path / '.corral/corral.db'}")
    now = datetime.now(timezone.utc)
    # corral was last here two hours ago: every job has missed slots.
    store.set_cursors({f"c{i}": now - timedelta(hours=2) for i in range(6)}, now=now)
    store.close()
    with running_engine(path) as (_engine, store):
        wait_for(lambda: len([r for r in store.list_runs(limit=500) if r.state == t.SUCCEEDED]) >= 6, timeout=30)
        runs = [r for r in store.list_runs(limit=500) if r.started_at and r.ended_at]
        skipped = [r for r in store.list_runs(limit=500) if r.state == t.SKIPPED]
    assert len(runs) == 6 and all(r.catchup for r in runs)
    assert skipped and all(r.reason == "catchup" for r in skipped)
    events = sorted([(r.started_at, 1) for r in runs] + [(r.ended_at, -1) for r in runs], key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak == 2


def test_a_ping_wakes_the_running_corral_which_applies_it_at_once(tmp_path: Path) -> None:
    """The dashboard records a ping and wakes ``corral up`` (SIGUSR1): the
    monitor goes down now, not at the store poll (a minute away on SQLite)."""
    import httpx

    from corral.web import serve_in_thread

    ping_id = "6a1f3e2d-9b8c-4d7e-a6f5-0c1b2a3d4e5f"
    path = write_config(tmp_path, f"jobs:\n  legacy:\n    schedule: '0 3 * * *'\n    monitor: {{grace: 10m, id: {ping_id}}}\n")
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    store = open_store(f"sqlite:///{tmp_path / '.corral/corral.db'}")
    server = None
    try:
        wait_for(lambda: "corral up: 1 job(s)" in log.read_text(), what="corral up to start")
        wait_for(lambda: "legacy" in store.monitors(), what="the monitor's row")
        server = serve_in_thread(path, f"sqlite:///{tmp_path / '.corral/corral.db'}", port=0)
        assert httpx.get(f"{server.url}/ping/{ping_id}/fail", timeout=10).status_code == 200
        wait_for(lambda: store.monitors()["legacy"]["state"] == "down", timeout=15, what="the monitor to go down")
        # Its event is published by the notifier, which the change woke as well (not its 10-minute idle look).
        wait_for(
            lambda: [e.new_state for e in store.events_after(0, 100) if e.type == "monitor.transition"] == ["down"],
            timeout=15, what="the monitor's change in the event feed",
        )
    finally:
        if server is not None:
            server.stop()
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        store.close()


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("'exit 3'", {"exit_code": 3, "reason": "exit_code"}),  # its end, from the supervisor
        ("[/no/such/tool]", {"exit_code": None, "reason": "command_not_found"}),  # it could not start
    ],
)
def test_an_end_the_store_refused_is_recorded_once_it_works_again(
    tmp_path: Path, run: str, expected: dict[str, object]
) -> None:
    """A trigger that fails (on malformed JSON) makes the real SQLite refuse
    the write of the run's end; the engine keeps the outcome and records it
    within seconds of the store working again, with the job's own times."""
    path = write_config(tmp_path, f"jobs:\n  refused:\n    run: {run}\n")
    with running_engine(path) as (engine, store):
        end_outage = store_outage(tmp_path, "UPDATE ON runs", "NEW.job = 'refused' AND NEW.state = 'failed'")
        now = datetime.now(timezone.utc)
        rid = store.create_run(job="refused", state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
        engine.wake()
        wait_for(lambda: store.get_run(rid).state == t.RUNNING, timeout=20, what="the run claimed")  # type: ignore[union-attr]
        time.sleep(1.0)
        assert store.get_run(rid).state == t.RUNNING  # type: ignore[union-attr]
        end_outage()
        ended = wait_for(lambda: (r := store.get_run(rid)).state in t.FINAL_STATES and r, timeout=10)  # type: ignore[union-attr]
    assert ended.state == t.FAILED
    assert {"exit_code": ended.exit_code, "reason": ended.reason} == expected
    assert ended.started_at is not None and ended.ended_at is not None and ended.ended_at < now + timedelta(seconds=5)
