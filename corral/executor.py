"""Start job processes and watch them until they end.

The executor knows nothing about the store, schedules or policies. The engine
hands it a :class:`Launch`, persists the :class:`Started` it gets back, and
records the :class:`Outcome` that :class:`Supervisor` reports once per run.

How a run is laid out, and why:

* Every run gets its own session and process group (``posix_spawn`` with
  ``setsid``), so a timeout or a cancel can signal the whole group at once.
* corral does not start jobs itself: a spawner process (:mod:`corral.spawner`)
  does, on request over a socket, and stays their parent. The job process is
  the user's own program (no wrapper around it). The spawner reaps a job only
  when the supervisor asks, after it has dealt with the job's leftovers, and
  writes the job's status to ``exit_path``. If corral dies (even with
  ``kill -9``) the job keeps running and logging, and the spawner stays until
  its last job ends, writing each status to its exit file, where
  :func:`read_exit_file` or a later :class:`Supervisor` that adopts the job
  reads it.
* stdout and stderr go straight to the run's log file, opened by us with
  ``O_APPEND``; corral is not in the data path.
* One background thread waits on a ``selectors`` loop over ``pidfd`` file
  descriptors (they work for processes that are not our children too) plus a
  self-pipe. It sleeps indefinitely when nothing runs and wakes about once a
  second while runs are active, to sample resource use and enforce log caps.

When the main process exits, for whatever reason, nothing it started may
outlive it. Leftovers are found in one scan of /proc: members of the run's
process group or session; processes seen in the run's tree by earlier
samples (which catches children that called ``setsid`` and were reparented);
processes carrying the run's launch token in their environment
(:data:`RUN_TOKEN_VAR`, which catches the same even when no sample saw them);
and all their descendants. They get SIGTERM, and SIGKILL after a short grace.

Exit statuses come from the spawner's ``wait4``: an exit code, or the signal
that killed the job. Exit files (read only after a crash) use the shell's
convention: ``128 + N`` means "killed by signal N".
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import marshal
import re
import secrets
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from corral import errors

log = logging.getLogger(__name__)

DEFAULT_LOG_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_KILL_GRACE = 10.0
SAMPLE_INTERVAL = 1.0
"""Seconds between resource samples and log-cap checks while runs are active."""
ORPHAN_GRACE = 2.0
"""Seconds leftover processes get between SIGTERM and SIGKILL once the main process has exited."""
_MIN_LOG_CAP = 4096

_SPAWNER = str(Path(__file__).with_name("spawner.py"))
LANES = max(1, min(2, os.cpu_count() or 1))
"""Spawner processes: a burst is started on this many cores at once."""
_MIN_SPLIT = 8
"""Fewer launches than this go to one spawner (a round trip each is not worth it)."""
_CHUNK = 8
"""Launches per request: small, so that both spawners start working at once."""
_AHEAD = 4
"""Requests a spawner may have unanswered: enough that it never waits for the
next one, few enough that its answers never fill the socket."""
LANE_IDLE = 60.0
"""Seconds without any run after which the spawners are stopped (started again on the next launch)."""
_MAX_REPORTED = 10000
"""Statuses remembered for :meth:`Supervisor.recorded` at most (as many as a spawner keeps)."""
_EXIT_FILE_WAIT = 2.0
"""How long to wait for an adopted run's exit file while its spawner has not reaped it yet."""
RUN_TOKEN_VAR = "CORRAL_RUN_TOKEN"
"""Set by :meth:`Supervisor.launch` in every child's environment to a random
value unique to that launch. Descendants inherit it, which finds processes
that escaped the run's session and were reparented before any sample saw
them. Run ids alone are not enough: two corral instances on one host (say
staging and production) can both be running their run 42."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_MAX_SIGNAL = 64
_MARKER_RE = re.compile(rb"^\[corral: (\d+) bytes of earlier output were dropped to keep the log under \d+ bytes\]\n")
_NOT_FOUND_RE = re.compile(r"([^:\n]+): (?:command )?not found[ \t]*$", re.MULTILINE)
_NOT_EXECUTABLE_RE = re.compile(r"([^:\n]+): (?:Permission denied|Is a directory|cannot execute)[^\n]*$", re.MULTILINE)


@dataclass(frozen=True)
class Launch:
    run_id: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    """Full environment for the child (the caller adds CORRAL_JOB, CORRAL_RUN_ID, ...).

    :meth:`Supervisor.launch` adds one more, :data:`RUN_TOKEN_VAR`."""
    cwd: str | None
    log_path: Path
    exit_path: Path
    timeout: float | None = None
    """Seconds; None means no limit."""
    kill_grace: float = DEFAULT_KILL_GRACE
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES


@dataclass(frozen=True)
class Started:
    """What the caller must persist to adopt the process after a crash.

    ``pid`` is the wrapper shell's pid; it leads the run's session and process
    group, so ``pgid == pid``. ``start_time`` is psutil's ``create_time()`` of
    that pid, used to tell it apart from a later process reusing the number.
    """

    run_id: int
    pid: int
    pgid: int
    start_time: float
    started_at: datetime


@dataclass(frozen=True)
class Outcome:
    run_id: int
    exit_code: int | None
    """None if killed by a signal or unknown."""
    signal: int | None
    ended_at: datetime
    duration: float | None
    peak_rss: int | None
    """Bytes, whole process tree."""
    cpu_seconds: float | None
    """User + system, whole process tree."""
    log_bytes: int
    log_dropped: int
    stopped_by: str | None
    """"timeout", "cancel", "replace", "shutdown" or None."""
    error: str | None
    """Human text for failures to start ("command not found: foo")."""
    reason: str | None
    """"command_not_found", "not_executable", "cwd_not_found", "spawn_failed" or None."""
    adopted: bool = False
    orphans_killed: int = 0


# --------------------------------------------------------------------------
# Reading /proc
#
# psutil gives no process group or session id, and asking it for ppid, cpu
# and rss of every process costs several file reads per process. One read of
# /proc/<pid>/stat gives all of them, so the per-tick table is built from it.
# Process identity inside this module is (pid, start ticks since boot), which
# is immune to wall-clock steps; psutil's create_time() is only used where the
# API promises it (Started.start_time, adopt, process_alive).
# --------------------------------------------------------------------------


class _Proc(NamedTuple):
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start_ticks: int
    cpu_ticks: int
    """utime + stime + cutime + cstime (cutime/cstime: waited-for children)."""
    rss_pages: int


def _read_proc(pid: int) -> _Proc | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) is in parentheses and may contain anything,
    # including ")" and spaces: split after the last ")".
    _, _, rest = data.rpartition(b")")
    fields = rest.split()
    if len(fields) < 22:
        return None
    try:
        return _Proc(
            pid=pid,
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            state=fields[0].decode("ascii", "replace"),
            start_ticks=int(fields[19]),
            cpu_ticks=int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14]),
            rss_pages=max(0, int(fields[21])),
        )
    except ValueError:
        return None


def _read_environ(pid: int) -> frozenset[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return frozenset(f.read().split(b"\0"))
    except OSError:
        return frozenset()


def _read_cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _env_marker(environ: Iterable[bytes]) -> frozenset[bytes] | None:
    """The environment entry that marks a run's processes, if there is one."""
    prefix = f"{RUN_TOKEN_VAR}=".encode()
    for entry in environ:
        if entry.startswith(prefix) and len(entry) > len(prefix):
            return frozenset([entry])
    return None


def _task_children(pid: int) -> list[int] | None:
    """Children of every thread of ``pid`` ([] if it is gone); None if the kernel cannot tell (no CONFIG_PROC_CHILDREN)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{tid}"):
                return None
            continue
        except OSError:
            continue
        try:
            data = b""
            while chunk := os.read(fd, 65536):
                data += chunk
        except OSError:
            data = b""
        finally:
            os.close(fd)
        found.extend(int(word) for word in data.split())
    return found


class _Table:
    """One snapshot of processes, indexed for tree walks.

    Without ``roots``: every process on the host. With ``roots``: only those
    processes and their descendants. The spawners are child subreapers
    (see :mod:`corral.spawner`), so everything a job leaves behind, even a
    process that called ``setsid`` and lost its parent, stays below the
    job's spawner: the spawners' subtrees hold every process of every run,
    and are usually far smaller than the host's process list."""

    def __init__(self, roots: Iterable[int] | None = None) -> None:
        self.procs: dict[int, _Proc] = {}
        self.children: dict[int, list[int]] = {}
        self.by_group: dict[int, list[int]] = {}
        self._environ: dict[int, frozenset[bytes]] = {}
        if roots is not None and self._walk(roots):
            return
        self.procs.clear()
        for name in os.listdir("/proc"):
            if name.isdigit():
                self._add(_read_proc(int(name)))

    def _add(self, proc: _Proc | None) -> None:
        if proc is None or proc.pid in self.procs:
            return
        self.procs[proc.pid] = proc
        self.children.setdefault(proc.ppid, []).append(proc.pid)
        self.by_group.setdefault(proc.pgid, []).append(proc.pid)
        if proc.sid != proc.pgid:
            self.by_group.setdefault(proc.sid, []).append(proc.pid)

    def _walk(self, roots: Iterable[int]) -> bool:
        """False if the subtrees cannot be listed (then the caller scans everything)."""
        roots = list(roots)
        if not roots or any(_read_proc(pid) is None for pid in roots):
            return False  # a spawner is gone: its orphans went elsewhere
        todo = list(roots)
        for _ in range(3):
            while todo:
                pid = todo.pop()
                if pid in self.procs:
                    continue
                proc = _read_proc(pid)
                if proc is None:
                    continue
                kids = _task_children(pid)
                if kids is None:
                    return False
                self._add(proc)
                todo.extend(kids)
            # A process that ended during the walk handed its children to the
            # spawner after the spawner's list was read: look once more.
            for pid in roots:
                todo.extend(kid for kid in _task_children(pid) or () if kid not in self.procs)
            if not todo:
                break
        return True

    def environ(self, pid: int) -> frozenset[bytes]:
        if pid not in self._environ:
            self._environ[pid] = _read_environ(pid)
        return self._environ[pid]

    def members(
        self,
        root_pid: int,
        root_ticks: int,
        pgid: int,
        known: Mapping[int, int],
        marker: frozenset[bytes] | None = None,
        candidates: Iterable[_Proc] | None = None,
    ) -> dict[int, _Proc]:
        """Live processes that belong to a run, its root excluded.

        A process belongs if it descends from the root, sits in the run's
        process group or session, was seen belonging before (``known``: pid ->
        start ticks, which catches processes that left with ``setsid`` and
        were reparented), or carries the run's environment ``marker``; and
        so do all of its descendants. Nothing older than the root belongs.
        ``candidates``: the only processes that may need the marker to be
        found (default: all).
        """
        me = os.getpid()
        seeds: list[int] = []
        root = self.procs.get(root_pid)
        if root is not None and root.start_ticks == root_ticks:
            seeds.append(root_pid)
        # Once the group's leader is gone and the group is empty, the number
        # can be handed to a new process, which may lead its own session. A
        # live process holding the number with another start time means
        # exactly that: then the group and session ids are not ours any more.
        holder = self.procs.get(pgid)
        if holder is None or holder.start_ticks == root_ticks or pgid != root_pid:
            seeds.extend(self.by_group.get(pgid, ()))
        for pid, ticks in known.items():
            proc = self.procs.get(pid)
            if proc is not None and proc.start_ticks == ticks:
                seeds.append(pid)
        if marker:
            for proc in self.procs.values() if candidates is None else candidates:
                if proc.start_ticks >= root_ticks and proc.state != "Z" and proc.pid not in (root_pid, me):
                    if marker <= self.environ(proc.pid):
                        seeds.append(proc.pid)
        found: dict[int, _Proc] = {}
        seen: set[int] = set()
        while seeds:
            pid = seeds.pop()
            if pid in seen:
                continue
            seen.add(pid)
            proc = self.procs.get(pid)
            if proc is None or proc.start_ticks < root_ticks or pid == me:
                continue
            if pid != root_pid and proc.state != "Z":
                found[pid] = proc
            seeds.extend(self.children.get(pid, ()))
        return found


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def decode_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a shell-style status (see the module docstring)."""
    if 128 < status <= 128 + _MAX_SIGNAL:
        return None, status - 128
    return status, None


def _pidfd_exited(pidfd: int) -> bool:
    if pidfd < 0:  # never had one: the process was gone before it could be opened
        return True
    ready, _, _ = select.select([pidfd], [], [], 0)
    return bool(ready)


def _send(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _log_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _log_tail(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, _log_size(path) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _note_in_log(path: Path, text: str) -> None:
    """Best effort: leave a line for whoever reads the run's log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        os.write(fd, f"[corral: {text}]\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def _existing_marker(path: Path) -> tuple[int, int]:
    """(bytes already dropped, marker length) from a log capped by an earlier corral."""
    try:
        with open(path, "rb") as f:
            head = f.readline(512)
    except OSError:
        return 0, 0
    match = _MARKER_RE.match(head)
    if match is None:
        return 0, 0
    return int(match.group(1)), len(head)


def _cap_log(path: Path, cap: int, dropped: int, marker_len: int) -> tuple[int, int] | None:
    """Keep the last half of the cap if the log is over ``cap`` bytes.

    Returns (total bytes dropped, new marker length), or None if nothing was
    done. The kept part starts at a line boundary when one is near, and the
    file then begins with a marker line saying how much was dropped.

    The job keeps appending (O_APPEND) while this runs. The kept tail is moved
    to the front in place and the copy catches up with anything appended
    meanwhile before truncating, so the only bytes that can be lost are those
    written between the last size check and the truncate (microseconds).
    """
    cap = max(cap, _MIN_LOG_CAP)
    keep = cap // 2
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size <= cap:
            return None
        start = size - keep
        head = os.pread(fd, min(keep, 65536), start)
        newline = head.find(b"\n")
        if newline != -1 and newline + 1 < len(head):
            start += newline + 1
        total = dropped + max(0, start - marker_len)
        marker = f"[corral: {total} bytes of earlier output were dropped to keep the log under {cap} bytes]\n".encode()
        os.pwrite(fd, marker, 0)
        src, dst = start, len(marker)
        for _ in range(16):
            end = os.fstat(fd).st_size
            while src < end:
                chunk = os.pread(fd, min(1 << 20, end - src), src)
                if not chunk:
                    break
                os.pwrite(fd, chunk, dst)
                src += len(chunk)
                dst += len(chunk)
            if os.fstat(fd).st_size == end:
                break
        os.ftruncate(fd, dst)
        return total, len(marker)
    finally:
        os.close(fd)


class _Failure(NamedTuple):
    reason: str
    error: str


def _check_command(argv: tuple[str, ...], env: Mapping[str, str], cwd: str) -> _Failure | str:
    """The absolute path of argv[0] as the job would find it, or why not.

    The wrapper then runs that path, so a name like ``echo`` runs the program
    from PATH, not the shell's builtin of the same name.
    """
    if not argv or not argv[0]:
        return _Failure("spawn_failed", "empty command")
    name = argv[0]
    if "/" in name:
        path = os.path.join(cwd, name)
        if not os.path.exists(path):
            return _Failure("command_not_found", f"command not found: {name}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return _Failure("not_executable", f"not executable: {name}")
        return os.path.abspath(path)
    dirs = [os.path.join(cwd, d) for d in env.get("PATH", os.defpath).split(os.pathsep)]
    found = shutil.which(name, path=os.pathsep.join(dirs))
    if found is not None:
        return os.path.abspath(found)
    if any(os.path.exists(os.path.join(d, name)) for d in dirs):
        return _Failure("not_executable", f"not executable: {name}")
    return _Failure("command_not_found", f"command not found: {name}")


def _failure_from_status(exit_code: int | None, log_path: Path, argv0: str) -> _Failure | None:
    """Shell statuses 127/126 mean the command could not be run; name it from the log if we can."""
    if exit_code == 127:
        matches = _NOT_FOUND_RE.findall(_log_tail(log_path))
        name = matches[-1].strip() if matches else argv0
        return _Failure("command_not_found", f"command not found: {name}")
    if exit_code == 126:
        matches = _NOT_EXECUTABLE_RE.findall(_log_tail(log_path))
        name = matches[-1].strip() if matches else argv0
        return _Failure("not_executable", f"not executable: {name}")
    return None


# --------------------------------------------------------------------------
# Public helpers for recovery
# --------------------------------------------------------------------------


def read_exit_file(exit_path: Path) -> int | None:
    """The status a spawner recorded for a finished run (shell style: 128 + N for
    signal N), or None if there is none."""
    try:
        text = Path(exit_path).read_text(encoding="ascii").strip()
        return int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


HANDOVER_WAIT = 10.0
"""Seconds a restarted corral waits at most for a dead one's spawners to write their exit files."""


def _own_start_ticks() -> int:
    proc = _read_proc(os.getpid())
    return proc.start_ticks if proc is not None else 0


def handover_lock_name(host: str, pid: int, start_ticks: int) -> str:
    return f"{host}-{pid}-{start_ticks}.lock"


def await_spawners(folder: Path, timeout: float = HANDOVER_WAIT) -> list[str]:
    """Wait until the spawners of every corral process on this host that is
    gone have written the exit statuses they held (see :mod:`corral.spawner`).

    A spawner reaps a job that ended while corral was alive and keeps its
    status in memory until corral says it is recorded; if corral dies first,
    the spawner writes it to the run's exit file when it sees corral go.
    Until then "the process is gone and there is no exit file" proves
    nothing. Each spawner holds a shared lock on its corral process's file in
    ``folder`` until its exit files are written: this takes each such lock
    whose owner is gone, then removes the file. Files of live corral
    processes (other workers sharing the folder) are left alone.

    Returns the names of lock files still held after ``timeout`` seconds (a
    spawner that is stopped or stuck): their statuses may come too late."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".lock")]
    except OSError:
        return []
    host = socket.gethostname()
    waiting: list[tuple[str, int]] = []
    for name in names:
        parts = name[: -len(".lock")].rsplit("-", 2)  # see handover_lock_name; a host name may hold "-"
        if len(parts) != 3 or parts[0] != host or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        pid, ticks = int(parts[1]), int(parts[2])
        proc = _read_proc(pid)
        if proc is not None and proc.start_ticks == ticks and proc.state != "Z":
            continue  # its corral is alive
        try:
            fd = os.open(folder / name, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        waiting.append((name, fd))
    deadline = time.monotonic() + timeout
    stuck: list[str] = []
    try:
        while waiting:
            left: list[tuple[str, int]] = []
            for name, fd in waiting:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    left.append((name, fd))
                    continue
                except OSError:
                    pass
                with contextlib.suppress(OSError):
                    os.unlink(folder / name)
                os.close(fd)
            waiting = left
            if waiting and time.monotonic() >= deadline:
                stuck = [name for name, _ in waiting]
                break
            if waiting:
                time.sleep(0.01)
    finally:
        for _, fd in waiting:
            os.close(fd)
    return stuck


def _await_exit_file(exit_path: Path, pid: int, start_ticks: int, timeout: float = _EXIT_FILE_WAIT) -> int | None:
    """The exit file of a job that has ended, waiting while its spawner has not reaped it yet.

    A spawner writes the file before it reaps the job, so once the job's
    zombie is gone the file is there, or never will be."""
    deadline = time.monotonic() + timeout
    while True:
        status = read_exit_file(exit_path)
        if status is not None:
            return status
        proc = _read_proc(pid)
        if proc is None or proc.start_ticks != start_ticks or proc.state != "Z" or time.monotonic() >= deadline:
            return read_exit_file(exit_path)
        time.sleep(0.005)


def exit_status(exit_path: Path, pid: int | None, start_time: float | None) -> int | None:
    """The recorded status of a run whose process has ended (see :func:`read_exit_file`).

    If the process is still a zombie its spawner is about to write the file:
    this waits for that (up to a couple of seconds)."""
    if pid is None or start_time is None:
        return read_exit_file(exit_path)
    ticks = _start_ticks(pid, start_time)
    if ticks is None:
        return read_exit_file(exit_path)
    return _await_exit_file(exit_path, pid, ticks)


def process_alive(pid: int, start_time: float) -> bool:
    """True if ``pid`` is still the process that started at ``start_time`` and has not exited."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - start_time) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_boot_time_cache: tuple[float, float] = (-1e9, 0.0)  # (monotonic when read, boot time)


def _create_time(start_ticks: int) -> float:
    """psutil's create_time() for a process that started ``start_ticks`` after boot.

    Same formula as psutil on Linux, without reading /proc/stat for the boot
    time on every launch (it is a large file; 200 launches paid ~30 ms for
    it). The boot time in wall-clock terms moves only when the clock is
    stepped, so a one-second cache agrees with psutil.
    """
    global _boot_time_cache
    read_at, boot = _boot_time_cache
    now = time.monotonic()
    if now - read_at > 1.0:
        boot = psutil.boot_time()
        _boot_time_cache = (now, boot)
    return float(start_ticks) / _CLOCK_TICKS + boot


def _start_ticks(pid: int, start_time: float) -> int | None:
    """Start ticks of ``pid`` if it is the process that started at ``start_time``."""
    try:
        if abs(psutil.Process(pid).create_time() - start_time) > 0.01:
            return None
    except psutil.Error:
        return None
    proc = _read_proc(pid)
    return None if proc is None else proc.start_ticks


def kill_tree(pid: int, pgid: int, start_time: float, grace: float) -> None:
    """Stop a run launched earlier, and everything it left behind; blocks up to ``grace`` + a little.

    SIGTERM to the process (if it is still the same one), its group, session
    and descendants, then SIGKILL to whatever is left after ``grace`` seconds.
    """
    ticks = _start_ticks(pid, start_time)  # also works while the root is a zombie
    verified = ticks is not None
    if ticks is None:
        # The root is gone (or the number was reused); its start ticks are
        # needed to filter candidates, so derive them from the wall clock.
        ticks = max(0, int((start_time - psutil.boot_time()) * _CLOCK_TICKS) - 1)
    table = _Table()
    # Only a root known to be ours may lend its environment token: a reused
    # pid's token would point at someone else's processes.
    marker = _env_marker(table.environ(pid)) if verified else None
    # The root first: once a child dies, a root still alive could exit on
    # its own (its status then an exit code) before its own signal is sent.
    targets: dict[int, _Proc] = {}
    root = table.procs.get(pid)
    if root is not None and root.start_ticks == ticks and root.state != "Z":
        targets[pid] = root
    targets.update(table.members(pid, ticks, pgid, {}, marker))
    pidfds: dict[int, int] = {}
    try:
        for proc in targets.values():
            try:
                fd = os.pidfd_open(proc.pid)
            except OSError:
                continue
            check = _read_proc(proc.pid)
            if check is None or check.start_ticks != proc.start_ticks:
                os.close(fd)
                continue
            pidfds[proc.pid] = fd
            _send(fd, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace)
        with selectors.DefaultSelector() as sel:
            for fd in pidfds.values():
                sel.register(fd, selectors.EVENT_READ)
            alive = dict.fromkeys(pidfds.values())  # ordered: the root first
            while alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(left):
                    sel.unregister(key.fd)
                    alive.pop(key.fd, None)
            for fd in alive:
                _send(fd, signal.SIGKILL)
    finally:
        for fd in pidfds.values():
            os.close(fd)


def kill_marked(markers: Mapping[str, str], grace: float) -> int:
    """Stop every process whose environment holds all of ``markers`` (``NAME=value``).

    For recovery of a run that was claimed and spawned but whose pid never
    reached the store: its processes still carry the run's environment.
    Returns how many matching processes were found.
    """
    wanted = {f"{k}={v}".encode() for k, v in markers.items()}
    found = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == os.getpid() or not wanted <= _read_environ(pid):
            continue
        try:
            proc = psutil.Process(pid)
            start, pgid = proc.create_time(), os.getpgid(pid)
        except (psutil.Error, OSError):
            continue
        found += 1
        kill_tree(pid, pgid, start, grace)
    return found


# --------------------------------------------------------------------------
# Spawner lanes
# --------------------------------------------------------------------------

_FRAME = struct.Struct("!I")


class _Reaped(NamedTuple):
    exit_code: int | None
    signal: int | None
    cpu: float
    maxrss: int
    """KiB; 0 when the figure is not the job's own (see corral.spawner)."""
    ended: tuple[float, float] | None = None
    """Wall and monotonic time at which the spawner saw the job end (its "ended" notice)."""


class _Lane:
    """One spawner process (:mod:`corral.spawner`) and the socket to it.

    Requests are synchronous round trips under a lock: the main thread sends
    launches, the supervisor thread asks for reaps. Notices of ended jobs
    come on a second socket, which only the supervisor thread reads."""

    def __init__(self, lock_path: Path | None = None) -> None:
        _reap_lingering()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        notices, their_notices = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-I", "-S", _SPAWNER, str(theirs.fileno()), str(their_notices.fileno())]
        if lock_path is not None:
            argv.append(str(lock_path))
        try:
            self.proc = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(), their_notices.fileno()),
                # Not corral's stdout or stderr: the spawner may outlive corral,
                # and must not keep a pipe that corral's caller reads open.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            notices.close()
            raise errors.ExecError(f"cannot start the spawner process ({sys.executable}): {exc.strerror}") from exc
        finally:
            theirs.close()
            their_notices.close()
        self.sock = ours
        self.closed = False
        self.notices = notices
        self.notices.setblocking(False)
        self._inbox = bytearray()
        self.recorded: list[str] = []
        """Exit paths of runs whose status is in the store, for the next request to tell."""
        self.lock = threading.Lock()
        self.broken = False
        self._greeted = False
        self.subreaper = False
        """Whether the spawner became a child subreaper; read with its first message."""

    def take_recorded(self) -> list[str]:
        taken, self.recorded = self.recorded, []
        return taken

    def send(self, message: object) -> None:
        data = marshal.dumps(message)
        self.sock.sendall(_FRAME.pack(len(data)) + data)

    def receive(self) -> object:
        if not self._greeted:
            self._greeted = True
            _, self.subreaper = self._frame()  # type: ignore[misc]
        return self._frame()

    def _frame(self) -> object:
        header = self._exact(_FRAME.size)
        return marshal.loads(self._exact(_FRAME.unpack(header)[0]))

    @property
    def tree_root(self) -> int | None:
        """The pid below which all processes of this lane's runs are (None if unknown)."""
        return self.proc.pid if self.subreaper and not self.broken else None

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the spawner process ended")
            buf += chunk
        return bytes(buf)

    def reap(self, pids: list[int]) -> dict[int, _Reaped]:
        """Reap children that have exited; {} for every pid if the spawner is gone."""
        with self.lock:
            if self.broken:
                return {}
            try:
                self.send(("reap", pids, self.take_recorded()))
                kind, items = self.receive()  # type: ignore[misc]
            except (OSError, ConnectionError, EOFError, ValueError) as exc:
                self._fail(exc)
                return {}
        return {pid: _Reaped(code, sig, user + system, maxrss) for pid, code, sig, user, system, maxrss, *_ in items}

    def read_notices(self) -> list[tuple[str, list[Any]]] | None:
        """The notices that have arrived (see :mod:`corral.spawner`); None once
        the spawner is gone. Supervisor thread only."""
        try:
            while True:
                chunk = self.notices.recv(65536)
                if not chunk:
                    return None
                self._inbox += chunk
        except BlockingIOError:
            pass
        except OSError:
            return None
        out: list[tuple[str, list[Any]]] = []
        while len(self._inbox) >= _FRAME.size:
            size = _FRAME.unpack_from(self._inbox)[0]
            if len(self._inbox) < _FRAME.size + size:
                break
            out.append(marshal.loads(bytes(self._inbox[_FRAME.size:_FRAME.size + size])))
            del self._inbox[:_FRAME.size + size]
        return out

    def _fail(self, exc: BaseException) -> None:
        if not self.broken:
            log.error("lost the spawner process (pid %s): %s", self.proc.pid, exc)
        self.broken = True

    def close(self, *, idle: bool) -> None:
        """Let the spawner go: it reaps what still runs under it as that ends, then exits.

        ``idle``: nothing runs under it, so it exits at once and is waited for.
        (The notice socket is the supervisor thread's to close, once the
        spawner has ended.)"""
        self.closed = True
        self.sock.close()
        if idle:
            try:
                self.proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck spawner
                log.warning("spawner process %s did not exit", self.proc.pid)
        _lingering.append(self.proc)


_lingering: list[subprocess.Popen[bytes]] = []
"""Closed spawners still reaping jobs; reaped by :func:`_reap_lingering` once they exit."""


def _reap_lingering() -> None:
    _lingering[:] = [proc for proc in _lingering if proc.poll() is None]


# --------------------------------------------------------------------------
# The supervisor
# --------------------------------------------------------------------------


class _Run:
    """Mutable bookkeeping for one supervised run (supervisor thread + lock)."""

    def __init__(
        self,
        *,
        run_id: int,
        pid: int,
        pgid: int,
        start_time: float,
        start_ticks: int,
        pidfd: int,
        exit_path: Path,
        log_path: Path,
        timeout_at: float | None,
        kill_grace: float,
        log_max_bytes: int,
        adopted: bool,
        marker: frozenset[bytes] | None,
        argv0: str,
        started_mono: float,
        lane: _Lane | None = None,
    ) -> None:
        self.run_id = run_id
        self.lane = lane
        """The spawner that is this run's parent; None for an adopted run."""
        self.watched = False
        """Whether its spawner sends a notice when it ends (else its pidfd is watched here)."""
        self.tree = lane.tree_root if lane is not None else None
        """A pid whose subtree holds every process of this run, if one is known (see _Table)."""
        self.pid = pid
        self.pgid = pgid
        self.start_time = start_time
        self.start_ticks = start_ticks
        self.pidfd = pidfd
        self.exit_path = exit_path
        self.log_path = log_path
        self.timeout_at = timeout_at
        self.kill_grace = kill_grace
        self.log_max_bytes = log_max_bytes
        self.adopted = adopted
        self.marker = marker
        self.argv0 = argv0
        self.started_mono = started_mono
        self.phase = "running"  # -> "cleanup" once the main process has exited
        self.stopped_by: str | None = None
        self.kill_at: float | None = None
        self.killed = False
        self.last_signal: int | None = None
        self.known: dict[int, int] = {}
        self.peak_rss = 0
        self.cpu_ticks = 0
        self.log_dropped = 0
        self.marker_len = 0
        # Filled in when the main process exits.
        self.ended_at: datetime | None = None
        self.duration: float | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.rusage_rss = 0
        self.rusage_cpu = 0.0
        self.orphans: dict[int, tuple[int, int]] = {}  # pid -> (start ticks, pidfd)
        self.orphan_cpu_ticks = 0
        self.orphans_killed = 0
        self.orphan_kill_at: float | None = None


class _Spawned(NamedTuple):
    launch: Launch
    lane: _Lane
    pid: int
    pidfd: int
    token: str
    started_mono: float
    started_at: datetime
    watched: bool


class _Request(NamedTuple):
    """A launch that passed the checks, ready for a spawner."""

    launch: Launch
    path: str
    cwd: str
    env: dict[str, str]
    token: str


class Supervisor:
    """Starts runs and reports each one's :class:`Outcome` to ``on_exit``.

    ``on_exit`` is called from the supervisor thread exactly once for every run
    that was started (or adopted) and has ended; a run that could not be
    started is answered by :meth:`launch` returning its Outcome directly, and
    ``on_exit`` is not called for it. An exception in ``on_exit`` is logged
    and does not stop the supervisor.
    """

    def __init__(
        self,
        on_exit: Callable[[Outcome], None],
        *,
        orphan_grace: float = ORPHAN_GRACE,
        handover_dir: Path | None = None,
    ) -> None:
        """``handover_dir``: where this process's spawners hold the lock that
        :func:`await_spawners` waits on after a crash (None: no lock, for
        supervisors whose runs nobody recovers)."""
        self._on_exit = on_exit
        self._handover_dir = handover_dir
        self._lock_path: Path | None = None
        self._orphan_grace = orphan_grace
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._runs: dict[int, _Run] = {}
        self._pending: list[_Run] = []
        self._delivering = 0
        self._closed = False
        self._wake_pending = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._next_sample: float | None = None
        self._spawning: set[int] = set()
        self._home = os.getcwd()
        self._lanes_lock = threading.Lock()
        self._lanes: list[_Lane] = []
        self._lanes_used = 0.0
        self._unwatched: list[tuple[_Lane, int]] = []
        self._discard: set[tuple[_Lane, int]] = set()
        """(lane, pid) of jobs killed right after their start; their notices are ignored."""
        self._new_lanes: list[_Lane] = []
        self._reported: dict[int, tuple[_Lane, str]] = {}
        """Run id -> (its spawner, its exit path) for the statuses a spawner
        reported that the caller has not yet said it recorded (see recorded)."""
        # Supervisor thread only:
        self._watched_lanes: set[_Lane] = set()
        """Lanes whose notice socket is in the selector (closed once their spawner ends)."""
        self._awaiting: dict[tuple[_Lane, int], _Run] = {}
        """(lane, pid) -> a running run whose end its spawner will tell."""
        self._early: dict[tuple[_Lane, int], tuple[str, Any]] = {}
        """Notices that came before the run they are about was registered.
        (Keys hold the lane itself, not its id: a closed lane's id can be reused.)"""
        self._noticed: list[tuple[_Run, _Reaped | None]] = []
        """Runs whose spawner told their end (a status, or None: held for a leftover check)."""

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise errors.ExecError("this supervisor is closed; create a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="corral-supervisor", daemon=True)
        self._thread.start()

    def _handover_lock(self) -> Path | None:
        """The lock file this process's spawners hold (created on first use). Under _lanes_lock."""
        if self._lock_path is None and self._handover_dir is not None:
            try:
                self._handover_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("spawners run without a handover lock: cannot create %s: %s", self._handover_dir, exc.strerror)
                self._handover_dir = None
                return None
            self._lock_path = self._handover_dir / handover_lock_name(socket.gethostname(), os.getpid(), _own_start_ticks())
        return self._lock_path

    def close(self) -> None:
        """Stop watching. Running jobs are NOT killed: a later Supervisor can adopt them.

        Runs whose main process has already exited are finished first (their
        leftover processes are killed) and reported to ``on_exit``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        elif thread is None:
            self._shutdown()

    # -- commands ----------------------------------------------------------

    def launch(self, launch: Launch) -> Started | Outcome:
        """Start a run. Returns an Outcome instead if it could not be started; never raises for a bad command."""
        return self.launch_many([launch])[0]

    def launch_many(self, launches: Sequence[Launch]) -> list[Started | Outcome]:
        """Start several runs at once, as fast as the machine allows.

        A burst is split over the spawner lanes, which start their shares on
        separate cores; each lane gets its share in one request."""
        ids = [launch.run_id for launch in launches]
        with self._lock:
            if self._closed:
                raise errors.ExecError("this supervisor is closed; create a new one")
            busy = [i for i in ids if i in self._runs or i in self._spawning]
            if busy or len(set(ids)) != len(ids):
                raise errors.Conflict(f"run {busy[0] if busy else ids[0]} is already supervised")
            self._spawning.update(ids)
        try:
            results: list[Started | Outcome | None] = [None] * len(launches)
            checked: list[tuple[int, _Request]] = []
            seen: dict[tuple[str | None, str, str | None], tuple[str, str] | _Failure] = {}
            for index, launch in enumerate(launches):
                request = self._check(launch, seen)
                if isinstance(request, Outcome):
                    results[index] = request
                else:
                    checked.append((index, request))
            for index, spawned in self._spawn(checked):
                results[index] = spawned if isinstance(spawned, Outcome) else self._register(spawned)
            return results  # type: ignore[return-value]
        finally:
            with self._lock:
                self._spawning.difference_update(ids)

    def warm(self) -> None:
        """Start the spawner processes now (a burst is due soon), so the burst does not wait for them."""
        try:
            self._lanes_for(_MIN_SPLIT)
        except errors.ExecError as exc:
            log.error("%s", exc)

    def _check(
        self, launch: Launch, seen: dict[tuple[str | None, str, str | None], tuple[str, str] | _Failure]
    ) -> _Request | Outcome:
        """Everything that can be known before starting: the command, the
        folders. ``seen`` keeps the answers within one call of launch_many (a
        burst of one job asks the same question a thousand times)."""
        key = (launch.cwd, launch.argv[0] if launch.argv else "", launch.env.get("PATH"))
        found = seen.get(key)
        if found is None:
            found = seen[key] = self._resolve(launch)
        if isinstance(found, _Failure):
            return self._not_started(launch, found)
        cwd, path = found
        env = dict(launch.env)
        env[RUN_TOKEN_VAR] = token = secrets.token_hex(8)
        return _Request(launch, path, cwd, env, token)

    def _resolve(self, launch: Launch) -> tuple[str, str] | _Failure:
        """The working directory and the command's absolute path, or why the run cannot start."""
        try:
            cwd = os.path.abspath(launch.cwd) if launch.cwd else self._home
            if launch.cwd and not os.path.isdir(cwd):
                return _Failure("cwd_not_found", f"working directory not found: {launch.cwd}")
            checked = _check_command(launch.argv, launch.env, cwd)
        except (OSError, ValueError) as exc:  # e.g. a NUL byte in a path
            return _Failure("spawn_failed", f"cannot check the command: {exc}")
        return checked if isinstance(checked, _Failure) else (cwd, checked)

    def _lanes_for(self, count: int) -> list[_Lane]:
        with self._lanes_lock:
            for lane in self._lanes:
                if lane.broken:
                    lane.close(idle=False)  # reaped once it has exited
            self._lanes = [lane for lane in self._lanes if not lane.broken]
            want = 1 if count < _MIN_SPLIT else LANES
            added: list[_Lane] = []
            while len(self._lanes) < want:
                added.append(_Lane(self._handover_lock()))
                self._lanes.append(added[-1])
            self._lanes_used = time.monotonic()
            lanes = self._lanes[:want]
        if added:
            # Not under _lanes_lock: _close_idle_lanes takes the two locks the other way round.
            with self._lock:
                self._new_lanes.extend(added)
            self._wake()
        return lanes

    def _spawn(self, requests: list[tuple[int, _Request]]) -> Iterator[tuple[int, _Spawned | Outcome]]:
        """Hand the requests to the spawners in small chunks, round robin, so
        every lane starts its first processes at once, and collect the
        replies as they come, yielding each chunk's: the caller registers
        those runs (and the supervisor can see them end) while the spawners go
        on. At most _AHEAD chunks per lane wait for their answer, so a
        spawner's answers never fill the socket while this thread is still
        sending (which would leave each side waiting for the other)."""
        if not requests:
            return
        try:
            lanes = self._lanes_for(len(requests))
        except errors.ExecError as exc:
            for i, r in requests:
                yield i, self._not_started(r.launch, _Failure("spawn_failed", str(exc)))
            return
        chunks = [(lanes[k % len(lanes)], requests[at:at + _CHUNK]) for k, at in enumerate(range(0, len(requests), _CHUNK))]
        sent: collections.deque[tuple[_Lane, list[tuple[int, _Request]]]] = collections.deque()
        waiting = {id(lane): 0 for lane in lanes}
        for lane in lanes:
            lane.lock.acquire()
        try:
            for lane, chunk in chunks:
                # Each lane answers its chunks in order: take the answers in the order they went out.
                while waiting[id(lane)] >= _AHEAD:
                    yield from self._answers(sent, waiting)
                if not lane.broken:
                    try:
                        lane.send(("spawn", [
                            (i, r.path, [r.path, *r.launch.argv[1:]], r.env, r.cwd,
                             str(r.launch.log_path), str(r.launch.exit_path))
                            for i, r in chunk
                        ], lane.take_recorded()))
                    except OSError as exc:
                        lane._fail(exc)
                sent.append((lane, chunk))
                waiting[id(lane)] += 1
            while sent:
                yield from self._answers(sent, waiting)
        finally:
            for lane in lanes:
                lane.lock.release()
        while self._unwatched:
            lane, pid = self._unwatched.pop()
            lane.reap([pid])

    def _answers(
        self, sent: collections.deque[tuple[_Lane, list[tuple[int, _Request]]]], waiting: dict[int, int]
    ) -> Iterator[tuple[int, _Spawned | Outcome]]:
        """The outcome of each launch of the oldest chunk sent (under its lane's lock)."""
        lane, chunk = sent.popleft()
        waiting[id(lane)] -= 1
        by_index = dict(chunk)
        replies: list[tuple[int, int, float, float, str | None, str | None, bool]] = []
        if not lane.broken:
            try:
                _, replies = lane.receive()  # type: ignore[misc]
            except (OSError, ConnectionError, EOFError, ValueError) as exc:
                lane._fail(exc)
        for index, pid, wall, mono, kind, text, watched in replies:
            request = by_index.pop(index)
            yield index, self._spawned(lane, request, pid, wall, mono, kind, text, watched)
        for index, request in by_index.items():
            failure = _Failure("spawn_failed", "the spawner process ended before starting it")
            yield index, self._not_started(request.launch, failure)

    def _spawned(
        self, lane: _Lane, request: _Request, pid: int, wall: float, mono: float, kind: str | None, text: str | None,
        watched: bool,
    ) -> _Spawned | Outcome:
        launch = request.launch
        if not pid:
            if kind == "cwd":
                failure = _Failure("cwd_not_found", f"working directory not usable: {launch.cwd}: {text}")
            elif kind == "log":
                failure = _Failure("spawn_failed", f"cannot open the log file {launch.log_path}: {text}")
            else:
                failure = _Failure("spawn_failed", f"could not start {launch.argv[0]}: {text}")
            return self._not_started(launch, failure)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError if watched else ():
            # It ended already and its spawner reaped it (it left nothing
            # behind): the spawner's notice says how it ended.
            pidfd = -1
        except OSError as exc:
            # Without a pidfd the run cannot be watched (likely out of file
            # descriptors): undo the start rather than leave it unsupervised.
            # (Not reaped yet, so the pid is still this process; reaped by
            # _spawn once the lane is free.)
            _killpg(pid, signal.SIGKILL)
            self._unwatched.append((lane, pid))
            with self._lock:
                self._discard.add((lane, pid))
            return self._not_started(launch, _Failure("spawn_failed", f"cannot watch the process: {exc.strerror}"))
        started_at = datetime.fromtimestamp(wall, timezone.utc)
        return _Spawned(launch, lane, pid, pidfd, request.token, mono, started_at, watched)

    def _register(self, spawned: _Spawned) -> Started:
        launch, pid, pidfd, token = spawned.launch, spawned.pid, spawned.pidfd, spawned.token
        started_mono, started_at = spawned.started_mono, spawned.started_at
        # The job is not reaped before we ask, so its /proc entry is there.
        proc = _read_proc(pid)
        start_ticks = proc.start_ticks if proc is not None else 0
        start_time = _create_time(start_ticks)
        run = _Run(
            run_id=launch.run_id,
            pid=pid,
            pgid=pid,
            start_time=start_time,
            start_ticks=start_ticks,
            pidfd=pidfd,
            exit_path=launch.exit_path,
            log_path=launch.log_path,
            timeout_at=None if launch.timeout is None else started_mono + launch.timeout,
            kill_grace=launch.kill_grace,
            log_max_bytes=launch.log_max_bytes,
            adopted=False,
            marker=frozenset([f"{RUN_TOKEN_VAR}={token}".encode()]),
            argv0=launch.argv[0],
            started_mono=started_mono,
            lane=spawned.lane,
        )
        run.watched = spawned.watched
        self._add(run)
        return Started(run_id=launch.run_id, pid=pid, pgid=pid, start_time=start_time, started_at=started_at)

    def adopt(
        self,
        run_id: int,
        pid: int,
        start_time: float,
        pgid: int,
        exit_path: Path,
        log_path: Path,
        timeout_at_monotonic: float | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    ) -> bool:
        """Watch a run started by an earlier corral. False if that process is gone; the caller handles it then."""
        with self._lock:
            if self._closed:
                raise errors.ExecError("this supervisor is closed; create a new one")
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing.pid == pid
        if not process_alive(pid, start_time):
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        # The pidfd pins the process: if it is still the one that started at
        # start_time now, it is the one the pidfd watches.
        ticks = _start_ticks(pid, start_time)
        if ticks is None:
            os.close(pidfd)
            return False
        dropped, marker_len = _existing_marker(log_path)
        run = _Run(
            run_id=run_id,
            pid=pid,
            pgid=pgid,
            start_time=start_time,
            start_ticks=ticks,
            pidfd=pidfd,
            exit_path=exit_path,
            log_path=log_path,
            timeout_at=timeout_at_monotonic,
            kill_grace=kill_grace,
            log_max_bytes=log_max_bytes,
            adopted=True,
            marker=_env_marker(_read_environ(pid)),
            argv0="",
            started_mono=time.monotonic() - max(0.0, time.time() - start_time),
        )
        run.log_dropped, run.marker_len = dropped, marker_len
        self._add(run)
        return True

    def stop(self, run_id: int, why: str, grace: float | None = None) -> bool:
        """SIGTERM the run's group now, SIGKILL it after ``grace`` (default: the run's kill_grace).

        ``why`` becomes the Outcome's ``stopped_by`` (the first stop wins).
        False if the run is not supervised or its main process already ended.
        """
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return False
            stopped = self._begin_stop(run, why, grace, time.monotonic())
        self._wake()
        return stopped

    def recorded(self, run_ids: Iterable[int]) -> None:
        """The caller has stored how these runs ended: their spawners need not
        write exit files for them (they do for every status not recorded when
        this process goes away, for the next corral to read)."""
        with self._lock:
            for run_id in run_ids:
                entry = self._reported.pop(run_id, None)
                if entry is not None and not entry[0].closed:
                    entry[0].recorded.append(entry[1])

    def running(self) -> list[int]:
        with self._lock:
            return sorted(self._runs)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no run is supervised and every Outcome has been delivered."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._runs or self._delivering:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    # -- internals: called from any thread ---------------------------------

    def _wake(self) -> None:
        # Under the lock so the descriptor cannot be closed (and its number
        # reused for some other file) between the check and the write.
        # One byte per burst: the thread clears the flag when it drains the
        # pipe, so 200 launches in a row wake it a few times, not 200.
        with self._lock:
            if self._wake_w < 0 or self._wake_pending:
                return
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass

    def _add(self, run: _Run) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            self._pending.append(run)
        self._wake()

    def _not_started(self, launch: Launch, failure: _Failure) -> Outcome:
        _note_in_log(launch.log_path, f"could not start: {failure.error}")
        return Outcome(
            run_id=launch.run_id,
            exit_code=None,
            signal=None,
            ended_at=_utcnow(),
            duration=None,
            peak_rss=None,
            cpu_seconds=None,
            log_bytes=_log_size(launch.log_path),
            log_dropped=0,
            stopped_by=None,
            error=failure.error,
            reason=failure.reason,
        )

    def _begin_stop(self, run: _Run, why: str, grace: float | None, now: float) -> bool:
        """Caller holds the lock."""
        if run.phase != "running":
            return False
        if run.stopped_by is None:
            run.stopped_by = why
        # The job leads its group. Its spawner may reap it as soon as it ends
        # (when it left nothing behind, or for an adopted run, its old
        # spawner always does), after which the group id is free for reuse:
        # so the group is only signalled while the leader is alive. Once it
        # has ended, what is left of the run is stopped by the leftover check.
        if not _pidfd_exited(run.pidfd):
            _killpg(run.pgid, signal.SIGTERM)
            if not run.killed:
                run.last_signal = signal.SIGTERM
        deadline = now + (run.kill_grace if grace is None else max(0.0, grace))
        run.kill_at = deadline if run.kill_at is None else min(run.kill_at, deadline)
        return True

    # -- internals: the supervisor thread ----------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    break
                pending, self._pending = self._pending, []
                new_lanes, self._new_lanes = self._new_lanes, []
                self._wake_pending = False
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for lane in new_lanes:
                self._selector.register(lane.notices, selectors.EVENT_READ, ("lane", lane, 0))
                self._watched_lanes.add(lane)
            for run in pending:
                if run.lane is not None and run.watched:
                    key = (run.lane, run.pid)
                    early = self._early.pop(key, None)
                    if early is not None:
                        self._noticed.append((run, early[1]))
                        continue
                    if not run.lane.broken:
                        self._awaiting[key] = run
                        continue
                if run.pidfd < 0:
                    self._noticed.append((run, None))  # gone, its spawner too: no status to be had
                    continue
                self._selector.register(run.pidfd, selectors.EVENT_READ, ("main", run, run.pid))
                if run.adopted:
                    # Sample right away: the tree is all an adopted run's
                    # figures will ever come from.
                    self._next_sample = time.monotonic()
            try:
                events = self._selector.select(0 if self._noticed else self._wait_time())
            except InterruptedError:  # pragma: no cover - PEP 475 retries this
                continue
            try:
                self._step(events)
            except Exception:  # pragma: no cover - a bug must not stop supervision
                log.exception("corral supervisor step failed")
        self._shutdown()

    def _wait_time(self) -> float | None:
        """Seconds until the next deadline; None (sleep until woken) if nothing runs."""
        with self._lock:
            runs = list(self._runs.values())
            spawning = bool(self._spawning)
        if not runs:
            self._next_sample = None
            if not self._lanes or spawning:
                return None
            # Nothing runs: stop the spawners once they have been idle a while.
            left = self._lanes_used + LANE_IDLE - time.monotonic()
            if left > 0:
                return left
            self._close_idle_lanes()
            return None
        now = time.monotonic()
        if self._next_sample is None:
            self._next_sample = now + SAMPLE_INTERVAL
        deadlines = [self._next_sample]
        for run in runs:
            if run.phase == "running":
                if run.timeout_at is not None and run.stopped_by is None:
                    deadlines.append(run.timeout_at)
                if run.kill_at is not None and not run.killed:
                    deadlines.append(run.kill_at)
            elif run.orphan_kill_at is not None:
                deadlines.append(run.orphan_kill_at)
        return max(0.0, min(deadlines) - now)

    def _step(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        ended: list[_Run] = []
        finished: list[_Run] = []
        for key, _ in events:
            if key.data is None:
                continue  # the wake pipe; drained at the top of the loop
            kind, run, pid = key.data
            if kind == "lane":
                self._read_lane(key.data[1])
            elif kind == "main":
                self._selector.unregister(run.pidfd)
                ended.append(run)
            else:
                self._selector.unregister(key.fd)
                _, fd = run.orphans.pop(pid)
                os.close(fd)
                if not run.orphans and run.phase == "cleanup":
                    finished.append(run)
        now = time.monotonic()
        noticed, self._noticed = self._noticed, []
        held = [run for run, reaped in noticed if reaped is None]
        if held:
            ended.extend(held)
        for run, reaped in noticed:
            if reaped is not None:
                # Its spawner reaped it: it left nothing behind.
                with self._lock:
                    run.phase = "cleanup"
                self._record_exit(run, now, reaped)
                finished.append(run)
        if ended:
            finished.extend(self._main_exited(ended, now))
        finished.extend(self._deadlines(now))
        if self._next_sample is not None and now >= self._next_sample:
            self._next_sample = now + SAMPLE_INTERVAL
            self._sample()
        self._deliver([self._finish(run) for run in dict.fromkeys(finished)])

    def _read_lane(self, lane: _Lane) -> None:
        """Take in a spawner's notices (see :mod:`corral.spawner`)."""
        notices = lane.read_notices()
        if notices is None:
            self._selector.unregister(lane.notices)
            self._watched_lanes.discard(lane)
            lane.notices.close()
            if not lane.closed:
                lane._fail(ConnectionError("the spawner process ended"))
            # Its jobs are no longer anyone's children: watch their pidfds.
            for key, run in list(self._awaiting.items()):
                if run.lane is lane:
                    del self._awaiting[key]
                    if run.pidfd < 0:
                        self._noticed.append((run, None))  # gone, and so is what could tell how it ended
                    else:
                        self._selector.register(run.pidfd, selectors.EVENT_READ, ("main", run, run.pid))
            return
        for kind, items in notices:
            for item in items:
                pid = item[0] if kind == "ended" else item
                reaped = _Reaped(item[1], item[2], item[3] + item[4], item[5], (item[6], item[7])) if kind == "ended" else None
                key = (lane, pid)
                with self._lock:
                    if key in self._discard:
                        self._discard.discard(key)
                        continue
                run = self._awaiting.pop(key, None)
                if run is None:
                    self._early[key] = (kind, reaped)
                else:
                    self._noticed.append((run, reaped))

    def _deadlines(self, now: float) -> list[_Run]:
        finished: list[_Run] = []
        with self._lock:
            runs = list(self._runs.values())
            for run in runs:
                if run.phase != "running":
                    continue
                if run.timeout_at is not None and now >= run.timeout_at and run.stopped_by is None:
                    self._begin_stop(run, "timeout", None, now)
                if run.kill_at is not None and now >= run.kill_at and not run.killed:
                    run.killed = True
                    run.last_signal = signal.SIGKILL
                    if not _pidfd_exited(run.pidfd):
                        _killpg(run.pgid, signal.SIGKILL)
        for run in runs:
            if run.phase == "cleanup" and run.orphan_kill_at is not None and now >= run.orphan_kill_at:
                self._kill_orphans(run)
                finished.append(run)
        return finished

    def _close_idle_lanes(self) -> None:
        with self._lock:
            if self._runs or self._spawning:
                return
            with self._lanes_lock:
                if time.monotonic() < self._lanes_used + LANE_IDLE:
                    return
                lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.close(idle=True)

    def _main_exited(self, runs: list[_Run], now: float) -> list[_Run]:
        """Record how each main process ended and go after what it left behind."""
        # One scan for all of them, taken before our children are reaped: an
        # unreaped leader keeps its group and session ids from being reused.
        roots = self._roots(runs)
        table = _Table(roots)
        escapees = self._escapees(table, roots)
        leftovers = {
            run.run_id: table.members(run.pid, run.start_ticks, run.pgid, run.known, run.marker, escapees)
            for run in runs
        }
        with self._lock:
            for run in runs:
                # Before the pidfd is closed: stop() only signals "running" runs.
                run.phase = "cleanup"
        reaped: dict[int, _Reaped] = {}
        lanes: dict[int, tuple[_Lane, list[int]]] = {}
        for run in runs:
            if run.lane is not None:
                lanes.setdefault(id(run.lane), (run.lane, []))[1].append(run.pid)
        for lane, pids in lanes.values():
            reaped.update(lane.reap(pids))
        finished: list[_Run] = []
        for run in runs:
            self._record_exit(run, now, reaped.get(run.pid) if run.lane is not None else None)
            for proc in leftovers[run.run_id].values():
                try:
                    fd = os.pidfd_open(proc.pid)
                except OSError:
                    continue
                check = _read_proc(proc.pid)
                if check is None or check.start_ticks != proc.start_ticks or check.state == "Z":
                    os.close(fd)
                    continue
                _send(fd, signal.SIGTERM)
                run.orphans[proc.pid] = (proc.start_ticks, fd)
                run.orphan_cpu_ticks += proc.cpu_ticks
                self._selector.register(fd, selectors.EVENT_READ, ("orphan", run, proc.pid))
            run.orphans_killed = len(run.orphans)
            if not run.orphans:
                finished.append(run)
                continue
            deadline = now + self._orphan_grace
            if run.kill_at is not None and not run.killed:
                deadline = min(deadline, max(run.kill_at, now))
            run.orphan_kill_at = deadline
        return finished

    def _record_exit(self, run: _Run, now: float, reaped: _Reaped | None) -> None:
        if reaped is not None and reaped.ended is not None:
            run.ended_at = datetime.fromtimestamp(reaped.ended[0], timezone.utc)
            run.duration = max(0.0, reaped.ended[1] - run.started_mono)
        else:
            run.ended_at = _utcnow()
            run.duration = now - run.started_mono
        if reaped is not None and (reaped.exit_code is not None or reaped.signal is not None):
            run.exit_code, run.signal = reaped.exit_code, reaped.signal
            if run.lane is not None:
                with self._lock:
                    self._reported[run.run_id] = (run.lane, str(run.exit_path))
                    if len(self._reported) > _MAX_REPORTED:  # a caller that never says: forget the oldest
                        del self._reported[next(iter(self._reported))]
            run.rusage_rss = reaped.maxrss * 1024
            run.rusage_cpu = reaped.cpu
        else:
            # Adopted (its old spawner reaps it and writes the exit file), or
            # our spawner is gone (then nothing recorded the status).
            status = _await_exit_file(run.exit_path, run.pid, run.start_ticks) if run.lane is None else None
            if run.adopted:
                run.duration = max(0.0, time.time() - run.start_time)
            if status is not None:
                run.exit_code, run.signal = decode_status(status)
            else:
                # If we sent the last signal, that is the best guess at what ended it.
                run.exit_code, run.signal = None, run.last_signal
        if run.pidfd >= 0:
            os.close(run.pidfd)
        run.pidfd = -1

    def _roots(self, runs: Iterable[_Run]) -> set[int] | None:
        """Subtrees that hold every process of these runs; None: scan the whole host."""
        roots: set[int] = set()
        for run in runs:
            if run.tree is None:
                return None
            roots.add(run.tree)
        return roots

    def _escapees(self, table: _Table, roots: set[int] | None) -> list[_Proc] | None:
        """Processes that only a run's environment marker can tie to it.

        Below a spawner, a process that left its run's tree and session was
        reparented to the spawner, so only the spawner's children that are not
        runs themselves need their environment read; without known subtrees,
        every process may."""
        if roots is None:
            return None
        with self._lock:
            runs = {run.pid for run in self._runs.values()}
        return [proc for proc in table.procs.values() if proc.ppid in roots and proc.pid not in runs]

    def _kill_orphans(self, run: _Run) -> None:
        """The grace is over: SIGKILL every leftover, including any forked since."""
        roots = self._roots([run])
        table = _Table(roots)
        known = {pid: ticks for pid, (ticks, _) in run.orphans.items()}
        known.update(run.known)
        for proc in table.members(run.pid, run.start_ticks, run.pgid, known, run.marker, self._escapees(table, roots)).values():
            if proc.pid in run.orphans:
                continue
            try:
                fd = os.pidfd_open(proc.pid)
            except OSError:
                continue
            check = _read_proc(proc.pid)
            if check is not None and check.start_ticks == proc.start_ticks:
                _send(fd, signal.SIGKILL)
                run.orphans_killed += 1
            os.close(fd)
        for pid, (_, fd) in list(run.orphans.items()):
            _send(fd, signal.SIGKILL)
            self._selector.unregister(fd)
            os.close(fd)
        run.orphans.clear()

    def _sample(self) -> None:
        """Whole-tree RSS and CPU of every running run, and the log caps."""
        with self._lock:
            runs = [run for run in self._runs.values() if run.phase == "running"]
        if not runs:
            return
        table = _Table(self._roots(runs))
        for run in runs:
            members = table.members(run.pid, run.start_ticks, run.pgid, run.known)
            tree = list(members.values())
            root = table.procs.get(run.pid)
            if root is not None and root.start_ticks == run.start_ticks:
                tree.append(root)
            run.known = {proc.pid: proc.start_ticks for proc in members.values()}
            run.peak_rss = max(run.peak_rss, sum(proc.rss_pages for proc in tree) * _PAGE_SIZE)
            run.cpu_ticks = max(run.cpu_ticks, sum(proc.cpu_ticks for proc in tree))
            self._enforce_cap(run)

    def _enforce_cap(self, run: _Run) -> int:
        """Cap the run's log if it is over its limit; returns the log's size."""
        size = _log_size(run.log_path)
        if size <= max(run.log_max_bytes, _MIN_LOG_CAP):
            return size
        try:
            capped = _cap_log(run.log_path, run.log_max_bytes, run.log_dropped, run.marker_len)
        except OSError as exc:
            log.warning("cannot cap the log of run %s at %s: %s", run.run_id, run.log_path, exc)
            return size
        if capped is not None:
            run.log_dropped, run.marker_len = capped
        return _log_size(run.log_path)

    def _finish(self, run: _Run) -> Outcome:
        log_bytes = self._enforce_cap(run)
        failure = _failure_from_status(run.exit_code, run.log_path, run.argv0 or "the command")
        sampled_cpu = run.cpu_ticks / _CLOCK_TICKS
        orphan_cpu = run.orphan_cpu_ticks / _CLOCK_TICKS
        if run.adopted:
            # No rusage for a process that is not our child: the samples
            # (at most one interval stale) are all there is.
            peak: int | None = run.peak_rss or None
            cpu: float | None = max(sampled_cpu, orphan_cpu) if run.cpu_ticks else None
        else:
            # None rather than a wrong figure: a run too short to be sampled
            # whose peak stayed below corral's own (see _record_exit).
            peak = max(run.peak_rss, run.rusage_rss) or None
            cpu = max(sampled_cpu, run.rusage_cpu + orphan_cpu)
        return Outcome(
            run_id=run.run_id,
            exit_code=run.exit_code,
            signal=run.signal,
            ended_at=run.ended_at or _utcnow(),
            duration=run.duration,
            peak_rss=peak,
            cpu_seconds=cpu,
            log_bytes=log_bytes,
            log_dropped=run.log_dropped,
            stopped_by=run.stopped_by,
            error=failure.error if failure else None,
            reason=failure.reason if failure else None,
            adopted=run.adopted,
            orphans_killed=run.orphans_killed,
        )

    def _deliver(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        with self._lock:
            for outcome in outcomes:
                self._runs.pop(outcome.run_id, None)
            self._delivering += 1
        try:
            for outcome in outcomes:
                try:
                    self._on_exit(outcome)
                except Exception:
                    log.exception("on_exit failed for run %s", outcome.run_id)
        finally:
            with self._lock:
                self._delivering -= 1
                self._idle.notify_all()

    def _shutdown(self) -> None:
        """End of the thread: finish runs already in cleanup, let the rest go on unwatched."""
        with self._lock:
            runs = list(self._runs.values())
        cleanup = [run for run in runs if run.phase == "cleanup"]
        for run in cleanup:
            self._kill_orphans(run)
        self._deliver([self._finish(run) for run in cleanup])
        with self._lock:
            for run in runs:
                if run.phase == "running" and run.pidfd >= 0:
                    os.close(run.pidfd)
                    run.pidfd = -1
            running = {id(run.lane) for run in runs if run.phase == "running"}
            self._runs.clear()
            self._pending.clear()
            self._idle.notify_all()
            self._selector.close()
            for lane in [*self._watched_lanes, *self._new_lanes]:
                lane.notices.close()
            self._watched_lanes.clear()
            self._new_lanes.clear()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        with self._lanes_lock:
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            # Jobs still running stay with their spawner, which records their
            # exit files; a later Supervisor adopts them.
            lane.close(idle=id(lane) not in running)
