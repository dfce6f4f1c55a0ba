"""Start job processes and watch them until they end.

The executor knows nothing about the store, schedules or policies. The engine
hands it a :class:`Launch`, persists the :class:`Started` it gets back, and
records the :class:`Outcome` that :class:`Supervisor` reports once per run.

How a run is laid out, and why:

* Every run gets its own session and process group (``posix_spawn`` with
  ``setsid``), so a timeout or a cancel can signal the whole group at once.
* The process corral spawns is a tiny ``/bin/sh`` wrapper (:data:`_WRAPPER`).
  It runs the job's argv (passed as positional parameters, never pasted into
  the script), then writes the exit status to ``<exit_path>.tmp`` and renames
  it to ``exit_path``. If corral dies (even with ``kill -9``) the job keeps
  running, keeps logging, and its exit status can still be read afterwards
  (:func:`read_exit_file`) or by a later :class:`Supervisor` that adopts it.
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

Exit statuses follow the shell's convention: a status of ``128 + N`` (N a
signal number) means "killed by signal N" and is reported as ``signal=N``,
``exit_code=None``. A program that really calls ``exit(130)`` is reported as
killed by SIGINT; the wrapper cannot tell the two apart, and neither can a
shell.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import secrets
import select
import selectors
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

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

_SHELL = "/bin/sh"
# $1: exit file, $2: working directory ("" = stay), the rest: the job's argv.
# The traps keep the wrapper alive when the group is signalled, so it can
# still record the job's status; a caught signal is reset to its default in
# the exec'd job, so the job itself is not shielded. A signal that arrives
# before the job was started (a stop right after launch) would hit only the
# wrapper, so it is remembered and the job is then not started at all. (A
# signal landing between that check and the fork is the remaining window,
# microseconds wide; the SIGKILL after the grace still ends such a run.)
# The status is written with one write(2) of a few bytes and read only after
# the wrapper has exited, so no temporary file and rename (an extra exec per
# run) is needed.
_WRAPPER = """\
corral_exit_file=$1
corral_dir=$2
shift 2
corral_status=
trap 'corral_status=${corral_status:-129}' HUP
trap 'corral_status=${corral_status:-130}' INT
trap 'corral_status=${corral_status:-143}' TERM
if [ -n "$corral_dir" ]; then
  cd -- "$corral_dir" || exit 1
fi
if [ -z "$corral_status" ]; then
  "$@"
  corral_status=$?
fi
printf '%s\\n' "$corral_status" > "$corral_exit_file"
exit "$corral_status"
"""
_WRAPPER_NAME = "corral-run"
_WRAPPER_CMDLINE = b"sh\0-c\0" + _WRAPPER.encode() + b"\0"
_RESEND_CHECK = 0.02
_RESEND_WINDOW = 1.0
"""After a stop that came before the job had exec'd, look for it every _RESEND_CHECK s for this long."""
# Dispositions a job must not inherit from corral: Python ignores SIGPIPE and
# SIGXFSZ, and corral itself may have been started with some signals ignored
# (nohup, ``corral &``). Ignored signals survive exec; these are reset.
_RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
)

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


def _children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(word) for word in f.read().split()]
    except OSError:  # kernel without CONFIG_PROC_CHILDREN
        return [proc.pid for proc in _Table().procs.values() if proc.ppid == pid]


def _job_child(wrapper_pid: int) -> tuple[int, bytes] | None:
    """The wrapper's child running the job, with its cmdline, if it has one yet.

    The only other child a wrapper ever has is its closing ``mv`` of the exit
    file (a job's argv[0] is always an absolute path, never "mv"). A child
    whose cmdline is still the wrapper's own has been forked but has not
    exec'd the job yet.
    """
    for pid in _children_of(wrapper_pid):
        cmdline = _read_cmdline(pid)
        if cmdline and not cmdline.startswith(b"mv\0"):
            return pid, cmdline
    return None


def _env_marker(environ: Iterable[bytes]) -> frozenset[bytes] | None:
    """The environment entry that marks a run's processes, if there is one."""
    prefix = f"{RUN_TOKEN_VAR}=".encode()
    for entry in environ:
        if entry.startswith(prefix) and len(entry) > len(prefix):
            return frozenset([entry])
    return None


class _Table:
    """One snapshot of every process on the host, indexed for tree walks."""

    def __init__(self) -> None:
        self.procs: dict[int, _Proc] = {}
        self.children: dict[int, list[int]] = {}
        self.by_group: dict[int, list[int]] = {}
        self._environ: dict[int, frozenset[bytes]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            proc = _read_proc(int(name))
            if proc is None:
                continue
            self.procs[proc.pid] = proc
            self.children.setdefault(proc.ppid, []).append(proc.pid)
            self.by_group.setdefault(proc.pgid, []).append(proc.pid)
            if proc.sid != proc.pgid:
                self.by_group.setdefault(proc.sid, []).append(proc.pid)

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
    ) -> dict[int, _Proc]:
        """Live processes that belong to a run, its root excluded.

        A process belongs if it descends from the root, sits in the run's
        process group or session, was seen belonging before (``known``: pid ->
        start ticks, which catches processes that left with ``setsid`` and
        were reparented), or carries the run's environment ``marker``; and
        so do all of its descendants. Nothing older than the root belongs.
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
            for proc in self.procs.values():
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


def _decode_status(status: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a shell-style status (see the module docstring)."""
    if 128 < status <= 128 + _MAX_SIGNAL:
        return None, status - 128
    return status, None


def _pidfd_exited(pidfd: int) -> bool:
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
    """The status the wrapper recorded for a finished run, or None if there is none."""
    try:
        text = Path(exit_path).read_text(encoding="ascii").strip()
        return int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


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
    targets = dict(table.members(pid, ticks, pgid, {}, marker))
    root = table.procs.get(pid)
    if root is not None and root.start_ticks == ticks and root.state != "Z":
        targets[pid] = root
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
            alive = set(pidfds.values())
            while alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(left):
                    sel.unregister(key.fd)
                    alive.discard(key.fd)
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
    ) -> None:
        self.run_id = run_id
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
        self.resend_at: float | None = None  # see _begin_stop
        self.resend_until = 0.0
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
        self.spawner_maxrss = 0  # KiB; see _record_exit
        self.rusage_cpu = 0.0
        self.orphans: dict[int, tuple[int, int]] = {}  # pid -> (start ticks, pidfd)
        self.orphan_cpu_ticks = 0
        self.orphans_killed = 0
        self.orphan_kill_at: float | None = None


class _Spawned(NamedTuple):
    launch: Launch
    pid: int
    pidfd: int
    token: str
    started_mono: float
    started_at: datetime


class Supervisor:
    """Starts runs and reports each one's :class:`Outcome` to ``on_exit``.

    ``on_exit`` is called from the supervisor thread exactly once for every run
    that was started (or adopted) and has ended; a run that could not be
    started is answered by :meth:`launch` returning its Outcome directly, and
    ``on_exit`` is not called for it. An exception in ``on_exit`` is logged
    and does not stop the supervisor.
    """

    def __init__(self, on_exit: Callable[[Outcome], None], *, orphan_grace: float = ORPHAN_GRACE) -> None:
        self._on_exit = on_exit
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
        self._made_dirs: set[Path] = set()
        self._spawning: set[int] = set()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise errors.ExecError("this supervisor is closed; create a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="corral-supervisor", daemon=True)
        self._thread.start()

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
        spawned = self._spawn(launch)
        return spawned if isinstance(spawned, Outcome) else self._register(spawned)

    def launch_many(self, launches: Sequence[Launch], *, threads: int = 1) -> list[Started | Outcome]:
        """Start several runs at once, as fast as the machine allows.

        ``posix_spawn`` releases the GIL, so a burst is spread over ``threads``
        spawning threads; reading each child's start time from /proc waits
        until the whole burst is out (reading it while the child is still
        exec'ing is slow)."""
        if len(launches) < 8 or threads <= 1:
            spawned = [self._spawn(launch) for launch in launches]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="corral-spawn") as pool:
                spawned = list(pool.map(self._spawn, launches))
        return [s if isinstance(s, Outcome) else self._register(s) for s in spawned]

    def _spawn(self, launch: Launch) -> _Spawned | Outcome:
        with self._lock:
            if self._closed:
                raise errors.ExecError("this supervisor is closed; create a new one")
            if launch.run_id in self._runs or launch.run_id in self._spawning:
                raise errors.Conflict(f"run {launch.run_id} is already supervised")
            self._spawning.add(launch.run_id)
        try:
            return self._spawn_unlocked(launch)
        finally:
            with self._lock:
                self._spawning.discard(launch.run_id)

    def _spawn_unlocked(self, launch: Launch) -> _Spawned | Outcome:
        try:
            cwd = os.path.abspath(launch.cwd) if launch.cwd else ""
            if cwd and not os.path.isdir(cwd):
                failure = _Failure("cwd_not_found", f"working directory not found: {launch.cwd}")
                return self._not_started(launch, failure)
            checked = _check_command(launch.argv, launch.env, cwd or os.getcwd())
        except (OSError, ValueError) as exc:  # e.g. a NUL byte in a path
            return self._not_started(launch, _Failure("spawn_failed", f"cannot check the command: {exc}"))
        if isinstance(checked, _Failure):
            return self._not_started(launch, checked)
        try:
            self._prepare_paths(launch)
            log_fd = os.open(launch.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return self._not_started(
                launch, _Failure("spawn_failed", f"cannot open the log file {launch.log_path}: {exc.strerror}")
            )
        env = dict(launch.env)
        env[RUN_TOKEN_VAR] = token = secrets.token_hex(8)
        try:
            pid = os.posix_spawn(
                _SHELL,
                ["sh", "-c", _WRAPPER, _WRAPPER_NAME, str(launch.exit_path), cwd, checked, *launch.argv[1:]],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,
                setsigdef=_RESET_SIGNALS,
                setsigmask=(),
            )
        except (OSError, ValueError, TypeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return self._not_started(launch, _Failure("spawn_failed", f"could not start {launch.argv[0]}: {detail}"))
        finally:
            os.close(log_fd)
        started_mono = time.monotonic()
        started_at = _utcnow()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            # Without a pidfd the run cannot be watched (likely out of file
            # descriptors): undo the start rather than leave it unsupervised.
            _killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return self._not_started(launch, _Failure("spawn_failed", f"cannot watch the process: {exc.strerror}"))
        return _Spawned(launch, pid, pidfd, token, started_mono, started_at)

    def _register(self, spawned: _Spawned) -> Started:
        launch, pid, pidfd, token = spawned.launch, spawned.pid, spawned.pidfd, spawned.token
        started_mono, started_at = spawned.started_mono, spawned.started_at
        # The child is ours and not reaped yet, so its /proc entry is there.
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
        )
        run.spawner_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
            # A zombie child of this very process (a Supervisor in the same
            # process was closed before it noticed the exit) is reaped here so
            # it does not linger; its exit file says how it ended.
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
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

    def _prepare_paths(self, launch: Launch) -> None:
        for directory in (launch.log_path.parent, launch.exit_path.parent):
            if directory not in self._made_dirs:
                directory.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(directory)
        # A stale exit file from an earlier attempt must not be read as this
        # run's. (A stale .tmp is harmless: the wrapper truncates it.)
        try:
            os.unlink(launch.exit_path)
        except FileNotFoundError:
            pass

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
        # For an adopted run the group leader is not our child and may have
        # been reaped by init; only signal the group while it is alive (a live
        # leader keeps the group id from being reused).
        if not run.adopted or not _pidfd_exited(run.pidfd):
            # A stop in the first moments of a run can come before the job
            # process exists (the wrapper then forks it anyway: its trap only
            # records the signal) or while it is between fork and exec, where
            # it still runs the wrapper's trap and swallows the TERM. If the
            # job had not exec'd just before the group is signalled, watch for
            # it and TERM it once it has.
            job = _job_child(run.pid)
            _killpg(run.pgid, signal.SIGTERM)
            if not run.killed:
                run.last_signal = signal.SIGTERM
            if run.resend_at is None and (job is None or job[1].startswith(_WRAPPER_CMDLINE)):
                run.resend_at = now + _RESEND_CHECK
                run.resend_until = now + _RESEND_WINDOW
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
                self._wake_pending = False
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for run in pending:
                self._selector.register(run.pidfd, selectors.EVENT_READ, ("main", run, run.pid))
                if run.adopted:
                    # Sample right away: the tree is all an adopted run's
                    # figures will ever come from.
                    self._next_sample = time.monotonic()
            try:
                events = self._selector.select(self._wait_time())
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
        if not runs:
            self._next_sample = None
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
                if run.resend_at is not None:
                    deadlines.append(run.resend_at)
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
            if kind == "main":
                self._selector.unregister(run.pidfd)
                ended.append(run)
            else:
                self._selector.unregister(key.fd)
                _, fd = run.orphans.pop(pid)
                os.close(fd)
                if not run.orphans and run.phase == "cleanup":
                    finished.append(run)
        now = time.monotonic()
        if ended:
            finished.extend(self._main_exited(ended, now))
        finished.extend(self._deadlines(now))
        if self._next_sample is not None and now >= self._next_sample:
            self._next_sample = now + SAMPLE_INTERVAL
            self._sample()
        self._deliver([self._finish(run) for run in dict.fromkeys(finished)])

    def _deadlines(self, now: float) -> list[_Run]:
        finished: list[_Run] = []
        with self._lock:
            runs = list(self._runs.values())
            for run in runs:
                if run.phase != "running":
                    continue
                if run.timeout_at is not None and now >= run.timeout_at and run.stopped_by is None:
                    self._begin_stop(run, "timeout", None, now)
                if run.resend_at is not None and now >= run.resend_at:
                    self._resend_term(run, now)
                if run.kill_at is not None and now >= run.kill_at and not run.killed:
                    run.killed = True
                    run.last_signal = signal.SIGKILL
                    if not run.adopted or not _pidfd_exited(run.pidfd):
                        _killpg(run.pgid, signal.SIGKILL)
        for run in runs:
            if run.phase == "cleanup" and run.orphan_kill_at is not None and now >= run.orphan_kill_at:
                self._kill_orphans(run)
                finished.append(run)
        return finished

    def _resend_term(self, run: _Run, now: float) -> None:
        """TERM the job if it exec'd after its group was signalled (see _begin_stop). Caller holds the lock."""
        job = _job_child(run.pid)
        if job is not None and not job[1].startswith(_WRAPPER_CMDLINE):
            try:
                fd = os.pidfd_open(job[0])
            except OSError:
                fd = -1
            if fd >= 0:
                # Still the same exec'd job (not a reused pid) once pinned?
                if _read_cmdline(job[0]) == job[1]:
                    _send(fd, signal.SIGTERM)
                os.close(fd)
            run.resend_at = None
        elif now >= run.resend_until or run.killed:
            run.resend_at = None
        else:
            run.resend_at = now + _RESEND_CHECK

    def _main_exited(self, runs: list[_Run], now: float) -> list[_Run]:
        """Record how each main process ended and go after what it left behind."""
        # One scan for all of them, taken before our children are reaped: an
        # unreaped leader keeps its group and session ids from being reused.
        table = _Table()
        finished: list[_Run] = []
        for run in runs:
            leftovers = table.members(run.pid, run.start_ticks, run.pgid, run.known, run.marker)
            with self._lock:
                # Before the pidfd is closed: stop() only signals "running" runs.
                run.phase = "cleanup"
            self._record_exit(run, now)
            for proc in leftovers.values():
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

    def _record_exit(self, run: _Run, now: float) -> None:
        run.ended_at = _utcnow()
        status: int | None = None
        try:
            pid, raw, usage = os.wait4(run.pid, os.WNOHANG)
        except ChildProcessError:
            pid = 0  # not our child (adopted), or reaped by someone else
        if pid:
            code = os.waitstatus_to_exitcode(raw)
            if code < 0:
                run.exit_code, run.signal = None, -code
            else:
                status = code
            # posix_spawn's child shares corral's memory until it execs, and
            # exec records that memory's high-water mark as the wrapper's own
            # maxrss. So the figure is only the job's when it is above what
            # corral itself had used by the time of the launch.
            if usage.ru_maxrss > run.spawner_maxrss:
                run.rusage_rss = usage.ru_maxrss * 1024
            run.rusage_cpu = usage.ru_utime + usage.ru_stime
            run.duration = now - run.started_mono
        else:
            status = read_exit_file(run.exit_path)
            run.duration = max(0.0, time.time() - run.start_time)
            if status is None:
                # No exit file: the wrapper itself was killed. If we sent the
                # last signal, that is the best guess at what ended it.
                run.exit_code, run.signal = None, run.last_signal
        if status is not None:
            run.exit_code, run.signal = _decode_status(status)
        os.close(run.pidfd)
        run.pidfd = -1

    def _kill_orphans(self, run: _Run) -> None:
        """The grace is over: SIGKILL every leftover, including any forked since."""
        table = _Table()
        known = {pid: ticks for pid, (ticks, _) in run.orphans.items()}
        known.update(run.known)
        for proc in table.members(run.pid, run.start_ticks, run.pgid, known, run.marker).values():
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
        table = _Table()
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

    def _enforce_cap(self, run: _Run) -> None:
        if _log_size(run.log_path) <= max(run.log_max_bytes, _MIN_LOG_CAP):
            return
        try:
            capped = _cap_log(run.log_path, run.log_max_bytes, run.log_dropped, run.marker_len)
        except OSError as exc:
            log.warning("cannot cap the log of run %s at %s: %s", run.run_id, run.log_path, exc)
            return
        if capped is not None:
            run.log_dropped, run.marker_len = capped

    def _finish(self, run: _Run) -> Outcome:
        self._enforce_cap(run)
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
            log_bytes=_log_size(run.log_path),
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
            self._runs.clear()
            self._pending.clear()
            self._idle.notify_all()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
