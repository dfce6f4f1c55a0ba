"""The spawner process (corral/spawner.py) spoken to through its own protocol,
as corral up speaks it: real processes, real sockets."""

from __future__ import annotations

import marshal
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest

import corral
from corral import executor
from corral.spec import JobSpec, Settings
from corral.store import open_store
from corral.store import tables as t
from corral.worker import Worker, exit_path_for, handover_dir_for

SPAWNER = str(Path(corral.__file__).with_name("spawner.py"))
FRAME = struct.Struct("!I")


def _exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the spawner closed the socket"
        data += chunk
    return data


class Spawner:
    def __init__(self, lock: Path | None = None) -> None:
        self.requests, theirs = socket.socketpair()
        self.notices, their_notices = socket.socketpair()
        argv = [sys.executable, "-I", "-S", SPAWNER, str(theirs.fileno()), str(their_notices.fileno())]
        self.proc = subprocess.Popen(
            argv + ([str(lock)] if lock else []),
            pass_fds=(theirs.fileno(), their_notices.fileno()),
            start_new_session=True,
        )
        theirs.close()
        their_notices.close()
        self.requests.settimeout(10)
        self.notices.settimeout(10)
        assert self.reply()[0] == "ready"

    def reply(self) -> Any:
        return marshal.loads(_exact(self.requests, FRAME.unpack(_exact(self.requests, FRAME.size))[0]))

    def notice(self) -> Any:
        return marshal.loads(_exact(self.notices, FRAME.unpack(_exact(self.notices, FRAME.size))[0]))

    def ask(self, *message: Any) -> Any:
        data = marshal.dumps(message)
        self.requests.sendall(FRAME.pack(len(data)) + data)
        return self.reply()

    def spawn(self, argv: list[str], folder: Path, key: int = 1) -> int:
        kind, items = self.ask("spawn", [
            (key, argv[0], argv, dict(os.environ), str(folder), str(folder / f"{key}.log"), str(folder / f"{key}.exit"))
        ])
        assert kind == "spawned"
        _, pid, _wall, _mono, error, text, watched = items[0]
        assert pid and error is None and watched, text
        return pid

    def stop(self) -> None:
        """End of a test that may have left the spawner stopped (SIGSTOP) or running."""
        self.requests.close()
        self.notices.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def hang_up(self) -> None:
        """What a kill -9 of corral up does to the spawner's sockets."""
        self.requests.close()
        self.proc.wait(timeout=10)
        self.notices.close()


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    s = Spawner()
    yield s
    s.stop()


def test_a_job_that_leaves_nothing_behind_is_reaped_at_once_and_its_end_told(spawner: Spawner, tmp_path: Path) -> None:
    before_wall, before_mono = time.time(), time.monotonic()
    pid = spawner.spawn(["/bin/sh", "-c", "exit 7"], tmp_path)
    kind, items = spawner.notice()
    after_wall, after_mono = time.time(), time.monotonic()
    assert kind == "ended"
    assert [(p, code, sig) for p, code, sig, *_ in items] == [(pid, 7, None)]
    # When it ended, by the spawner's clocks: the main process may read the notice much later.
    wall, mono = items[0][6:8]
    assert before_wall <= wall <= after_wall and before_mono <= mono <= after_mono
    assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != spawner.proc.pid  # reaped
    # Not recorded by anyone: written down when the main process goes away.
    assert not (tmp_path / "1.exit").exists()
    spawner.hang_up()
    assert (tmp_path / "1.exit").read_text() == "7\n"


def test_a_status_the_main_process_recorded_gets_no_exit_file(spawner: Spawner, tmp_path: Path) -> None:
    spawner.spawn(["/bin/sh", "-c", "kill -TERM $$"], tmp_path, key=1)
    kind, items = spawner.notice()
    assert kind == "ended" and items[0][1:3] == (None, 15)
    spawner.spawn(["/bin/sh", "-c", "exit 0"], tmp_path, key=2)
    assert spawner.notice()[0] == "ended"
    # The next request says the first status is in the store; the second is not.
    assert spawner.ask("spawn", [], [str(tmp_path / "1.exit")]) == ("spawned", [])
    spawner.hang_up()
    assert not (tmp_path / "1.exit").exists()
    assert (tmp_path / "2.exit").read_text() == "0\n"


def test_a_job_that_left_a_process_behind_is_held_until_the_main_process_asks(
    spawner: Spawner, tmp_path: Path
) -> None:
    pid = spawner.spawn(["/bin/sh", "-c", "sleep 30 & exit 3"], tmp_path)
    assert spawner.notice() == ("held", [pid])
    # Still a zombie: its process group id cannot be reused while the
    # leftover (now the spawner's child) is dealt with.
    assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    deadline = time.monotonic() + 10
    leftovers = [p for p in psutil.Process(spawner.proc.pid).children() if p.pid != pid]
    assert len(leftovers) == 1
    while leftovers[0].cmdline() != ["sleep", "30"]:  # the shell's fork has not exec'd sleep yet
        assert time.monotonic() < deadline
        time.sleep(0.01)
    leftovers[0].kill()
    while leftovers[0].status() != psutil.STATUS_ZOMBIE:  # ended; the spawner reaps it with the job
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kind, items = spawner.ask("reap", [pid])
    assert kind == "reaped" and [(p, code, sig) for p, code, sig, *_ in items] == [(pid, 3, None)]
    assert not psutil.pid_exists(pid)
    while psutil.Process(spawner.proc.pid).children():  # the leftover is reaped right after
        assert time.monotonic() < deadline
        time.sleep(0.01)
    spawner.hang_up()


def test_the_spawner_leaves_when_the_main_process_is_gone_and_its_jobs_have_ended(
    spawner: Spawner, tmp_path: Path
) -> None:
    spawner.spawn(["/bin/sh", "-c", "sleep 0.5; exit 4"], tmp_path)
    started = time.monotonic()
    spawner.hang_up()  # waits for the spawner to exit
    assert time.monotonic() - started >= 0.4  # it stayed for its job
    assert (tmp_path / "1.exit").read_text() == "4\n"


def _dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def test_a_restart_waits_for_the_statuses_a_dead_corrals_spawner_still_holds(tmp_path: Path) -> None:
    folder = tmp_path / "spawners"
    folder.mkdir()
    lock = folder / executor.handover_lock_name(socket.gethostname(), _dead_pid(), 1)
    spawner = Spawner(lock)
    try:
        spawner.spawn(["/bin/sh", "-c", "exit 5"], tmp_path)
        assert spawner.notice()[0] == "ended"  # reaped at once: no zombie is left to show it ended
        assert not (tmp_path / "1.exit").exists()  # corral was alive: no file
        os.kill(spawner.proc.pid, signal.SIGSTOP)
        spawner.requests.close()  # corral dies; its spawner has not seen it yet
        assert executor.await_spawners(folder, timeout=0.3) == [lock.name]
        assert not (tmp_path / "1.exit").exists()
        os.kill(spawner.proc.pid, signal.SIGCONT)
        assert executor.await_spawners(folder, timeout=10) == []
        assert executor.read_exit_file(tmp_path / "1.exit") == 5
        assert not lock.exists()
        spawner.proc.wait(timeout=10)
    finally:
        spawner.stop()


def test_the_lock_of_a_live_corral_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "spawners"
    folder.mkdir()
    me = psutil.Process()
    ticks = int(Path(f"/proc/{me.pid}/stat").read_text().rpartition(")")[2].split()[19])
    lock = folder / executor.handover_lock_name(socket.gethostname(), me.pid, ticks)
    spawner = Spawner(lock)
    try:
        assert executor.await_spawners(folder, timeout=5) == []  # a wait on it would end with its name
        assert lock.exists()
    finally:
        spawner.hang_up()
    assert executor.await_spawners(folder, timeout=5) == []  # we are alive: still ours
    assert lock.exists()


def test_recovery_records_the_status_a_dead_corrals_stopped_spawner_still_held(tmp_path: Path) -> None:
    """Worker.recover waits for the handover lock: a run whose process is gone
    and whose exit file is not written yet is not taken for lost."""
    settings = Settings(config_path=tmp_path / "corral.yaml", log_dir=tmp_path / "logs")
    store = open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    node = f"{socket.gethostname()}:{_dead_pid()}"
    now = datetime.now(timezone.utc)
    run_id = store.create_run(job="batch", state=t.PENDING, trigger="manual", scheduled_for=now, now=now)
    assert run_id is not None and store.claim(run_id, node=node, now=now)
    folder = handover_dir_for(settings)
    folder.mkdir(parents=True)
    spawner = Spawner(folder / executor.handover_lock_name(socket.gethostname(), _dead_pid(), 1))
    try:
        exit_path = exit_path_for(settings, "batch", run_id)
        exit_path.parent.mkdir(parents=True)
        kind, items = spawner.ask("spawn", [
            (1, "/bin/sh", ["/bin/sh", "-c", "exit 5"], dict(os.environ), str(tmp_path),
             str(tmp_path / "batch.log"), str(exit_path)),
        ])
        pid = items[0][1]
        assert kind == "spawned" and pid, items
        store.update_run(run_id, now=now, pid=pid, pgid=pid, proc_start=time.time())
        assert spawner.notice()[0] == "ended"  # reaped, its status held in memory
        os.kill(spawner.proc.pid, signal.SIGSTOP)
        spawner.requests.close()  # its corral died
        threading.Timer(0.3, os.kill, (spawner.proc.pid, signal.SIGCONT)).start()
        job = JobSpec(name="batch", command=("/bin/true",), shell=False)
        supervisor = executor.Supervisor(on_exit=lambda outcome: None)  # never started
        Worker(store, supervisor, settings, {"batch": job}, node=f"{socket.gethostname()}:1").recover(now)
        run = store.get_run(run_id)
        assert (run.state, run.exit_code) == (t.FAILED, 5), run.message
        spawner.proc.wait(timeout=10)
    finally:
        spawner.stop()
        store.close()
