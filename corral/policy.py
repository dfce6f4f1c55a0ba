"""Pure policy decisions: what happens to a slot, a queued run, a failed run.

No I/O and no clock: callers pass ``now`` and what they know about the job's
runs. The scheduler, the worker and the forecast all decide through here, so
what the forecast predicts is what the engine does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from corral import durations
from corral.spec import CatchupPolicy, JobSpec, RetryPolicy

# Skip reasons (machine-readable, stable).
OVERLAP = "overlap"
MIN_GAP = "min_gap"
PAUSED = "paused"
MISSED_DEADLINE = "missed_deadline"
CATCHUP = "catchup"

SKIP_REASONS = (OVERLAP, MIN_GAP, PAUSED, MISSED_DEADLINE, CATCHUP)


class RunInfo(Protocol):
    """What the policy needs to know about an existing run."""

    @property
    def id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def scheduled_for(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Decision:
    """The fate of a new run: start it (``pending``), park it (``queued``) or
    record it as ``skipped`` with a reason. ``stop`` lists running runs to
    terminate first (overlap ``replace``)."""

    state: str
    reason: str | None = None
    message: str | None = None
    not_before: datetime | None = None
    stop: tuple[int, ...] = ()

    @property
    def skipped(self) -> bool:
        return self.state == "skipped"


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "?"
    return durations.format(now - then)


def admit(
    job: JobSpec,
    *,
    slot: datetime,
    now: datetime,
    active: Sequence[RunInfo],
    last_executed: RunInfo | None,
    paused: bool = False,
) -> Decision:
    """Decide what a run due at ``slot`` becomes, given the job's active runs
    (pending, queued or running, oldest first) and its most recent executed run.
    """
    if paused:
        return Decision("skipped", PAUSED, f"{job.name} is paused; `corral resume {job.name}` to run it again")

    running = [r for r in active if r.state == "running"]
    pending = [r for r in active if r.state == "pending"]
    queued = [r for r in active if r.state == "queued"]
    busy = running + pending  # pending runs are about to start: they count as in flight

    if busy:
        first = (running or pending)[0]
        if first.state == "running":
            holder = f"previous run {first.id} of {job.name} still running for {_ago(now, first.started_at)}"
        else:
            holder = f"run {first.id} of {job.name} is about to start"
        if job.overlap == "skip":
            return Decision("skipped", OVERLAP, f"{holder} (overlap: skip)")
        if job.overlap == "queue_one":
            if queued:
                return Decision(
                    "skipped",
                    OVERLAP,
                    f"{holder} and run {queued[0].id} is already queued behind it (overlap: queue_one)",
                )
            return Decision("queued", None, f"queued: {holder}")
        if job.overlap == "queue_all":
            return Decision("queued", None, f"queued behind {len(busy) + len(queued)} run(s): {holder}")
        if job.overlap == "replace":
            victims = tuple(r.id for r in running)
            return Decision(
                "queued",
                None,
                f"replaces run{'s' if len(victims) != 1 else ''} {', '.join(map(str, victims)) or first.id}",
                stop=victims,
            )
        if job.overlap == "allow":
            if len(busy) >= job.max_concurrent:
                return Decision(
                    "skipped",
                    OVERLAP,
                    f"{len(busy)} run(s) of {job.name} already in flight, max_concurrent is {job.max_concurrent}",
                )
        else:  # pragma: no cover - config validation rejects other values
            raise ValueError(f"unknown overlap policy {job.overlap!r}")
    elif queued:
        # Nothing in flight but runs are queued: keep order.
        if job.overlap == "queue_one":
            return Decision(
                "skipped", OVERLAP, f"run {queued[0].id} of {job.name} is already queued (overlap: queue_one)"
            )
        if job.overlap in ("queue_all", "replace"):
            return Decision("queued", None, f"queued behind run {queued[-1].id}")

    gap = min_gap_left(job, now=now, last_executed=last_executed)
    if gap is not None:
        assert last_executed is not None
        end = last_executed.ended_at or last_executed.started_at
        return Decision(
            "skipped",
            MIN_GAP,
            f"previous run {last_executed.id} of {job.name} "
            f"{'ended' if last_executed.ended_at else 'started'} {_ago(now, end)} ago; "
            f"min_gap is {durations.format(job.min_gap)}",
        )
    return Decision("pending")


def min_gap_left(job: JobSpec, *, now: datetime, last_executed: RunInfo | None) -> timedelta | None:
    """How long until ``min_gap`` allows the next start, or None if it allows it now.

    The gap counts from the end of the previous run (or its start while it is
    still running, which only matters for ``overlap: allow``)."""
    if job.min_gap is None or last_executed is None:
        return None
    ref = last_executed.ended_at or last_executed.started_at
    if ref is None:
        return None
    left = ref + job.min_gap - now
    return left if left > timedelta(0) else None


def release(job: JobSpec, queued: RunInfo, *, now: datetime, last_executed: RunInfo | None) -> Decision:
    """A queued run's turn has come (nothing of the job is in flight any more)."""
    if job.start_deadline is not None and now - queued.scheduled_for > job.start_deadline:
        return Decision(
            "skipped",
            MISSED_DEADLINE,
            f"waited {_ago(now, queued.scheduled_for)} in the queue; start_deadline is "
            f"{durations.format(job.start_deadline)}",
        )
    left = min_gap_left(job, now=now, last_executed=last_executed)
    if left is not None:
        return Decision("pending", None, f"waits {durations.format(left)} for min_gap", not_before=now + left)
    return Decision("pending")


def past_deadline(job: JobSpec, *, scheduled_for: datetime, now: datetime) -> Decision | None:
    """A pending run that could not start in time is skipped instead."""
    if job.start_deadline is None or now - scheduled_for <= job.start_deadline:
        return None
    return Decision(
        "skipped",
        MISSED_DEADLINE,
        f"could not start within start_deadline {durations.format(job.start_deadline)} "
        f"(due {_ago(now, scheduled_for)} ago)",
    )


@dataclass(frozen=True)
class CatchupPlan:
    run: tuple[datetime, ...]
    skip: tuple[tuple[datetime, str], ...]
    """(slot, message) of missed slots recorded as skipped with reason ``catchup``."""


def plan_catchup(policy: CatchupPolicy, missed: Sequence[datetime], *, now: datetime) -> CatchupPlan:
    """Which slots that fell due while corral was down still run.

    ``missed`` is in time order. Slots older than ``policy.window`` never run.
    """
    inside = [s for s in missed if now - s <= policy.window]
    if policy.mode == "all":
        chosen = set(inside)
    elif policy.mode == "latest":
        chosen = {inside[-1]} if inside else set()
    else:
        chosen = set()
    skips = []
    window = durations.format(policy.window)
    for s in missed:
        if s in chosen:
            continue
        if policy.mode == "none":
            why = "missed while corral was not running (catchup: none)"
        elif s not in inside:
            why = f"missed while corral was not running, older than the catch-up window {window}"
        else:
            why = "missed while corral was not running; only the latest missed slot runs (catchup: latest)"
        skips.append((s, why))
    return CatchupPlan(run=tuple(s for s in missed if s in chosen), skip=tuple(skips))


def should_retry(policy: RetryPolicy, *, state: str, exit_code: int | None, attempt: int) -> bool:
    """Whether a run that ended in ``state`` on try ``attempt`` gets another try."""
    if attempt > policy.attempts:
        return False
    if state not in policy.on:
        return False
    if state == "failed" and policy.exit_codes is not None:
        return exit_code in policy.exit_codes
    return True


def retry_delay(policy: RetryPolicy, *, attempt: int, rng: random.Random | None = None) -> timedelta:
    """Delay before try ``attempt + 1``: exponential backoff, capped, with jitter."""
    base = policy.backoff.total_seconds() * (policy.factor ** max(0, attempt - 1))
    base = min(base, policy.max_backoff.total_seconds())
    if policy.jitter:
        spread = base * policy.jitter
        base += (rng or random).uniform(-spread, spread)
    return timedelta(seconds=max(0.0, base))
