"""The spawner: a small process that starts job processes and reaps them.

``corral up`` does not start jobs itself. It talks to one or two spawner
processes (``python -I -S spawner.py FD``, standard library only, about 10 MB)
over a socket, and each spawner is the parent of the jobs it started. Why:

* A job's exit status can only be read by its parent. If corral's main process
  were the parent, a ``kill -9`` of it would hand the jobs to init, which reaps
  them and throws their statuses away. A spawner outlives the main process
  until its last job has ended and writes each job's status to the run's exit
  file, so a restarted corral that adopts the job still learns how it ended.
* The job process is the program the user asked for (``exec`` of their argv,
  no shell wrapper around it): one exec per run, and the pid corral records,
  signals and samples is the job's own.
* Starting a process costs about half a millisecond of exec work. Two
  spawners start a burst on two cores while the main process goes on with
  its own work.

Protocol: length-prefixed :mod:`marshal` frames (4-byte big-endian length),
one request then one reply, both from corral's own code on a private socket
pair. Requests:

``("spawn", [(key, path, argv, env, cwd, log_path, exit_path), ...])``
    Start each one in a new session with stdin from /dev/null and stdout and
    stderr appended to ``log_path`` (its folder is created if need be; a
    stale ``exit_path`` is removed first). Reply ``("spawned", [(key, pid,
    wall_time, monotonic_time, error_kind, error_text), ...])``, pid 0 and an
    error kind ("cwd", "log", "exec") when a start failed.
``("reap", [pid, ...])``
    Each pid has exited (the main process saw it on its pidfd and has dealt
    with what the job left behind). Reap it, write its exit file, reply
    ``("reaped", [(pid, exit_code, signal, user_cpu, system_cpu, maxrss_kib),
    ...])``; exit_code and signal are None for a pid that is not our child.

Before any request, the spawner sends ``("ready", subreaper)``: whether it
became a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``). As one, it
inherits every orphan its jobs leave behind, even one that called ``setsid``,
so the main process finds a run's leftovers in the spawner's subtree instead
of scanning every process on the host. Orphans that end are reaped after each
request and every few seconds.

End of file on the socket (the main process closed it or died): reap every
remaining child as it ends, writing a job's exit file before reaping it (so
"the process is gone" implies "its exit file is written"), then exit once no
child is left.

Exit files hold one line, a shell-style status: the exit code, or 128 + N
for a process killed by signal N (see :func:`corral.executor.read_exit_file`).
"""

import errno
import marshal
import os
import resource
import select
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
    def __init__(self, sock_fd):
        self.fd = sock_fd
        self.exit_paths = {}  # pid -> exit file path
        self.unwritten = []  # (path, exit code, signal) of jobs reaped, written after the reply
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.home = os.getcwd()

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

    # -- requests -----------------------------------------------------------

    def spawn(self, key, path, argv, env, cwd, log_path, exit_path):
        try:
            os.chdir(cwd or self.home)
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "cwd", exc.strerror or str(exc))
        try:
            # A stale exit file (a store started afresh reuses run ids) must
            # not be read as this run's.
            os.unlink(exit_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "log", f"cannot remove the old exit file {exit_path}: {exc.strerror}")
        try:
            log_fd = _open_in_folder(log_path, _LOG_FLAGS)
        except OSError as exc:
            return (key, 0, 0.0, 0.0, "log", exc.strerror or str(exc))
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
            return (key, 0, 0.0, 0.0, "exec", detail)
        finally:
            os.close(log_fd)
        self.exit_paths[pid] = exit_path
        return (key, pid, time.time(), time.monotonic(), None, None)

    def reap(self, pid):
        try:
            got, raw, usage = os.wait4(pid, 0)
        except ChildProcessError:
            self.exit_paths.pop(pid, None)
            return (pid, None, None, 0.0, 0.0, 0)
        code = os.waitstatus_to_exitcode(raw)
        exit_code, sig = (code, None) if code >= 0 else (None, -code)
        path = self.exit_paths.pop(pid, None)
        if path:
            self.unwritten.append((path, exit_code, sig))
        # A posix_spawn child's maxrss starts at our own high-water mark (the
        # memory it shared until exec): only a figure above it is the job's.
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        maxrss = usage.ru_maxrss if usage.ru_maxrss > own else 0
        return (pid, exit_code, sig, usage.ru_utime, usage.ru_stime, maxrss)

    def reap_strays(self):
        """Reap orphans of jobs that ended (children that are not jobs)."""
        me = os.getpid()
        try:
            with open(f"/proc/{me}/task/{me}/children", "rb") as f:
                kids = [int(word) for word in f.read().split()]
        except OSError:
            return
        for pid in kids:
            if pid not in self.exit_paths:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def serve(self, subreaper):
        self.reply(("ready", subreaper))
        while True:
            try:
                while not select.select([self.fd], [], [], STRAY_CHECK)[0]:
                    self.reap_strays()
                message = self.receive()
            except OSError:
                message = None
            if message is None:
                break
            kind, items = message
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
            finally:
                # After the reply, off the path of whoever waits for it: the
                # main process records these statuses itself; the files are
                # for a main process that dies before it could.
                self.write_exit_files()
            if kind == "reap":
                self.reap_strays()
        self.write_exit_files()
        os.close(self.fd)
        self.drain()

    def write_exit_files(self):
        while self.unwritten:
            _write_exit_file(*self.unwritten.pop())

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


def main(argv):
    fd = int(argv[1])
    os.set_inheritable(fd, False)
    subreaper = _become_subreaper()
    # Terminal signals are for the main process, which drains and stops the
    # jobs; the spawner must stay to reap them.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    Spawner(fd).serve(subreaper)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
