"""Child processes for the concurrent event feed tests and bench.

Started as plain subprocesses (``python -m tests.integration.event_writers``)
and coordinated through files: no multiprocessing semaphores to go stale.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

from corral.store import Store
from corral.store import tables as t

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def slow_commits(store: Store, seed: int, max_delay: float) -> None:
    """Make every transaction of ``store`` that writes events sleep a random
    while after writing them and before committing: the window in which a
    late commit leaves a hole in auto-increment ids."""
    rng = random.Random(seed)

    def append(conn: Any, rows: list[dict[str, Any]]) -> None:
        Store._append_events(conn, rows)
        if rows:
            time.sleep(rng.uniform(0, max_delay))

    store._append_events = append  # type: ignore[method-assign]


def _wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.005)


def writer(url: str, index: int, runs: int, max_delay: float, start: Path) -> None:
    """Create ``runs`` runs, claim each, finish them: 3 events per run, in
    about ``runs * 1.25`` transactions that each sleep before committing."""
    store = Store(url)
    slow_commits(store, index, max_delay)
    _wait_for(start)
    ids: list[int] = []
    for first in range(0, runs, 20):
        batch = [
            dict(job=f"w{index}", state=t.PENDING, trigger="manual", scheduled_for=T0)
            for _ in range(min(20, runs - first))
        ]
        ids.extend(i for i in store.create_runs(batch, now=datetime.now(timezone.utc)) if i is not None)
    for rid in ids:
        assert store.claim(rid, node=f"w{index}", now=datetime.now(timezone.utc))
    for first in range(0, len(ids), 5):
        chunk = ids[first : first + 5]
        done = store.transition_many(
            [(rid, t.SUCCEEDED, {"exit_code": 0}) for rid in chunk],
            now=datetime.now(timezone.utc),
            expect=(t.RUNNING,),
        )
        assert all(done)
    store.close()


def publisher(url: str, stop: Path) -> None:
    """Publish in a loop until ``stop`` exists and the outbox is empty; print the count."""
    store = Store(url)
    numbered = 0
    while True:
        stopping = stop.exists()
        got = store.publish_events()
        numbered += got
        if stopping and got == 0 and store.unpublished_events() == 0:
            break
        if got == 0:
            time.sleep(0.001)
    print(numbered, flush=True)
    store.close()


ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.event_writers", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), Path(sys.argv[6]))
    else:
        publisher(sys.argv[2], Path(sys.argv[3]))
