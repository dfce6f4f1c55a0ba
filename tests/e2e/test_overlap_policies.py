"""A job every 2 s that sleeps 5 s, under each overlap policy, with real
processes and real SQLite, checked from the recorded run intervals."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from corral.store import tables as t
from corral.store.queries import Run
from tests.e2e.helpers import pid_alive, running_engine, wait_for, write_config

pytestmark = pytest.mark.slow

JOBS = """
drain: 20s
jobs:
  skip:
    run: "sleep 5"
    schedule: {every: 2s}
    overlap: skip
  queue-one:
    run: "sleep 5"
    schedule: {every: 2s}
    overlap: queue_one
  queue-all:
    run: "sleep 5"
    schedule: {every: 2s}
    overlap: queue_all
  replace:
    run: "echo $$ >> pids; exec sleep 5"
    schedule: {every: 2s}
    overlap: replace
    kill_grace: 1s
  allow:
    run: "sleep 5"
    schedule: {every: 2s}
    overlap: allow
    max_concurrent: 2
"""


def _intervals(runs: list[Run]) -> list[tuple[datetime, datetime]]:
    return sorted((r.started_at, r.ended_at) for r in runs if r.started_at and r.ended_at)  # type: ignore[misc]


def _max_concurrency(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Run]]:
    tmp = tmp_path_factory.mktemp("overlap")
    path = write_config(tmp, JOBS)
    with running_engine(path) as (engine, store):
        time.sleep(11.5)
        engine.request_stop()  # stop scheduling; drain lets the running ones finish
        wait_for(lambda: not engine.supervisor.running(), timeout=30, what="drain")
        time.sleep(0.5)
        out = {job: store.list_runs(job=job, limit=1000, oldest_first=True) for job in engine.cfg.jobs}
    out["_dir"] = tmp  # type: ignore[assignment]
    return out


def test_every_slot_has_exactly_one_record(recorded: dict[str, list[Run]]) -> None:
    for job in ("skip", "queue-one", "queue-all", "replace", "allow"):
        slots = [r.scheduled_for for r in recorded[job]]
        assert len(slots) == len(set(slots)) >= 5, job
        # After the drain nothing is running; runs still waiting stay for the next start.
        assert not [r for r in recorded[job] if r.state == t.RUNNING], job


def test_skip_never_overlaps_and_records_each_skip_with_its_reason(recorded: dict[str, list[Run]]) -> None:
    runs = recorded["skip"]
    assert _max_concurrency(_intervals(runs)) == 1
    skipped = [r for r in runs if r.state == t.SKIPPED]
    assert skipped and all(r.reason == "overlap" for r in skipped)
    assert all("still running for" in (r.message or "") for r in skipped)


def test_queue_one_runs_back_to_back_and_skips_beyond_one_waiting(recorded: dict[str, list[Run]]) -> None:
    runs = recorded["queue-one"]
    ran = _intervals(runs)
    assert _max_concurrency(ran) == 1 and len(ran) >= 2
    # The queued run starts as soon as the previous one ends.
    assert (ran[1][0] - ran[0][1]).total_seconds() < 1.0
    assert any(r.state == t.SKIPPED and r.reason == "overlap" for r in runs)


def test_queue_all_runs_every_slot_one_after_another(recorded: dict[str, list[Run]]) -> None:
    runs = recorded["queue-all"]
    assert _max_concurrency(_intervals(runs)) == 1
    assert not any(r.state == t.SKIPPED for r in runs)


def test_replace_leaves_no_survivor_of_the_old_run(recorded: dict[str, list[Run]]) -> None:
    runs = recorded["replace"]
    replaced = [r for r in runs if r.state == t.CANCELLED and r.reason == "replaced"]
    assert replaced
    assert _max_concurrency(_intervals(runs)) == 1
    pids = [int(x) for x in (Path(recorded["_dir"]) / "pids").read_text().split()]  # type: ignore[arg-type]
    assert pids and not any(pid_alive(p) for p in pids)


def test_allow_respects_max_concurrent(recorded: dict[str, list[Run]]) -> None:
    runs = recorded["allow"]
    assert _max_concurrency(_intervals(runs)) == 2
    assert any(r.state == t.SKIPPED and "max_concurrent is 2" in (r.message or "") for r in runs)
