"""wait_for: parsing one condition, looking at the world once, and the pure
met / keep waiting / timed out decision with fixed instants."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral import triggers, waitfor
from corral.spec import WaitCondition

SINCE = datetime(2026, 5, 11, 4, 43, tzinfo=timezone.utc)  # seed 000: the watcher starts at 13:43 KST
POLL = timedelta(seconds=5)
PID_FILE = WaitCondition("pid_file", "/run/collector.pid", timedelta(hours=12))
READY = WaitCondition("path", "/data/ready", timedelta(minutes=10))


def test_all_conditions_held_means_the_run_starts() -> None:
    verdict = waitfor.decide([PID_FILE, READY], {0: (True, ""), 1: (True, "")}, since=SINCE, now=SINCE, poll=POLL)
    assert verdict == waitfor.Verdict("met")


def test_it_keeps_waiting_and_names_only_what_is_still_unmet() -> None:
    verdict = waitfor.decide(
        [PID_FILE, READY], {0: (False, "pid 572275"), 1: (True, "")}, since=SINCE, now=SINCE + timedelta(hours=1), poll=POLL
    )
    assert verdict.state == "waiting"
    assert verdict.message == "waiting for: the process in /run/collector.pid to exit (pid 572275)"
    assert verdict.next_check == SINCE + timedelta(hours=1) + POLL
    assert waitfor.is_waiting("pending", verdict.message)
    assert not waitfor.is_waiting("running", verdict.message)


def test_the_next_look_is_never_later_than_the_nearest_timeout() -> None:
    now = SINCE + timedelta(minutes=9, seconds=58)
    verdict = waitfor.decide([PID_FILE, READY], {}, since=SINCE, now=now, poll=POLL)
    assert verdict.state == "waiting"
    assert verdict.next_check == SINCE + timedelta(minutes=10)


def test_it_times_out_per_condition_and_names_what_it_waited_for() -> None:
    held = {0: (False, "pid 572275"), 1: (False, "")}
    at_ten = waitfor.decide([PID_FILE, READY], held, since=SINCE, now=SINCE + timedelta(minutes=10), poll=POLL)
    assert at_ten == waitfor.Verdict("timed_out", "gave up waiting for /data/ready to exist within 10m")
    # The path appeared: the pid file's own 12h timeout still runs.
    later = waitfor.decide(
        [PID_FILE, READY], {0: held[0], 1: (True, "")}, since=SINCE, now=SINCE + timedelta(hours=11), poll=POLL
    )
    assert later.state == "waiting"


def test_a_condition_is_parsed_with_its_timeout_and_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    cond = waitfor.parse({"pid_file": "run/collector.pid", "timeout": "12h"}, base=tmp_path)
    assert cond == WaitCondition("pid_file", str(tmp_path / "run/collector.pid"), timedelta(hours=12))
    assert waitfor.parse({"tcp": "localhost:5432"}, base=tmp_path).timeout == timedelta(hours=1)
    assert waitfor.parse({"process": "collector.py"}, base=tmp_path).target == "collector.py"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"pid": "/x"}, 'unknown key "pid" in a condition; did you mean "pid_file"?'),
        ({"timeout": "1h"}, "a condition needs one of pid_file, process, path, job_idle, tcp"),
        ({"path": "/a", "tcp": "h:1"}, "one condition names both path and tcp"),
        ({"tcp": "localhost"}, '"localhost" is not host:port'),
        ({"tcp": "h:70000"}, '"h:70000" is not host:port'),
        ({"path": ""}, "path needs text"),
        ({"path": "/a", "timeout": "0s"}, "timeout must be longer than 0"),
        ("/run/x.pid", '"/run/x.pid" is not a condition'),
    ],
)
def test_bad_conditions_say_what_to_write(item: object, message: str) -> None:
    with pytest.raises(waitfor.BadCondition) as caught:
        waitfor.parse(item, base=Path("/"))
    assert str(caught.value).startswith(message)


def test_a_pid_file_holds_once_its_process_exited_even_as_a_zombie(tmp_path: Path) -> None:
    pid_file = tmp_path / "collector.pid"
    cond = WaitCondition("pid_file", str(pid_file))
    assert waitfor.check(cond, job_running=lambda _: False) == (True, "no pid file")
    pid_file.write_text("not a pid\n")
    assert waitfor.check(cond, job_running=lambda _: False)[0] is False
    proc = subprocess.Popen(["sleep", "30"])
    try:
        pid_file.write_text(f"{proc.pid}\n")
        assert waitfor.check(cond, job_running=lambda _: False) == (False, f"pid {proc.pid}")
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
        assert waitfor.check(cond, job_running=lambda _: False)[0] is True
    finally:
        proc.kill()
        proc.wait()


def test_path_job_idle_and_process_checks(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    assert waitfor.check(WaitCondition("path", str(flag)), job_running=lambda _: False)[0] is False
    flag.touch()
    assert waitfor.check(WaitCondition("path", str(flag)), job_running=lambda _: False)[0] is True
    idle = WaitCondition("job_idle", "collect")
    assert waitfor.check(idle, job_running=lambda name: name == "collect")[0] is False
    assert waitfor.check(idle, job_running=lambda name: False)[0] is True
    marker = f"sleep 31.{os.getpid()}"
    assert waitfor.check(WaitCondition("process", marker), job_running=lambda _: False)[0] is True
    proc = subprocess.Popen(["sleep", marker.split()[1]])
    try:
        assert waitfor.check(WaitCondition("process", marker), job_running=lambda _: False) == (False, f"pid {proc.pid}")
    finally:
        proc.kill()
        proc.wait()


def test_a_tcp_port_answers_only_while_something_listens() -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    cond = WaitCondition("tcp", f"127.0.0.1:{port}")
    assert waitfor.check(cond, job_running=lambda _: False)[0] is True
    server.close()
    assert waitfor.check(cond, job_running=lambda _: False)[0] is False


def test_triggers_fire_on_their_states_once_per_downstream_job() -> None:
    from corral.spec import JobSpec, TriggerSpec

    def job(name: str, *trigs: TriggerSpec, enabled: bool = True) -> JobSpec:
        return JobSpec(name=name, command=("true",), shell=False, triggers=trigs, enabled=enabled)

    jobs = {
        "collect": job("collect"),
        "publish": job("publish", TriggerSpec("collect", "success"), TriggerSpec("collect", "always")),
        "alarm": job("alarm", TriggerSpec("collect", "failure")),
        "off": job("off", TriggerSpec("collect", "always"), enabled=False),
    }
    ok = triggers.starts(jobs, [("collect", 7, "succeeded")])
    assert [(s.job, s.upstream_run) for s in ok] == [("publish", 7)]
    assert ok[0].params == {triggers.UPSTREAM_KEY: 7}
    assert ok[0].message == "started after run 7 of collect succeeded (trigger on: success)"
    assert [s.job for s in triggers.starts(jobs, [("collect", 8, "timed_out")])] == ["publish", "alarm"]
    assert triggers.starts(jobs, [("collect", 9, "cancelled")]) == []
    assert triggers.upstream_of('{"_upstream_run": 7, "limit": 3}') == 7
    assert triggers.user_params({"_upstream_run": 7, "limit": 3}) == {"limit": 3}
