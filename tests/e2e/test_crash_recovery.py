"""kill -9 of a real `corral up` while runs are in flight, then start it again."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from corral.store import open_store
from corral.store import tables as t
from tests.e2e.helpers import pid_alive, run_cli, start_corral_up, wait_for, write_config

pytestmark = pytest.mark.slow

# A restarted `corral up` imports, recovers, then records: on a loaded machine,
# with every look a `corral show` process of its own, that takes a while.
RESTART = 60.0

# Jobs that must outlive a step of the test wait for a gate file the test
# creates, rather than sleeping a fixed time a loaded machine may overrun.
JOBS = """
drain: 2s
jobs:
  survivor:
    run: "while [ ! -e survivor.gate ]; do sleep 0.05; done; echo done; exit 3"
  victim:
    run: "sleep 60"
  vanished:
    run: "sleep 60"
    retries: {attempts: 1, backoff: 0s}
"""


def _run(path: Path, run_id: int) -> dict:  # type: ignore[type-arg]
    return json.loads(run_cli(path, "show", str(run_id), "--json").stdout)


def test_runs_survive_a_kill_9_and_are_adopted_or_marked_lost(tmp_path: Path) -> None:
    path = write_config(tmp_path, JOBS)
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    try:
        store_url = f"sqlite:///{tmp_path / '.corral' / 'corral.db'}"
        wait_for(lambda: (tmp_path / ".corral" / "corral.db").exists(), what="store created")

        # 1. Everything is gone after a crash (as after a reboot): corral, the
        # spawner that was the job's parent, and the job. No exit status
        # anywhere, so the run is lost, and retried.
        vanished = json.loads(run_cli(path, "trigger", "vanished", "--json").stdout)["id"]
        wait_for(lambda: _run(path, vanished)["pid"], what="run started")
        job = psutil.Process(_run(path, vanished)["pid"])
        spawner = job.parent()
        assert spawner is not None and "spawner" in " ".join(spawner.cmdline())
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        spawner.kill()
        spawner.wait(timeout=10)
        os.killpg(job.pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(job.pid), what="job gone")
        up = start_corral_up(path, log)
        lost = wait_for(
            lambda: (r := _run(path, vanished))["state"] in t.FINAL_STATES and r, timeout=RESTART, what="lost recorded"
        )
        assert lost["state"] == "lost" and lost["reason"] == "lost"
        store = open_store(store_url)
        retries = [r for r in store.list_runs(job="vanished") if r.retry_of == vanished]
        store.close()
        assert retries and retries[0].attempt == 2  # retries: 1
        run_cli(path, "cancel", str(retries[0].id))

        # 2. Only corral dies. The jobs keep running under their spawner; one
        # of them is killed while nobody watches.
        survivor = json.loads(run_cli(path, "trigger", "survivor", "--json").stdout)["id"]
        victim = json.loads(run_cli(path, "trigger", "victim", "--json").stdout)["id"]
        wait_for(lambda: _run(path, survivor)["pid"] and _run(path, victim)["pid"], what="both runs started")
        s_pid, v_pid = _run(path, survivor)["pid"], _run(path, victim)["pid"]
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        assert pid_alive(s_pid)
        os.killpg(_run(path, victim)["pgid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(v_pid), what="victim gone")

        up = start_corral_up(path, log)
        # The survivor ends only once the new corral has adopted it.
        new_node = f":{up.pid}"
        wait_for(
            lambda: (_run(path, survivor)["node"] or "").endswith(new_node), timeout=RESTART, what="survivor adopted"
        )
        assert pid_alive(s_pid)
        (tmp_path / "survivor.gate").touch()
        done = wait_for(
            lambda: (r := _run(path, survivor))["state"] in t.FINAL_STATES and r,
            timeout=RESTART,
            what="survivor recorded",
        )
        # Adopted while alive, and its real exit code recorded when it ended.
        assert done["state"] == "failed" and done["exit_code"] == 3
        assert "adopted" in done["message"]
        # Ended while corral was down: its spawner wrote down how.
        killed = wait_for(
            lambda: (r := _run(path, victim))["state"] in t.FINAL_STATES and r, timeout=RESTART, what="victim recorded"
        )
        assert killed["state"] == "failed" and killed["reason"] == "signal", killed
        assert "SIGKILL" in killed["message"]
        logs = run_cli(path, "logs", str(survivor)).stdout
        assert "done" in logs
    finally:
        (tmp_path / "survivor.gate").touch()
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
        # leave nothing behind
        store = open_store(f"sqlite:///{tmp_path / '.corral' / 'corral.db'}")
        for r in store.list_runs(limit=100):
            if r.pid and pid_alive(r.pid):
                os.killpg(r.pgid or r.pid, signal.SIGKILL)
        store.close()


PIPELINE = """
jobs:
  chain:
    retries: {attempts: 1, backoff: 0s}
    steps:
      - {name: quick, run: "while [ ! -e quick.gate ]; do sleep 0.05; done"}
      - {name: after, run: "echo after", needs: [quick]}
"""


def test_a_step_that_ended_while_corral_was_down_keeps_its_status_and_the_retry_resumes_after_it(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, PIPELINE)
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    try:
        wait_for(lambda: (tmp_path / ".corral" / "corral.db").exists(), what="store created")
        run_id = json.loads(run_cli(path, "trigger", "chain", "--json").stdout)["id"]

        def quick() -> dict:  # type: ignore[type-arg]
            return next(s for s in _run(path, run_id)["steps"] if s["name"] == "quick")

        wait_for(lambda: quick()["state"] == "running" and quick()["pid"], what="first step started")
        pid = quick()["pid"]
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        (tmp_path / "quick.gate").touch()  # it ends while corral is down
        wait_for(lambda: not pid_alive(pid), timeout=15, what="first step ended on its own")

        up = start_corral_up(path, log)
        lost = wait_for(
            lambda: (r := _run(path, run_id))["state"] in t.FINAL_STATES and r, timeout=RESTART, what="run closed"
        )
        assert lost["state"] == "lost"
        steps = {s["name"]: s for s in lost["steps"]}
        # Its spawner kept how the step ended, since corral never recorded it.
        assert steps["quick"]["state"] == "succeeded" and steps["quick"]["exit_code"] == 0, steps["quick"]
        assert steps["after"]["state"] == "skipped"
        store = open_store(f"sqlite:///{tmp_path / '.corral' / 'corral.db'}")
        retry = wait_for(
            lambda: [r for r in store.list_runs(job="chain") if r.retry_of == run_id], timeout=RESTART, what="retry"
        )[0]
        store.close()
        done = wait_for(
            lambda: (r := _run(path, retry.id))["state"] in t.FINAL_STATES and r, timeout=RESTART, what="retry done"
        )
        assert done["state"] == "succeeded", done
        steps = {s["name"]: s for s in done["steps"]}
        assert steps["quick"]["reason"] == "kept"  # not run again
        assert steps["after"]["state"] == "succeeded"
    finally:
        (tmp_path / "quick.gate").touch()
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)


LEAVER = """
jobs:
  leaver:
    kill_grace: 1s
    run: "sleep 300 & echo $! > leftover.pid; while [ ! -e leaver.gate ]; do sleep 0.05; done; exit 4"
"""


def test_what_a_run_left_behind_while_corral_was_down_is_stopped_on_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, LEAVER)
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    leftover = None
    try:
        wait_for(lambda: (tmp_path / ".corral" / "corral.db").exists(), what="store created")
        run_id = json.loads(run_cli(path, "trigger", "leaver", "--json").stdout)["id"]
        wait_for(lambda: _run(path, run_id)["pid"] and (tmp_path / "leftover.pid").exists(), what="run started")
        pid = _run(path, run_id)["pid"]
        leftover = int(wait_for(lambda: (tmp_path / "leftover.pid").read_text().strip(), what="leftover pid"))
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        (tmp_path / "leaver.gate").touch()  # it ends while corral is down
        wait_for(lambda: not pid_alive(pid), timeout=15, what="the run's own process ended")
        assert pid_alive(leftover)  # nobody was there to stop it

        up = start_corral_up(path, log)
        done = wait_for(
            lambda: (r := _run(path, run_id))["state"] in t.FINAL_STATES and r, timeout=RESTART, what="run recorded"
        )
        assert done["state"] == "failed" and done["exit_code"] == 4, done
        assert "1 leftover background process(es) killed" in done["message"]
        assert wait_for(lambda: not pid_alive(leftover), what="leftover stopped")
    finally:
        (tmp_path / "leaver.gate").touch()
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
        if leftover is not None and pid_alive(leftover):
            os.kill(leftover, signal.SIGKILL)
