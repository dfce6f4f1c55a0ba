"""Helpers for end-to-end tests: run a real engine or a real `corral up`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from corral import config
from corral.engine import Engine
from corral.store import Store, open_store

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until ``predicate`` returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def write_config(tmp: Path, text: str) -> Path:
    path = tmp / "corral.yaml"
    path.write_text(text)
    return path


@contextmanager
def running_engine(path: Path) -> Iterator[tuple[Engine, Store]]:
    """A real Engine in a thread of this process, stopped (drained) on exit."""
    cfg = config.load(path)
    store = open_store(cfg.settings.store_url)
    engine = Engine(cfg, store)
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    try:
        yield engine, store
    finally:
        engine.request_stop()
        thread.join(timeout=60)
        store.close()


def corral_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral", *args]


def start_corral_up(path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("ab") as fh:
        return subprocess.Popen(
            corral_cmd("up", "-c", str(path), "--no-web"), stdout=fh, stderr=subprocess.STDOUT, env=env
        )


def run_cli(path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(corral_cmd(*args, "-c", str(path)), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"corral {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def store_outage(folder: Path, on: str, when: str = "1") -> Callable[[], None]:
    """Make the job file's real SQLite store refuse some writes until the
    returned function is called: a trigger ``BEFORE {on}`` that fails (on
    malformed JSON, an OperationalError as a locked or full database gives)
    for the rows where ``when`` holds."""
    import sqlite3

    db = sqlite3.connect(folder / ".corral" / "corral.db", isolation_level=None)
    db.execute(f"CREATE TRIGGER outage BEFORE {on} WHEN {when} BEGIN SELECT json('store outage'); END")

    def end() -> None:
        db.execute("DROP TRIGGER outage")
        db.close()

    return end
