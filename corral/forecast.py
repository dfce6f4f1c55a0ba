"""Simulate a job's schedule and policies with a given run duration.

Pure: it drives the same ``policy`` functions the engine uses, over simulated
runs, so "every second slot is skipped" is predicted before it happens.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from corral import durations, policy, schedule
from corral.spec import JobSpec


@dataclass
class SimRun:
    id: int
    state: str
    scheduled_for: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Slot:
    scheduled_for: datetime
    outcome: str  # "run" | "skipped" | "queued"
    reason: str | None = None
    message: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "scheduled_for": self.scheduled_for.isoformat(),
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
        }


@dataclass
class Forecast:
    job: str
    duration: timedelta
    start: datetime
    end: datetime
    slots: list[Slot] = field(default_factory=list)
    effective_cadence: timedelta | None = None
    nominal_interval: timedelta | None = None
    suggestions: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[Slot]:
        return [s for s in self.slots if s.outcome == "skipped"]

    def as_dict(self) -> dict[str, object]:
        return {
            "job": self.job,
            "duration_seconds": self.duration.total_seconds(),
            "from": self.start.isoformat(),
            "until": self.end.isoformat(),
            "slots": [s.as_dict() for s in self.slots],
            "effective_cadence_seconds": (
                self.effective_cadence.total_seconds() if self.effective_cadence is not None else None
            ),
            "nominal_interval_seconds": (
                self.nominal_interval.total_seconds() if self.nominal_interval is not None else None
            ),
            "suggestions": self.suggestions,
        }


def simulate(job: JobSpec, *, start: datetime, days: float, duration: timedelta) -> Forecast:
    """Every slot in (start, start + days] and what the job's policies make of it,
    assuming each run takes ``duration`` and nothing else is running at ``start``."""
    end = start + timedelta(days=days)
    timed = [s for s in job.schedules if s.kind != "after_completion"]
    gaps = [s.gap for s in job.schedules if s.kind == "after_completion"]  # type: ignore[attr-defined]
    slot_times, _ = schedule.slots_between(timed, start, end, limit=20_000) if timed else ([], 0)

    # Event queue: (time, order, kind, payload). Ends sort before slots at the same instant.
    events: list[tuple[datetime, int, int, object]] = []
    seq = 0

    def push(at: datetime, kind: int, payload: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, kind, seq, payload))

    for at in slot_times:
        push(at, 2, at)
    if gaps and not slot_times:
        push(start, 2, start)  # after_completion only: the first run starts right away

    runs: list[SimRun] = []
    results: dict[int, Slot] = {}
    next_id = 1
    fc = Forecast(job=job.name, duration=duration, start=start, end=end)

    def last_executed() -> SimRun | None:
        done = [r for r in runs if r.started_at is not None]
        return max(done, key=lambda r: r.started_at) if done else None  # type: ignore[arg-type,return-value]

    def begin(run: SimRun, at: datetime) -> None:
        run.state = "running"
        run.started_at = at
        run.ended_at = None
        push(at + duration, 0, run)

    while events:
        at, kind, _, payload = heapq.heappop(events)
        if at > end and kind != 0:
            continue
        if kind == 0:  # a run ends
            run = payload  # type: ignore[assignment]
            assert isinstance(run, SimRun)
            if run.state != "running" or run.started_at is None or run.started_at + duration != at:
                continue
            run.state = "succeeded"
            run.ended_at = at
            res = results[run.id]
            results[run.id] = Slot(res.scheduled_for, res.outcome, res.reason, res.message, run.started_at, at)
            if gaps:
                nxt = at + min(gaps)
                if nxt <= end:
                    push(nxt, 2, nxt)
            queued = [r for r in runs if r.state == "queued"]
            if queued and not any(r.state in ("running", "pending") for r in runs):
                q = queued[0]
                d = policy.release(job, q, now=at, last_executed=last_executed())  # type: ignore[arg-type]
                if d.skipped:
                    q.state = "skipped"
                    results[q.id] = Slot(q.scheduled_for, "skipped", d.reason, d.message)
                else:
                    q.state = "pending"
                    push(d.not_before or at, 1, q)
        elif kind == 1:  # a released run starts
            run = payload  # type: ignore[assignment]
            assert isinstance(run, SimRun)
            if run.state == "pending":
                begin(run, at)
                res = results[run.id]
                results[run.id] = Slot(res.scheduled_for, res.outcome, res.reason, res.message, at, at + duration)
        else:  # a slot falls due
            active = [r for r in runs if r.state in ("pending", "queued", "running")]
            d = policy.admit(job, slot=at, now=at, active=active, last_executed=last_executed())  # type: ignore[arg-type]
            run = SimRun(id=next_id, state=d.state, scheduled_for=at)
            next_id += 1
            runs.append(run)
            if d.skipped:
                results[run.id] = Slot(at, "skipped", d.reason, d.message)
                continue
            for victim_id in d.stop:
                victim = next(r for r in runs if r.id == victim_id)
                victim.state = "cancelled"
                victim.ended_at = at
                res = results[victim.id]
                results[victim.id] = Slot(res.scheduled_for, res.outcome, "replaced", "terminated by a newer run",
                                          victim.started_at, at)
            if d.state == "queued" and d.stop:
                run.state = "pending"
                begin(run, at)
                results[run.id] = Slot(at, "run", None, d.message, at, at + duration)
            elif d.state == "queued":
                results[run.id] = Slot(at, "queued", None, d.message)
            else:
                begin(run, at)
                results[run.id] = Slot(at, "run", None, None, at, at + duration)

    fc.slots = [results[i] for i in sorted(results)]
    fc.slots.sort(key=lambda s: s.scheduled_for)
    starts = sorted(s.starts_at for s in fc.slots if s.starts_at is not None)
    if len(starts) >= 2:
        gaps_between = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
        fc.effective_cadence = timedelta(seconds=statistics.median(gaps_between))
    fc.nominal_interval = schedule.interval_of(list(job.schedules)) if timed else None
    fc.suggestions = suggest(job, duration, fc)
    return fc


def suggest(job: JobSpec, duration: timedelta, fc: Forecast) -> list[str]:
    """Schedules that fit a run of ``duration``, when the current one does not."""
    nominal = fc.nominal_interval
    if nominal is None or duration <= nominal and not fc.skipped:
        return []
    # 15 % headroom, rounded up to a whole hour (or minute for short jobs).
    unit = 3600 if duration >= timedelta(hours=2) else 60
    every = math.ceil(duration.total_seconds() * 1.15 / unit) * unit
    gap = max(unit, math.ceil(duration.total_seconds() * 0.2 / unit) * unit)
    name = durations.spec(timedelta(seconds=every))
    gap_s = durations.spec(timedelta(seconds=gap))
    out = [
        f"schedule: {{every: {name}}}  # a fixed cadence longer than the {durations.spec(duration)} run",
        f"schedule: {{after_completion: {gap_s}}}  # start {gap_s} after each run ends",
    ]
    if job.overlap == "skip":
        out.append("overlap: queue_one  # keep the daily slot but start it as soon as the previous run ends")
    return out


def percentiles(values: Sequence[float]) -> tuple[float, float] | None:
    """(p50, p95) of observed durations in seconds, or None without history."""
    if not values:
        return None
    ordered = sorted(values)

    def pick(q: float) -> float:
        idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[idx]

    return pick(0.50), pick(0.95)
