"""Job-after-job triggers and wait_for with real processes and a real store."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from corral import triggers
from corral.engine import Engine
from corral.store import Store
from corral.store import tables as t
from tests.e2e.helpers import run_cli, running_engine, wait_for, write_config

pytestmark = pytest.mark.slow


def _trigger(engine: Engine, store: Store, job: str) -> int:
    now = datetime.now(timezone.utc)
    run_id = store.create_run(job=job, state=t.PENDING, trigger="manual", scheduled_for=now, now=now, admitted=False)
    assert run_id is not None
    engine.wake()
    return run_id


def _finished(store: Store, run_id: int, timeout: float = 15) -> Any:
    return wait_for(
        lambda: (r := store.get_run(run_id)).state in t.FINAL_STATES and r, timeout=timeout, what=f"run {run_id} ends"
    )


def _only_run(store: Store, job: str) -> Any:
    runs = store.list_runs(job=job, limit=10)
    return len(runs) == 1 and runs[0].state in t.FINAL_STATES and runs[0]


def test_a_downstream_job_runs_after_upstream_success_only_and_gets_the_upstream_run_id(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  collect:
    run: "test -f ok"
  publish:
    trigger: {after: collect, on: success}
    run: 'echo "$CORRAL_UPSTREAM_RUN_ID $CORRAL_TRIGGER" >> published'
  alarm:
    trigger: [{after: collect, on: failure}]
    steps:
      - {name: tell, run: 'echo "$CORRAL_UPSTREAM_RUN_ID" >> alarmed'}
""",
    )
    with running_engine(path) as (engine, store):
        failed = _finished(store, _trigger(engine, store, "collect"))
        alarm = wait_for(lambda: _only_run(store, "alarm"), what="the alarm run ends")
        # Both triggers were looked at when collect ended: publish was not started.
        assert store.list_runs(job="publish") == []

        (tmp_path / "ok").touch()
        good = _finished(store, _trigger(engine, store, "collect"))
        publish = wait_for(lambda: _only_run(store, "publish"), what="the publish run ends")
        assert len(store.list_runs(job="alarm")) == 1
    assert failed.state == t.FAILED and good.state == t.SUCCEEDED
    assert alarm.state == t.SUCCEEDED and alarm.trigger == triggers.TRIGGER
    assert (tmp_path / "alarmed").read_text().split() == [str(failed.id)]
    assert publish.state == t.SUCCEEDED and publish.trigger == "upstream"
    assert (tmp_path / "published").read_text().split() == [str(good.id), "upstream"]
    shown = run_cli(path, "show", str(publish.id), "--json").stdout
    assert f'"{triggers.UPSTREAM_KEY}": {good.id}' in shown


def test_a_run_waits_for_the_process_in_a_pid_file_to_exit(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  cutover:
    wait_for:
      poll: 0.2s
      conditions:
        - {pid_file: collector.pid, timeout: 1m}
    run: "date +%s.%N > switched"
""",
    )
    # The collector runs until the test has seen the run wait, however slow the machine.
    collector = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "collector.pid").write_text(f"{collector.pid}\n")
        with running_engine(path) as (engine, store):
            run_id = _trigger(engine, store, "cutover")
            waiting = wait_for(
                lambda: (r := store.get_run(run_id)).message and r.message.startswith("waiting for") and r,
                what="the run to say it waits",
            )
            assert waiting.state == t.PENDING and f"pid {collector.pid}" in waiting.message
            listed = run_cli(path, "runs").stdout  # rich wraps the long message to the terminal width
            assert "waiting" in listed and "pending" not in listed and "waiting for:" in listed
            assert store.get_run(run_id).started_at is None  # the run did not start
            assert not (tmp_path / "switched").exists()
            exited = time.time()
            collector.terminate()
            collector.wait()
            run = _finished(store, run_id)
    finally:
        collector.kill()
        collector.wait()
    assert run.state == t.SUCCEEDED
    assert float((tmp_path / "switched").read_text()) >= exited
    assert run.started_at.timestamp() >= exited
    assert run.message and run.message.startswith("exited 0")


def test_a_wait_that_times_out_fails_with_wait_timeout(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  publish:
    wait_for:
      poll: 0.2s
      conditions:
        - {path: never/appears, timeout: 1s}
    run: "touch ran"
""",
    )
    with running_engine(path) as (engine, store):
        started = time.monotonic()
        run = _finished(store, _trigger(engine, store, "publish"))
        took = time.monotonic() - started
    assert run.state == t.FAILED and run.reason == "wait_timeout"
    assert run.message == f"gave up waiting for {tmp_path / 'never/appears'} to exist within 1s"
    assert 0.9 <= took < 5
    assert run.started_at is None and not (tmp_path / "ran").exists()
