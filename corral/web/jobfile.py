"""The job file as the dashboard sees it: re-read when it changes on disk.

``corral up`` reloads the file when it is edited (see ``Engine.reload``); the
dashboard follows by looking at the file's modification time, size and inode
before serving a request. An edit with mistakes keeps the last good
configuration and the error is shown on every page, as the engine does.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from corral import config as config_mod
from corral import errors
from corral.spec import Config

log = logging.getLogger("corral.web")


@dataclass(frozen=True)
class Snapshot:
    """The configuration in use and, if the file on disk is broken, why."""

    config: Config
    loaded_at: datetime
    error: str | None = None
    """The latest edit's problems; ``config`` is then the last good one."""


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class LiveJobFile:
    """The last good configuration of ``path``, refreshed on change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen = _signature(self.path)
        # A broken file at start is the caller's problem: nothing good to show.
        cfg = config_mod.load(self.path)
        self._snapshot = Snapshot(config=cfg, loaded_at=datetime.now(timezone.utc))

    def current(self) -> Snapshot:
        """The snapshot to serve this request with (re-reading the file if it changed)."""
        seen = _signature(self.path)
        if seen == self._seen:
            return self._snapshot
        with self._lock:
            if seen != self._seen:
                self._seen = seen
                self._snapshot = self._reload()
            return self._snapshot

    def _reload(self) -> Snapshot:
        old = self._snapshot
        try:
            cfg = config_mod.load(self.path)
        except errors.ConfigError as exc:
            log.error("job file changed but has errors; the dashboard keeps the previous jobs:\n%s", exc)
            return Snapshot(config=old.config, loaded_at=old.loaded_at, error=str(exc))
        return Snapshot(config=cfg, loaded_at=datetime.now(timezone.utc))
