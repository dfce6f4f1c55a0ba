"""Be told when a file may have changed, instead of looking every few seconds.

``corral up`` reloads its job file when it is edited. Looking at the file's
modification time every 2 seconds woke an idle engine 30 times a minute; on
Linux, inotify wakes it only when the file's directory changes. :func:`watch`
returns None where inotify cannot be used (another OS, no instances left), and
the caller keeps polling.

Events watched: a write that was closed, a rename onto or away from the name,
a delete, an attribute change (``touch``). Creating the file and plain writes
(``IN_CREATE``, ``IN_MODIFY``) are not watched, so a file is not read halfway
through being written (its close follows); a writer that keeps the file open
is seen by the caller's slower poll.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("corral.filewatch")

_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x1000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = (
    _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_DELETE
    | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name

_libc: Any = None


def _inotify() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        _libc = libc
    return _libc


class Watch:
    """Calls ``on_change`` from a thread of its own when the watched file may
    have changed. ``alive`` turns False if the watch is lost (its directory was
    removed or renamed): the caller then polls again."""

    def __init__(self, fd: int, names: dict[int, str | None], on_change: Callable[[], None]) -> None:
        self._fd = fd
        self._names = names
        """Watch descriptor -> the file name that matters in that directory (None: any)."""
        self._on_change = on_change
        self._stop_r, self._stop_w = os.pipe()
        self.alive = True
        self._thread = threading.Thread(target=self._run, name="corral-filewatch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while self.alive:
                ready = {fd for fd, _ in poller.poll()}
                if self._stop_r in ready:
                    return
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                if self._changed(data):
                    self._on_change()
        except OSError as exc:
            log.warning("watching the job file stopped (%s); looking at it every few seconds instead", exc)
            self.alive = False
            self._on_change()

    def _changed(self, data: bytes) -> bool:
        changed = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                changed = True
                continue
            if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
                # The directory went away: nothing more will come from it.
                self.alive = False
                changed = True
                continue
            wanted = self._names.get(wd)
            name = os.fsdecode(raw.rstrip(b"\0"))
            if wanted is None or name == wanted:
                changed = True
        return changed

    def close(self) -> None:
        """Stop the thread and release the descriptors."""
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_w = -1
        self.alive = False


def watch(path: str | Path, on_change: Callable[[], None]) -> Watch | None:
    """Watch ``path`` (a file that may be replaced by a rename, as editors do).

    Its directory is watched for events on its name. If the path goes through a
    symbolic link (a Kubernetes ConfigMap swaps a ``..data`` link), every event
    of that directory counts, and the directory of the resolved file is watched
    too."""
    if not hasattr(os, "O_CLOEXEC") or not os.path.exists("/proc/self"):
        return None  # not Linux
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    dirs: dict[str, str | None] = {os.path.dirname(absolute): os.path.basename(absolute) if real == absolute else None}
    if real != absolute:
        dirs.setdefault(os.path.dirname(real), os.path.basename(real))
    try:
        libc = _inotify()
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(_errno(), "inotify_init1")
        names: dict[int, str | None] = {}
        try:
            for directory, name in dirs.items():
                wd = libc.inotify_add_watch(fd, os.fsencode(directory), _MASK)
                if wd < 0:
                    raise OSError(_errno(), f"inotify_add_watch {directory}")
                names[wd] = name
            return Watch(fd, names, on_change)
        except BaseException:
            os.close(fd)
            raise
    except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
        log.info("cannot watch %s for changes (%s); looking at it every few seconds instead", absolute, exc)
        return None


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()
