"""The spawner: a small process that starts job processes and reaps them.

``corral up`` does not start jobs itself. It talks to one or two spawner
processes (``python -I -S spawner.py FD NOTICE_FD [LOCK]``, standard library only,
about 10 MB) over two sockets, and each spawner is the parent of the jobs it
started. Why:

* A job's exit status can only be read by its parent. If corral's main process
  were the parent, a ``kill -9`` of it would hand the jobs to init, which reaps
  them and throws their statuses away. A spawner outlives the main process
  until its last job has ended and writes each status the main process had
  not recorded to the run's exit file, so a restarted corral that adopts the
  job still learns how it ended.
* The job process is the program the user asked for (``exec`` of their argv,
  no shell wrapper around it): one exec per run, and the pid corral records,
  signals and samples is the job's own.
* Starting a process costs about half a millisecond of exec work. Two
  spawners start a burst on two cores while the main process goes on with
  its own work.

Protocol: length-prefixed :mod:`marshal` frames (4-byte big-endian length)
from corral's own code on two private socket pairs. On the first, requests,
each answered by one reply:

``("spawn", [(key, path, argv, env, cwd, log_path, exit_path), ...])``
    Start each one in a new session with stdin from /dev/null and stdout and
    stderr appended to ``log_path`` (its folder is created if need be; a
    stale ``exit_path`` is removed first). Reply ``("spawned", [(key, pid,
    wall_time, monotonic_time, error_kind, error_text, watched), ...])``, pid
    0 and an error kind ("cwd", "log", "exec") when a start failed; watched
    is False if the spawner cannot watch that job (no pidfd): it then sends
    no notice of its end, and the main process watches it itself.
``("reap", [pid, ...])``
    Each pid has exited and the main process has dealt with what the job
    left behind. Reap it, reply ``("reaped", [(pid, exit_code, signal,
    user_cpu, system_cpu, maxrss_kib, wall_time, monotonic_time), ...])``
    (the times: when it was reaped, not when it ended); exit_code and signal
    are None for a pid that is not our child.

A request may carry a third item: the exit paths of jobs whose status the
main process has recorded in its store. The spawner keeps every status it
has reported until then, and writes the exit files of those not recorded
only when the main process goes away: a file per run costs more than
starting the run on some disks, and is needed only after a crash.

On the second socket, notices from the spawner alone, one when a watched job
ends:

``("ended", [(pid, exit_code, signal, user_cpu, system_cpu, maxrss_kib, wall_time, monotonic_time), ...])``
    The job ended and left nothing behind, so the spawner reaped it at once
    (as a subreaper it inherits every orphan of its jobs: when its only
    children are jobs, the ended job has no process left anywhere). The two
    times say when it ended, so its end time is its own even when the main
    process reads the notice much later (in a burst).
``("held", [pid, ...])``
    The job ended but the spawner has other children, which may be what the
    job left behind. It stays a zombie, keeping its process group and
    session ids from reuse, until the main process has found and stopped
    its leftovers and asks for it with "reap".

Before any request, the spawner sends ``("ready", subreaper)``: whether it
became a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``). As one, it
inherits every orphan its jobs leave behind, even one that called ``setsid``,
so the main process finds a run's leftovers in the spawner's subtree instead
of scanning every process on the host. Orphans that end are reaped after each
request and every few seconds.

End of file on the request socket (the main process closed it or died):
write the exit files of the statuses not recorded, then reap every remaining
child as it ends, writing a job's exit file before reaping it (so "the
process is gone" implies "its exit file is written"), then exit once no
child is left.

LOCK, if given, is a file the spawner holds a shared ``flock`` on from
before its first reply until it has written those exit files. A job it
reaped while the main process was alive leaves no zombie behind, so "the
process is gone and there is no exit file" is not proof that there never
will be one: a restarted corral first waits until every spawner of the corral
process that died has let go of that lock (see
:func:`corral.executor.await_spawners`).

Exit files hold one line, a shell-style status: the exit code, or 128 + N
for a process killed by signal N (see :func:`corral.executor.read_exit_file`).
"""

import errno
import fcntl
import marshal
import os
import resource
import selectors
import signal
import struct
import sys
import time

_HEADER = struct.Struct("!I")
_RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
)
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_PR_SET_CHILD_SUBREAPER = 36
MAX_UNRECORDED = 10000
"""Statuses kept in memory at most, waiting for the main process to say it recorded them."""
STRAY_CHECK = 5.0
"""Seconds between looks for ended orphans while no request comes."""


def _shell_status(exit_code, sig):
    return 128 + sig if sig is not None else exit_code


def _open_in_folder(path, flags):
    """os.open with O_CREAT, creating the file's folder if it is missing."""
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o644)


def _write_exit_file(path, exit_code, sig):
    """One write of a few bytes; readers look only once the process is reaped."""
    try:
        fd = _open_in_folder(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"%d\n" % _shell_status(exit_code, sig))
    except OSError:
        pass
    finally:
        os.close(fd)


class Spawner:
    def __init__(self, sock_fd, notice_fd=None, subreaper=False, lock_fd=None):
        self.fd = sock_fd
        self.lock_fd = lock_fd  # holds a shared flock until the exit files are written
        self.notice_fd = notice_fd
        self.subreaper = subreaper
        self.exit_paths = {}  # pid -> exit file path, for every job not reaped yet
        self.pidfds = {}  # pid -> pidfd of the jobs watched for their end
        self.unrecorded = {}  # exit path -> (exit code, signal) of reaped jobs the main process has not recorded yet
        self.outbox = bytearray()  # notices not sent yet (the main process reads them when it can)
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.home = os.getcwd()
        self.children_path = "/proc/%d/task/%d/children" % (os.getpid(), os.getpid())
        self.selector = selectors.DefaultSelector()

    # -- framing ------------------------------------------------------------

    def _read_exact(self, n):
        chunks = []
        while n:
            data = os.read(self.fd, n)
            if not data:
                return None
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    def receive(self):
        header = self._read_exact(_HEADER.size)
        if header is None:
            return None
        body = self._read_exact(_HEADER.unpack(header)[0])
        return None if body is None else marshal.loads(body)

    def reply(self, message):
        data = marshal.dumps(message)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]

    def notify(self, message):
        """Queue a notice; sent without blocking, so a main process busy
        elsewhere can never stall the requests."""
        data = marshal.dumps(message)
        self.outbox += _HEADER.pack(len(data)) + data
        self.flush()

    def flush(self):
        if self.notice_fd is None:
            self.outbox.clear()
            return
        try:
            while self.outbox:
                del self.outbox[:os.write(self.notice_fd, self.outbox)]
        except BlockingIOError:
            pass
        except OSError:  # the main process is gone: the request socket says so too
            self.outbox.clear()
        events = selectors.EVENT_WRITE if self.outbox else 0
        key = self.selector.get_map().get(self.notice_fd)
        if events and key is None:
            self.selector.register(self.notice_fd, events, "notice")
        elif not events and key is not None:
            self.selector.unregister(self.notice_fd)

    # -- requests -----------------------------------------------------------

    def spawn(self, key, path, argv, env, cwd, log_path, exit_path):
        try:
            os.chdir(cwd or self.home)
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "cwd", exc.strerror or str(exc), False)
        try:
            # A stale exit file (a store started afresh reuses run ids) must
            # not be read as this run's.
            os.unlink(exit_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "log", f"cannot remove the old exit file {exit_path}: {exc.strerror}", False)
        try:
            log_fd = _open_in_folder(log_path, _LOG_FLAGS)
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "log", exc.strerror or str(exc), False)
        actions = [
            (os.POSIX_SPAWN_DUP2, self.devnull, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ]
        try:
            try:
                pid = os.posix_spawn(
                    path, argv, env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS, setsigmask=()
                )
            except OSError as exc:
                if exc.errno != errno.ENOEXEC:
                    raise
                # A script without a "#!" line: run it with the shell, as execvp does.
                pid = os.posix_spawn(
                    "/bin/sh", ["sh", path, *argv[1:]], env,
                    file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS, setsigmask=(),
                )
        except (OSError, ValueError, TypeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return (key, 0, 0.0, 0.0, "exec", detail, False)
        finally:
            os.close(log_fd)
        self.exit_paths[pid] = exit_path
        watched = self.watch(pid)
        return (key, pid, time.time(), time.monotonic(), None, None, watched)

    def watch(self, pid):
        if self.notice_fd is None:
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        self.pidfds[pid] = pidfd
        self.selector.register(pidfd, selectors.EVENT_READ, pid)
        return True

    def unwatch(self, pid):
        pidfd = self.pidfds.pop(pid, None)
        if pidfd is not None:
            self.selector.unregister(pidfd)
            os.close(pidfd)

    def children(self):
        """The pids of this process's children, as text (None if they cannot be read)."""
        try:
            fd = os.open(self.children_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks).split()
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)

    def other_children(self):
        """Whether this process has a live child that is not a job (an orphan
        some job left behind); True when that cannot be told. Ended orphans
        are reaped on the way."""
        if not self.subreaper:
            return True
        kids = self.children()
        if kids is None:
            return True
        # Every job not reaped yet (running or ended) is a child: as many
        # children as jobs means none is anything else. (In a burst the list
        # is long, and this is asked at each end.)
        if len(kids) == len(self.exit_paths):
            return False
        for pid in map(int, kids):
            if pid in self.exit_paths:
                continue
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    return True  # alive
            except ChildProcessError:
                pass
        return False

    def ended(self, pids):
        """Watched jobs whose pidfd says they ended: reap them now if nothing
        of theirs can be left, else hold them for the main process."""
        for pid in pids:
            self.unwatch(pid)
        pids = [pid for pid in pids if pid in self.exit_paths]
        if not pids:
            return
        if self.other_children():
            self.notify(("held", pids))
        else:
            self.notify(("ended", [self.reap(pid) for pid in pids]))

    def reap(self, pid):
        self.unwatch(pid)
        try:
            got, raw, usage = os.wait4(pid, 0)
        except ChildProcessError:
            self.exit_paths.pop(pid, None)
            return (pid, None, None, 0.0, 0.0, 0, time.time(), time.monotonic())
        code = os.waitstatus_to_exitcode(raw)
        exit_code, sig = (code, None) if code >= 0 else (None, -code)
        path = self.exit_paths.pop(pid, None)
        if path:
            self.unrecorded[path] = (exit_code, sig)
            if len(self.unrecorded) > MAX_UNRECORDED:  # a main process that never says: write the oldest
                old = next(iter(self.unrecorded))
                _write_exit_file(old, *self.unrecorded.pop(old))
        # A posix_spawn child's maxrss starts at our own high-water mark (the
        # memory it shared until exec): only a figure above it is the job's.
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        maxrss = usage.ru_maxrss if usage.ru_maxrss > own else 0
        return (pid, exit_code, sig, usage.ru_utime, usage.ru_stime, maxrss, time.time(), time.monotonic())

    def reap_strays(self):
        """Reap orphans of jobs that ended (children that are not jobs)."""
        kids = self.children()
        if kids is None or len(kids) == len(self.exit_paths):
            return
        for pid in map(int, kids):
            if pid not in self.exit_paths:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def serve(self):
        self.reply(("ready", self.subreaper))
        if self.notice_fd is not None:
            os.set_blocking(self.notice_fd, False)
        self.selector.register(self.fd, selectors.EVENT_READ, "request")
        while True:
            events = self.selector.select(STRAY_CHECK)
            if not events:
                self.reap_strays()
                continue
            ended = [key.data for key, _ in events if isinstance(key.data, int)]
            if ended:
                self.ended(ended)
            if any(key.data == "notice" for key, _ in events):
                self.flush()
            if not any(key.data == "request" for key, _ in events):
                continue
            try:
                message = self.receive()
            except OSError:
                message = None
            if message is None:
                break
            kind, items = message[0], message[1]
            for path in message[2] if len(message) > 2 else ():
                self.unrecorded.pop(path, None)
            if kind == "spawn":
                answer = ("spawned", [self.spawn(*item) for item in items])
            elif kind == "reap":
                answer = ("reaped", [self.reap(pid) for pid in items])
            else:
                answer = ("error", f"unknown request {kind!r}")
            try:
                self.reply(answer)
            except OSError:
                break
            if kind == "reap":
                self.reap_strays()
        self.write_exit_files()
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the flock: every status is on disk now
            self.lock_fd = None
        for pid in list(self.pidfds):
            self.unwatch(pid)
        self.selector.close()
        os.close(self.fd)
        if self.notice_fd is not None:
            os.close(self.notice_fd)
        self.drain()

    def write_exit_files(self):
        """The statuses the main process did not say it recorded: it is gone,
        and the next one reads them from these files."""
        while self.unrecorded:
            path, (exit_code, sig) = self.unrecorded.popitem()
            _write_exit_file(path, exit_code, sig)

    def drain(self):
        """The main process is gone: record and reap every child as it ends."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:  # pragma: no cover - PEP 475 retries this
                continue
            if info is None:  # pragma: no cover - only with WNOHANG
                continue
            pid = info.si_pid
            if info.si_code == os.CLD_EXITED:
                exit_code, sig = info.si_status, None
            else:
                exit_code, sig = None, info.si_status
            path = self.exit_paths.pop(pid, None)
            if path:
                _write_exit_file(path, exit_code, sig)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _become_subreaper():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _hold_lock(path):
    """A shared flock on ``path`` (see LOCK above), or None if it cannot be had."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return None
    return fd


def main(argv):
    fd = int(argv[1])
    os.set_inheritable(fd, False)
    notice_fd = int(argv[2]) if len(argv) > 2 else None
    if notice_fd is not None:
        os.set_inheritable(notice_fd, False)
    lock_fd = _hold_lock(argv[3]) if len(argv) > 3 else None
    subreaper = _become_subreaper()
    # Terminal signals are for the main process, which drains and stops the
    # jobs; the spawner must stay to reap them.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    Spawner(fd, notice_fd, subreaper, lock_fd).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
