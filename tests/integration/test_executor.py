"""The executor against real processes: exit codes, failures to start, timeouts,
orphans, log caps, resource figures, adoption after a crash, and a burst of 200.

Every test polls for a condition with a deadline; none sleeps longer than needed.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

from corral import executor

HELPER = Path(__file__).with_name("launch_and_crash.py")
REPO = Path(__file__).resolve().parents[2]
_ids = itertools.count(1000)


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def gated(gate: Path, then: str = "exit 0") -> tuple[str, ...]:
    """A job that runs until the test creates ``gate`` (so the test can look at
    its process first, however slow the machine), then runs ``then``."""
    return ("/bin/sh", "-c", f"while [ ! -e '{gate}' ]; do sleep 0.02; done; {then}")


def sample_counter(supervisor: executor.Supervisor) -> Callable[[], int]:
    """How many resource samples ``supervisor`` has completed so far. Two more
    than at some moment mean a whole sample was taken after it."""
    done = [0]
    sample = supervisor._sample

    def counted() -> None:
        sample()
        done[0] += 1

    supervisor._sample = counted  # type: ignore[method-assign]
    return lambda: done[0]


def read_pids(path: Path, count: int, timeout: float = 5.0) -> list[int]:
    """PIDs a job wrote (one per line), once it has written ``count`` of them."""

    def ready() -> bool:
        return path.exists() and len(path.read_text().split()) >= count

    assert eventually(ready, timeout), f"the job did not write {count} pid(s) to {path}"
    return [int(word) for word in path.read_text().split()]


class Runs:
    """A started Supervisor plus the outcomes it reported, for one test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.outcomes: dict[int, executor.Outcome] = {}
        self.calls: list[int] = []
        self.started: list[executor.Started] = []
        self._cond = threading.Condition()
        self.supervisor = executor.Supervisor(self._on_exit, orphan_grace=1.0)
        self.supervisor.start()

    def _on_exit(self, outcome: executor.Outcome) -> None:
        with self._cond:
            self.calls.append(outcome.run_id)
            self.outcomes[outcome.run_id] = outcome
            self._cond.notify_all()

    def launch_spec(
        self, argv: tuple[str, ...], *, env: dict[str, str] | None = None, **kwargs: object
    ) -> executor.Launch:
        run_id = next(_ids)
        full_env = {"PATH": os.environ.get("PATH", os.defpath), "CORRAL_RUN_ID": str(run_id)}
        full_env.update(env or {})
        kwargs.setdefault("cwd", None)
        return executor.Launch(
            run_id=run_id,
            argv=argv,
            env=full_env,
            log_path=self.workdir / "logs" / f"{run_id}.log",
            exit_path=self.workdir / "exits" / f"{run_id}.exit",
            **kwargs,  # type: ignore[arg-type]
        )

    def start(self, argv: tuple[str, ...], **kwargs: object) -> executor.Started:
        result = self.supervisor.launch(self.launch_spec(argv, **kwargs))  # type: ignore[arg-type]
        assert isinstance(result, executor.Started), result
        self.started.append(result)
        return result

    def sh(self, script: str, **kwargs: object) -> executor.Started:
        return self.start(("/bin/sh", "-c", script), **kwargs)

    def outcome(self, run_id: int, timeout: float = 10.0) -> executor.Outcome:
        with self._cond:
            assert self._cond.wait_for(lambda: run_id in self.outcomes, timeout), f"run {run_id} did not end"
            return self.outcomes[run_id]

    def run(self, argv: tuple[str, ...], timeout: float = 10.0, **kwargs: object) -> executor.Outcome:
        return self.outcome(self.start(argv, **kwargs).run_id, timeout)

    def run_sh(self, script: str, timeout: float = 10.0, **kwargs: object) -> executor.Outcome:
        return self.outcome(self.sh(script, **kwargs).run_id, timeout)

    def log(self, run_id: int) -> str:
        return (self.workdir / "logs" / f"{run_id}.log").read_text()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        r.supervisor.close()
        # Whatever a failed test left running, it started it: stop it.
        for started in r.started:
            executor.kill_tree(started.pid, started.pgid, started.start_time, grace=0.5)


# -- exit statuses, environment, working directory, log ---------------------


@pytest.mark.parametrize("code", [0, 3])
def test_it_reports_the_exit_code(runs: Runs, code: int) -> None:
    outcome = runs.run_sh(f"exit {code}")
    assert outcome.exit_code == code
    assert outcome.signal is None
    assert outcome.error is None and outcome.reason is None
    assert outcome.duration is not None and outcome.duration < 5
    assert outcome.ended_at.tzinfo is not None
    assert outcome.adopted is False and outcome.orphans_killed == 0


def test_it_reports_death_by_signal(runs: Runs) -> None:
    outcome = runs.run_sh("kill -KILL $$")
    assert outcome.exit_code is None
    assert outcome.signal == signal.SIGKILL


def test_an_exit_code_above_128_is_an_exit_code_not_a_signal(runs: Runs) -> None:
    # The spawner reads the real status with wait4; only exit files written
    # for a corral that was down use the shell's 128 + N convention.
    outcome = runs.run_sh("exit 130")
    assert (outcome.exit_code, outcome.signal) == (130, None)


def test_a_script_without_a_shebang_line_runs_with_the_shell(runs: Runs, tmp_path: Path) -> None:
    script = tmp_path / "plain"
    script.write_text("echo plain script $1\nexit 4\n")
    script.chmod(0o755)
    started = runs.start((str(script), "arg"))
    assert runs.outcome(started.run_id).exit_code == 4
    assert runs.log(started.run_id) == "plain script arg\n"


def test_the_job_is_the_child_of_a_spawner_not_of_corral(runs: Runs) -> None:
    started = runs.start(("/bin/sleep", "30"))
    parent = psutil.Process(started.pid).parent()
    assert parent is not None and parent.pid != os.getpid()
    assert any(arg.endswith("corral/spawner.py") for arg in parent.cmdline())
    # The launch returns once the spawner has forked; the child may still be
    # in exec (its command line reads empty meanwhile). The same pid then runs
    # sleep itself: no wrapper around it.
    job = psutil.Process(started.pid)
    assert eventually(lambda: job.cmdline() == ["/bin/sleep", "30"]), job.cmdline()
    assert runs.supervisor.stop(started.run_id, "cancelled", grace=2.0)
    assert runs.outcome(started.run_id).signal == signal.SIGTERM


def test_starting_spawners_while_idle_ones_are_stopped_does_not_deadlock(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # corral up warms the spawners before a slot while the supervisor thread
    # stops idle ones: the two take the supervisor's locks in turn.
    monkeypatch.setattr(executor, "LANE_IDLE", 0.0)  # every wake-up with nothing running stops them
    stop = threading.Event()

    def wake_often() -> None:
        while not stop.is_set():
            runs.supervisor._wake()
            time.sleep(0.0002)

    def churn() -> None:
        for _ in range(40):
            runs.run(("/bin/true",))  # nothing runs now: the spawners may stop any moment
            runs.supervisor.warm()  # start them again meanwhile

    waker = threading.Thread(target=wake_often, daemon=True)
    worker = threading.Thread(target=churn, daemon=True)
    waker.start()
    worker.start()
    worker.join(timeout=60)
    stop.set()
    waker.join(timeout=10)
    assert not worker.is_alive(), "warm() and the idle stop of spawners deadlocked"
    assert runs.run(("/bin/true",)).exit_code == 0


def test_exit_files_are_written_only_for_statuses_the_caller_did_not_record(runs: Runs) -> None:
    # A file per run costs more than the run on some disks and matters only
    # after a crash: the spawner writes the statuses corral has not stored
    # when corral goes away (here: the supervisor closes its spawners).
    recorded = runs.run(("/bin/sh", "-c", "exit 2"))
    runs.supervisor.recorded([recorded.run_id])
    unrecorded = runs.run(("/bin/sh", "-c", "exit 5"))  # its request tells the spawner about the first
    exits = runs.workdir / "exits"
    assert not (exits / f"{recorded.run_id}.exit").exists()
    assert not (exits / f"{unrecorded.run_id}.exit").exists()
    runs.supervisor.close()
    assert eventually(lambda: (exits / f"{unrecorded.run_id}.exit").exists())
    assert executor.read_exit_file(exits / f"{unrecorded.run_id}.exit") == 5
    assert not (exits / f"{recorded.run_id}.exit").exists()


def test_a_burst_is_split_over_the_spawners(runs: Runs, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    launches = [runs.launch_spec(gated(gate)) for _ in range(24)]  # alive until we have looked at their parents
    results = runs.supervisor.launch_many(launches)
    assert all(isinstance(r, executor.Started) for r in results)
    runs.started.extend(r for r in results if isinstance(r, executor.Started))
    parents = {psutil.Process(r.pid).ppid() for r in results}  # type: ignore[union-attr]
    assert len(parents) == executor.LANES
    gate.touch()
    assert runs.supervisor.wait_idle(15)
    assert all(runs.outcomes[r.run_id].exit_code == 0 for r in results)


def test_in_a_burst_the_first_runs_end_while_the_last_start_and_their_end_times_are_their_own(runs: Runs) -> None:
    launches = [runs.launch_spec(("/bin/true",)) for _ in range(200)]
    results = runs.supervisor.launch_many(launches)
    assert all(isinstance(r, executor.Started) for r in results)
    runs.started.extend(r for r in results if isinstance(r, executor.Started))
    assert runs.supervisor.wait_idle(30)
    starts = {r.run_id: r.started_at for r in results}  # type: ignore[union-attr]
    ends = {i: runs.outcomes[i].ended_at for i in starts}
    assert all(runs.outcomes[i].exit_code == 0 and ends[i] >= starts[i] for i in starts)
    # Registered chunk by chunk, with the end time the spawner saw: the first
    # run's recorded end comes before the last run's start, not after the whole burst.
    first, last = launches[0].run_id, launches[-1].run_id
    assert ends[first] < starts[last], (ends[first], starts[last])


def test_leftovers_are_found_below_the_spawner_without_scanning_the_host(runs: Runs, tmp_path: Path) -> None:
    # A daemon that double-forks and leaves the run's session: the spawner
    # (a child subreaper) inherits it, so the run's subtree still holds it.
    pids = tmp_path / "pids"
    gate = tmp_path / "gate"
    started = runs.sh(f"(setsid sh -c 'sleep 300 & echo $! > {pids}' &); while [ ! -e '{gate}' ]; do sleep 0.02; done")
    (daemon,) = read_pids(pids, 1)
    spawner = psutil.Process(started.pid).ppid()
    assert psutil.Process(daemon).ppid() == spawner  # the spawner adopted it
    below = executor._Table([spawner]).procs
    assert {started.pid, daemon} <= set(below) and os.getpid() not in below
    gate.touch()
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0 and outcome.orphans_killed >= 1
    assert eventually(lambda: gone(daemon))


def test_a_spawner_killed_under_a_running_job_costs_that_status_only(runs: Runs, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    started = runs.start(gated(gate))
    spawner = psutil.Process(started.pid).parent()
    assert spawner is not None
    spawner.kill()
    spawner.wait(5)
    # The job goes on (init adopts it) and is still watched; nobody is left
    # to read its status, so it ends as unknown rather than as a guess.
    time.sleep(0.2)
    assert started.run_id not in runs.outcomes and executor.process_alive(started.pid, started.start_time)
    gate.touch()
    outcome = runs.outcome(started.run_id)
    assert (outcome.exit_code, outcome.signal) == (None, None)
    # The next launch gets a new spawner.
    assert runs.run(("/bin/sh", "-c", "exit 5")).exit_code == 5


def test_idle_spawners_are_stopped_and_started_again_when_needed(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "LANE_IDLE", 0.3)
    first = runs.start(("sleep", "30"))  # alive until we have looked at its parent
    spawner = psutil.Process(first.pid).parent()
    assert spawner is not None
    assert runs.supervisor.stop(first.run_id, "cancelled", grace=2.0)
    assert runs.outcome(first.run_id).signal == signal.SIGTERM
    assert eventually(lambda: gone(spawner.pid))
    assert runs.run(("/bin/true",)).exit_code == 0  # a new spawner


def test_on_exit_is_called_once_per_run(runs: Runs) -> None:
    ids = [runs.sh("exit 0").run_id for _ in range(5)]
    assert runs.supervisor.wait_idle(10)
    assert sorted(runs.calls) == sorted(ids)
    assert runs.supervisor.running() == []


def test_env_vars_reach_the_child(runs: Runs) -> None:
    started = runs.sh('printf "%s|%s" "$GREETING" "$CORRAL_RUN_ID"', env={"GREETING": "hello world"})
    assert runs.outcome(started.run_id).exit_code == 0
    assert runs.log(started.run_id) == f"hello world|{started.run_id}"


def test_the_working_directory_is_honoured(runs: Runs, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    started = runs.start(("pwd",), cwd=str(workdir))
    assert runs.outcome(started.run_id).exit_code == 0
    assert os.path.realpath(runs.log(started.run_id).strip()) == os.path.realpath(workdir)


def test_stdout_and_stderr_both_go_to_the_log_in_order(runs: Runs) -> None:
    started = runs.sh("echo one; echo two >&2; echo three; echo four >&2")
    assert runs.outcome(started.run_id).exit_code == 0
    assert runs.log(started.run_id) == "one\ntwo\nthree\nfour\n"


def test_argv_is_passed_as_arguments_never_as_script_text(runs: Runs, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    nasty = f'$(touch {canary}); "quoted" `touch {canary}` ; exit 9'
    started = runs.start(("printf", "%s\\n", nasty, "two words"))
    assert runs.outcome(started.run_id).exit_code == 0
    assert runs.log(started.run_id) == f"{nasty}\ntwo words\n"
    assert not canary.exists()


def test_a_name_that_is_also_a_shell_builtin_runs_the_program_from_path(runs: Runs, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "echo"
    fake.write_text("#!/bin/sh\nprintf 'from PATH\\n'\n")
    fake.chmod(0o755)
    started = runs.start(("echo", "ignored"), env={"PATH": f"{bindir}:{os.environ.get('PATH', '')}"})
    assert runs.outcome(started.run_id).exit_code == 0
    assert runs.log(started.run_id) == "from PATH\n"


# -- failures to start never raise -------------------------------------------


def _not_executable(tmp_path: Path) -> Path:
    path = tmp_path / "notexec.sh"
    path.write_text("#!/bin/sh\necho should not run\n")
    path.chmod(0o644)
    return path


def test_a_missing_command_is_a_failed_outcome(runs: Runs) -> None:
    launch = runs.launch_spec(("no-such-command-xyz", "--flag"))
    outcome = runs.supervisor.launch(launch)
    assert isinstance(outcome, executor.Outcome)
    assert outcome.reason == "command_not_found"
    assert outcome.error == "command not found: no-such-command-xyz"
    assert outcome.exit_code is None and outcome.duration is None
    assert "command not found: no-such-command-xyz" in launch.log_path.read_text()
    assert runs.supervisor.running() == []


def test_a_command_that_is_not_executable_is_a_failed_outcome(runs: Runs, tmp_path: Path) -> None:
    script = _not_executable(tmp_path)
    by_path = runs.supervisor.launch(runs.launch_spec((str(script),)))
    assert isinstance(by_path, executor.Outcome)
    assert (by_path.reason, by_path.error) == ("not_executable", f"not executable: {script}")

    by_name = runs.supervisor.launch(runs.launch_spec(("notexec.sh",), env={"PATH": str(tmp_path)}))
    assert isinstance(by_name, executor.Outcome)
    assert (by_name.reason, by_name.error) == ("not_executable", "not executable: notexec.sh")


def test_a_directory_is_not_executable(runs: Runs, tmp_path: Path) -> None:
    outcome = runs.supervisor.launch(runs.launch_spec((str(tmp_path),)))
    assert isinstance(outcome, executor.Outcome)
    assert outcome.reason == "not_executable"


def test_a_missing_working_directory_is_a_failed_outcome(runs: Runs, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for argv in (("true",), ("/bin/sh", "-c", "true")):
        outcome = runs.supervisor.launch(runs.launch_spec(argv, cwd=str(missing)))
        assert isinstance(outcome, executor.Outcome)
        assert outcome.reason == "cwd_not_found"
        assert str(missing) in (outcome.error or "")


def test_what_only_the_spawner_finds_wrong_is_a_failed_outcome(runs: Runs, tmp_path: Path) -> None:
    # Each of these passes the checks made before the spawn request and fails in the spawner.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unlogged = runs.launch_spec(("/bin/true",))
    unlogged = dataclasses.replace(unlogged, log_path=blocker / "run.log")  # its folder is a file
    outcome = runs.supervisor.launch(unlogged)
    assert isinstance(outcome, executor.Outcome)
    assert outcome.reason == "spawn_failed"
    assert outcome.error == f"cannot open the log file {blocker / 'run.log'}: Not a directory"

    script = tmp_path / "bad-interpreter.sh"
    script.write_text("#!/no/such/interpreter\necho never\n")
    script.chmod(0o755)
    outcome = runs.supervisor.launch(runs.launch_spec((str(script),)))
    assert isinstance(outcome, executor.Outcome)
    assert (outcome.reason, outcome.error) == ("spawn_failed", f"could not start {script}: No such file or directory")
    assert runs.supervisor.running() == []


def test_a_killed_spawner_loses_only_the_statuses_of_its_jobs(runs: Runs, tmp_path: Path) -> None:
    """The spawner is the jobs' parent; if it is killed (the OOM killer), its
    running job is still watched to its end, which is reported without an
    exit status nobody could read, and the next launch gets a new spawner."""
    gate = tmp_path / "gate"
    started = runs.sh(f"while [ ! -e '{gate}' ]; do sleep 0.02; done")
    spawner = psutil.Process(started.pid).ppid()
    assert "spawner.py" in " ".join(psutil.Process(spawner).cmdline())
    os.kill(spawner, signal.SIGKILL)
    assert eventually(lambda: gone(spawner))
    gate.touch()
    outcome = runs.outcome(started.run_id)
    assert (outcome.exit_code, outcome.signal) == (None, None) and outcome.duration is not None
    after = runs.start(("/bin/sh", "-c", "exit 3"))
    assert runs.outcome(after.run_id).exit_code == 3
    assert psutil.Process(os.getpid()).children()  # a new spawner, ours
    assert spawner not in [p.pid for p in psutil.Process(os.getpid()).children()]


def test_a_burst_larger_than_the_sockets_hold_is_answered_whole(runs: Runs, tmp_path: Path) -> None:
    """20,000 launches in one call, none of which the spawners can start (their
    log folder is a file): the answers alone are more than a socket holds,
    so the caller must read them while it is still sending."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    launches = [
        dataclasses.replace(runs.launch_spec(("/bin/true",)), log_path=blocker / f"{i}.log") for i in range(20000)
    ]
    answers: list[list[executor.Started | executor.Outcome]] = []
    caller = threading.Thread(target=lambda: answers.append(runs.supervisor.launch_many(launches)), daemon=True)
    caller.start()
    caller.join(60)
    assert answers, "launch_many did not return: the spawners and the caller wait for each other"
    assert len(answers[0]) == 20000
    assert all(isinstance(a, executor.Outcome) and a.reason == "spawn_failed" for a in answers[0])
    assert [a.run_id for a in answers[0]] == [launch.run_id for launch in launches]


def test_a_relative_command_is_looked_up_in_the_working_directory(runs: Runs, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hi from $(basename $0)\n")
    script.chmod(0o755)
    started = runs.start(("./hello.sh",), cwd=str(tmp_path))
    assert runs.outcome(started.run_id).exit_code == 0
    assert runs.log(started.run_id) == "hi from hello.sh\n"
    missing = runs.supervisor.launch(runs.launch_spec(("./missing.sh",), cwd=str(tmp_path)))
    assert isinstance(missing, executor.Outcome) and missing.reason == "command_not_found"


def test_a_missing_command_inside_a_shell_string_is_reported_from_the_status(runs: Runs) -> None:
    outcome = runs.run_sh("echo before; nosuchcmd-abc --x")
    assert outcome.exit_code == 127
    assert outcome.reason == "command_not_found"
    assert outcome.error == "command not found: nosuchcmd-abc"


def test_a_non_executable_file_inside_a_shell_string_is_reported_from_the_status(runs: Runs, tmp_path: Path) -> None:
    _not_executable(tmp_path)
    outcome = runs.run_sh("./notexec.sh", cwd=str(tmp_path))
    assert outcome.exit_code == 126
    assert outcome.reason == "not_executable"
    assert outcome.error == "not executable: ./notexec.sh"


def test_an_empty_command_is_a_failed_outcome(runs: Runs) -> None:
    outcome = runs.supervisor.launch(runs.launch_spec(()))
    assert isinstance(outcome, executor.Outcome) and outcome.reason == "spawn_failed"


# -- timeouts, stops and orphans ---------------------------------------------


def test_a_timeout_kills_the_whole_group_including_background_grandchildren(runs: Runs, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = runs.sh(
        f"sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; wait",
        timeout=0.5,
        kill_grace=5.0,
    )
    grandchildren = read_pids(pids, 2)
    outcome = runs.outcome(started.run_id)
    assert outcome.stopped_by == "timeout"
    assert outcome.signal == signal.SIGTERM and outcome.exit_code is None
    assert outcome.duration is not None and 0.4 < outcome.duration < 4
    assert eventually(lambda: all(gone(pid) for pid in [started.pid, *grandchildren]))


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(runs: Runs, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = runs.sh(
        f"trap '' TERM; sleep 300 & echo $! >> {pids}; sleep 300 & echo $! >> {pids}; wait; wait",
        timeout=0.5,
        kill_grace=0.5,
    )
    grandchildren = read_pids(pids, 2)
    outcome = runs.outcome(started.run_id)
    assert outcome.stopped_by == "timeout"
    assert outcome.signal == signal.SIGKILL
    assert outcome.duration is not None and outcome.duration >= 0.95
    assert eventually(lambda: all(gone(pid) for pid in [started.pid, *grandchildren]))


def test_stop_records_why_and_terminates_the_group(runs: Runs) -> None:
    started = runs.sh("sleep 300")
    assert runs.supervisor.running() == [started.run_id]
    assert runs.supervisor.stop(started.run_id, "cancel", grace=2.0)
    outcome = runs.outcome(started.run_id)
    assert (outcome.stopped_by, outcome.signal) == ("cancel", signal.SIGTERM)
    assert runs.supervisor.stop(started.run_id, "cancel") is False
    assert runs.supervisor.stop(999_999, "cancel") is False


def test_a_stop_right_after_launch_still_reaches_the_job(runs: Runs) -> None:
    # The job may not exist yet, or sit between fork and exec with the
    # wrapper's trap as its TERM handler: the stop must still reach it.
    ids = []
    for i in range(30):
        ids.append(runs.start(("sleep", "300")).run_id)
        time.sleep(0.0005 * (i % 6))
        assert runs.supervisor.stop(ids[-1], "cancel", grace=20.0)
    outcomes = [runs.outcome(run_id) for run_id in ids]
    assert {(o.stopped_by, o.signal) for o in outcomes} == {("cancel", signal.SIGTERM)}


def test_a_normal_exit_does_not_leave_background_children_behind(runs: Runs, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = runs.sh(f"sleep 300 & echo $! > {pids}; exit 0")
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0
    assert outcome.orphans_killed >= 1
    (child,) = read_pids(pids, 1)
    assert eventually(lambda: gone(child))


def test_an_orphan_that_ignores_sigterm_is_killed_after_the_orphan_grace(runs: Runs, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = runs.sh(f"(trap '' TERM; exec sleep 300) & echo $! > {pids}; exit 4")
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 4 and outcome.orphans_killed == 1
    (child,) = read_pids(pids, 1)
    assert eventually(lambda: gone(child))


def test_a_process_that_escaped_with_setsid_is_found_by_the_sampled_tree(runs: Runs, tmp_path: Path) -> None:
    # env -u drops the launch token, so only the samples taken while the job
    # ran (it runs until a whole sample has seen the escapee) can find it.
    pids = tmp_path / "pids"
    gate = tmp_path / "gate"
    samples = sample_counter(runs.supervisor)
    started = runs.sh(
        f"setsid env -u {executor.RUN_TOKEN_VAR} sleep 300 & echo $! > {pids}; "
        f"while [ ! -e '{gate}' ]; do sleep 0.02; done"
    )
    (escapee,) = read_pids(pids, 1)
    assert eventually(lambda: psutil.Process(escapee).name() == "sleep")
    assert os.getsid(escapee) != started.pid
    seen = samples()
    assert eventually(lambda: samples() >= seen + 2, timeout=15), "no resource sample was taken"
    gate.touch()
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0 and outcome.orphans_killed >= 1
    assert eventually(lambda: gone(escapee))


def test_a_process_that_escaped_with_setsid_is_found_by_its_environment(runs: Runs, tmp_path: Path) -> None:
    # Exits at once, before any sample: the inherited launch token finds it.
    pids = tmp_path / "pids"
    started = runs.sh(f"setsid sleep 300 & echo $! > {pids}; exit 0")
    (escapee,) = read_pids(pids, 1)
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0 and outcome.orphans_killed >= 1
    assert eventually(lambda: gone(escapee))


def test_kill_tree_stops_a_run_and_its_children(runs: Runs, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = runs.sh(f"trap '' TERM; sleep 300 & echo $! > {pids}; wait")
    (child,) = read_pids(pids, 1)
    began = time.monotonic()
    executor.kill_tree(started.pid, started.pgid, started.start_time, grace=0.3)
    assert time.monotonic() - began < 3
    assert eventually(lambda: gone(child) and gone(started.pid))
    assert runs.outcome(started.run_id).signal == signal.SIGKILL


# -- log cap -------------------------------------------------------------------

WRITER = """
import sys, time
for burst in range(3):
    for i in range(1000):
        print(f"burst {burst} line {i:04d} " + "x" * 50)
    sys.stdout.flush()
    time.sleep(0.6)
print("LAST LINE")
"""


def test_the_log_is_capped_keeping_the_tail_with_a_marker(runs: Runs) -> None:
    cap = 64 * 1024
    started = runs.start((sys.executable, "-c", WRITER), log_max_bytes=cap)
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0
    text = runs.log(started.run_id)
    written = 3 * 1000 * len("burst 0 line 0000 " + "x" * 50 + "\n") + len("LAST LINE\n")
    assert outcome.log_dropped > written - cap
    assert outcome.log_bytes == len(text.encode()) <= cap + 200
    first, rest = text.split("\n", 1)
    marker = re.fullmatch(
        r"\[corral: (\d+) bytes of earlier output were dropped to keep the log under 65536 bytes\]", first
    )
    assert marker, first
    assert int(marker.group(1)) == outcome.log_dropped
    assert rest.splitlines()[-1] == "LAST LINE"
    # The kept part starts on a line boundary.
    assert re.match(r"burst \d line \d{4} x{50}\n", rest)


# -- resource figures ------------------------------------------------------------


def test_peak_rss_covers_a_child_process(runs: Runs, tmp_path: Path) -> None:
    # Held past a whole resource sample: a posix_spawn'ed wrapper's own
    # ru_maxrss starts at corral's size, so short runs rely on samples.
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    samples = sample_counter(runs.supervisor)
    hog = (
        "import os, time; b = b'x' * (100 * 1024 * 1024); open(os.environ['READY'], 'w').close()\n"
        "while not os.path.exists(os.environ['GATE']): time.sleep(0.02)"
    )
    started = runs.sh(
        f"'{sys.executable}' -c \"$HOG\"; exit 0", env={"HOG": hog, "READY": str(ready), "GATE": str(gate)}
    )
    assert eventually(ready.exists, timeout=15), "the child did not allocate its memory"
    seen = samples()
    assert eventually(lambda: samples() >= seen + 2, timeout=15), "no resource sample was taken"
    gate.touch()
    outcome = runs.outcome(started.run_id)
    assert outcome.exit_code == 0
    assert outcome.peak_rss is not None and outcome.peak_rss >= 90 * 1024 * 1024


def test_cpu_seconds_cover_a_busy_child(runs: Runs) -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    outcome = runs.run_sh(f"'{sys.executable}' -c '{busy}'")
    assert outcome.exit_code == 0
    assert outcome.cpu_seconds is not None and outcome.cpu_seconds >= 0.3


# -- adoption after a crash --------------------------------------------------------


class LeftBehind(NamedTuple):
    """A run whose supervisor died without cleanup, as the engine would have persisted it."""

    run_id: int
    pid: int
    pgid: int
    start_time: float
    exit_path: Path
    log_path: Path


def crash_after_launch(workdir: Path, script: str) -> LeftBehind:
    run_id = next(_ids)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(HELPER), str(workdir), str(run_id), script],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    return LeftBehind(
        run_id=int(data["run_id"]),
        pid=int(data["pid"]),
        pgid=int(data["pgid"]),
        start_time=float(data["start_time"]),
        exit_path=Path(data["exit_path"]),
        log_path=Path(data["log_path"]),
    )


def test_a_fresh_supervisor_adopts_a_run_left_by_a_crashed_one(runs: Runs, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    left = crash_after_launch(tmp_path, gated(gate, then="exit 7")[2])  # alive until adopted
    try:
        assert executor.process_alive(left.pid, left.start_time)
        adopt = runs.supervisor.adopt
        # A start time that does not match means the pid belongs to someone else now.
        assert adopt(left.run_id, left.pid, left.start_time + 5, left.pgid, left.exit_path, left.log_path) is False
        assert adopt(left.run_id, left.pid, left.start_time, left.pgid, left.exit_path, left.log_path) is True
        assert runs.supervisor.running() == [left.run_id]
        # It ends 2 s after it started: its duration counts from then, not from the adoption.
        time.sleep(max(0.0, left.start_time + 2 - time.time()))
    finally:
        gate.touch()
    outcome = runs.outcome(left.run_id, timeout=10)
    assert outcome.adopted is True
    assert outcome.exit_code == 7 and outcome.signal is None
    assert outcome.duration is not None and outcome.duration >= 1.5


def test_a_run_that_finished_while_nobody_watched_leaves_its_exit_file(runs: Runs, tmp_path: Path) -> None:
    left = crash_after_launch(tmp_path, "exit 5")
    assert eventually(lambda: not executor.process_alive(left.pid, left.start_time))
    # Its spawner may have reaped it before it saw its corral go: a restart
    # waits for the spawner to write what it holds, as recovery does.
    assert executor.await_spawners(tmp_path / "spawners") == []
    assert executor.read_exit_file(left.exit_path) == 5
    adopted = runs.supervisor.adopt(left.run_id, left.pid, left.start_time, left.pgid, left.exit_path, left.log_path)
    assert adopted is False
    assert executor.read_exit_file(tmp_path / "never-written.exit") is None


def test_closing_does_not_kill_runs_and_the_same_process_can_adopt_them(tmp_path: Path) -> None:
    first = Runs(tmp_path)
    started = first.sh("sleep 300")
    first.supervisor.close()
    assert executor.process_alive(started.pid, started.start_time)
    second = Runs(tmp_path)
    try:
        assert second.supervisor.adopt(
            started.run_id,
            started.pid,
            started.start_time,
            started.pgid,
            tmp_path / "exits" / f"{started.run_id}.exit",
            tmp_path / "logs" / f"{started.run_id}.log",
        )
        assert second.supervisor.stop(started.run_id, "shutdown", grace=2.0)
        outcome = second.outcome(started.run_id)
        assert outcome.adopted and outcome.stopped_by == "shutdown"
        assert outcome.signal == signal.SIGTERM
        assert first.calls == []
    finally:
        second.supervisor.close()
        executor.kill_tree(started.pid, started.pgid, started.start_time, grace=0.5)


# -- a burst ---------------------------------------------------------------------------


def test_two_hundred_concurrent_runs_all_complete_and_report(runs: Runs) -> None:
    launches = [runs.launch_spec(("sleep", "1")) for _ in range(200)]
    began = time.perf_counter()
    results = [runs.supervisor.launch(launch) for launch in launches]
    took = time.perf_counter() - began
    print(f"\nlaunching 200 runs took {took * 1000:.1f} ms")
    assert all(isinstance(result, executor.Started) for result in results)
    runs.started.extend(r for r in results if isinstance(r, executor.Started))
    assert runs.supervisor.wait_idle(20)
    assert len(runs.outcomes) == 200
    assert {outcome.exit_code for outcome in runs.outcomes.values()} == {0}
    assert all(outcome.orphans_killed == 0 for outcome in runs.outcomes.values())
