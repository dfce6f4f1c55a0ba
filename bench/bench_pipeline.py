"""Step bookkeeping overhead (issue 3): a 50-step linear pipeline of ``true``
against the same 50 commands run one after another in a plain loop.

    .venv/bin/python bench/bench_pipeline.py [--steps 50] [--repeat 3]

The pipeline runs in a real Engine (in this process) on a real SQLite store;
every step gets its row, its state changes and its log. Its time is the run's
recorded start-to-end. The loop spawns ``/bin/sh -c true`` with posix_spawn
and waits, which is what a step's command costs at the least.
Target: pipeline <= 2x loop. Both start after the same pause (PAUSE), and
the table shows the first command apart from the rest: on a machine that
pages out what was idle, the first command after a pause costs several
milliseconds more on either side. A long pipeline (``--long``, 500 steps) shows
that a step costs the same however many steps the run has.

corral's spawner processes are started before the run, as ``corral up`` does
30 s before a scheduled slot (and keeps them a minute after the last run); a
run triggered in an idle corral pays their start (about 15 ms) once, shown on
its own line ("cold").

The last lines split a command's time in two, for the loop and for the steps
(from the recorded step rows, by the spawner's clock): from the end of the
one before to its process started, and from there to its end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corral import config  # noqa: E402
from corral.engine import Engine  # noqa: E402
from corral.store import open_store  # noqa: E402
from corral.store import tables as t  # noqa: E402


PAUSE = 0.3
"""Seconds each side waits before it starts: the pipeline waits this long for
its spawners, so the loop does too. (On a VM that pages out what was idle,
the first command after any pause costs several milliseconds more than the
next ones, in a plain loop as in corral.)"""


class Timing(NamedTuple):
    total: float
    first: float
    """From the start to the end of the first command (which pays for waking up after the pause)."""


def plain_loop(count: int, split: list[tuple[float, float]] | None = None) -> Timing:
    """``split`` gets, per command, (spawn call, spawn return to reaped) in seconds."""
    time.sleep(PAUSE)
    start = time.perf_counter()
    first = 0.0
    for _ in range(count):
        t0 = time.perf_counter()
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], dict(os.environ))
        t1 = time.perf_counter()
        os.waitpid(pid, 0)
        first = first or time.perf_counter() - start
        if split is not None:
            split.append((t1 - t0, time.perf_counter() - t1))
    return Timing(time.perf_counter() - start, first)


def executor_loop(count: int, folder: Path) -> float:
    """The same commands through corral's Supervisor alone, one after another:
    the per-process floor (spawner round trips, leftover check, exit file) without any store."""
    import queue

    from corral import executor

    done: queue.SimpleQueue[executor.Outcome] = queue.SimpleQueue()
    supervisor = executor.Supervisor(on_exit=done.put)
    supervisor.start()
    supervisor.warm()
    time.sleep(PAUSE)
    try:
        start = time.perf_counter()
        for index in range(count):
            launch = executor.Launch(
                run_id=index + 1, argv=("/bin/sh", "-c", "true"), env=dict(os.environ), cwd=str(folder),
                log_path=folder / f"{index}.log", exit_path=folder / f"{index}.exit",
            )
            supervisor.launch(launch)
            done.get(timeout=30)
        return time.perf_counter() - start
    finally:
        supervisor.close()


def pipeline_run(count: int, folder: Path, *, warm: bool = True, split: list[tuple[float, float]] | None = None) -> Timing:
    """``split`` gets, per step after the first, (from the end of the step
    before, as its spawner saw it, to this step's process started; from that
    start to its end) in seconds, from the recorded step rows."""
    lines = ["jobs:", "  chain:", "    steps:"]
    for index in range(count):
        needs = f", needs: [s{index - 1}]" if index else ""
        lines.append(f'      - {{name: s{index}, run: "true"{needs}}}')
    path = folder / "corral.yaml"
    path.write_text("\n".join(lines) + "\n")
    cfg = config.load(path)
    store = open_store(cfg.settings.store_url)
    engine = Engine(cfg, store)
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    if warm:
        engine.supervisor.warm()
        time.sleep(PAUSE)
    try:
        now = datetime.now(timezone.utc)
        run_id = store.create_run(job="chain", state=t.PENDING, trigger="manual", scheduled_for=now, now=now,
                                  admitted=False)
        assert run_id is not None
        engine.wake()
        deadline = time.monotonic() + 120
        while True:
            # The figure is the run's recorded start-to-end, so a slow poll
            # costs no accuracy; a fast one would take the GIL from the engine
            # (in this process here, unlike corral up and its CLI).
            time.sleep(0.1)
            run = store.get_run(run_id)
            if run.state in t.FINAL_STATES:
                break
            if time.monotonic() > deadline:
                raise SystemExit("pipeline did not finish in 120 s")
        assert run.state == t.SUCCEEDED, run.message
        assert run.started_at is not None and run.ended_at is not None
        steps = sorted(store.get_steps(run_id), key=lambda s: s.started_at)  # type: ignore[arg-type, return-value]
        if split is not None:
            for before, step in zip(steps, steps[1:]):
                split.append(((step.started_at - before.ended_at).total_seconds(), (step.ended_at - step.started_at).total_seconds()))  # type: ignore[operator]
        return Timing((run.ended_at - run.started_at).total_seconds(), (steps[0].ended_at - run.started_at).total_seconds())  # type: ignore[operator]
    finally:
        engine.request_stop()
        thread.join(timeout=60)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long", type=int, default=500, help="steps of the long pipeline (per-step cost must not grow)")
    args = parser.parse_args()
    loops, execs, pipes = [], [], []
    loop_split: list[tuple[float, float]] = []
    pipe_split: list[tuple[float, float]] = []
    for _ in range(args.repeat):
        loops.append(plain_loop(args.steps, loop_split))
        with tempfile.TemporaryDirectory() as tmp:
            execs.append(executor_loop(args.steps, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            pipes.append(pipeline_run(args.steps, Path(tmp), split=pipe_split))
    with tempfile.TemporaryDirectory() as tmp:
        cold = pipeline_run(args.steps, Path(tmp), warm=False)
    with tempfile.TemporaryDirectory() as tmp:
        long = pipeline_run(args.long, Path(tmp)) if args.long else None
    loop = statistics.median(x.total for x in loops)
    pipe = statistics.median(x.total for x in pipes)
    execd = statistics.median(execs)
    # The rest: everything after the first command, which both sides start after the same pause.
    loop_rest = statistics.median(x.total - x.first for x in loops)
    pipe_rest = statistics.median(x.total - x.first for x in pipes)
    rest = args.steps - 1
    print(f"{args.steps}-step linear pipeline of true, median of {args.repeat}, each side after a {PAUSE:g} s pause:")
    print(f"  {'':24} {'total':>9} {'1st command':>12} {f'other {rest}':>10}  per command after the 1st")
    for name, total, first, after in (
        ("plain posix_spawn loop", loop, statistics.median(x.first for x in loops), loop_rest),
        ("corral pipeline", pipe, statistics.median(x.first for x in pipes), pipe_rest),
    ):
        print(f"  {name:24} {total * 1000:6.1f} ms {first * 1000:9.1f} ms {after * 1000:7.1f} ms  {after / rest * 1000:.2f} ms")
    print(f"  ratio to the plain loop: {pipe / loop:8.2f}x  (target <= 2x); after the 1st command {pipe_rest / loop_rest:.2f}x")
    print(f"  executor only, no store: {execd * 1000:8.1f} ms ({execd / args.steps * 1000:.2f} ms/command);"
          f" the pipeline is {pipe / execd:.2f}x that (what step bookkeeping adds)")
    print(f"  (cold: spawners started by the run itself: {cold.total * 1000:.1f} ms)")
    if long is not None:
        print(f"  {args.long}-step pipeline      : {long.total * 1000:8.1f} ms ({long.total / args.long * 1000:.2f} ms/step;"
              f" {long.total / args.long / (pipe / args.steps):.2f}x the {args.steps}-step pipeline's per step)")

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.3f} ms"

    print("  where a command's time goes (medians):")
    print(f"    plain loop: posix_spawn {ms([a for a, _ in loop_split])}, then running until reaped {ms([b for _, b in loop_split])}")
    print(f"    pipeline:   previous step's end to this step started {ms([a for a, _ in pipe_split])}"
          f" (notice, bookkeeping, request, log file, spawn), then running until its end was seen {ms([b for _, b in pipe_split])}")


if __name__ == "__main__":
    main()
