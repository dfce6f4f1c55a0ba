"""Turn due schedule slots into run records, each with exactly one outcome.

``Scheduler.enqueue_due(now)`` is the step; the engine's loop calls it and
sleeps until the instant it returns. Every slot becomes one run row keyed on
``job@instant`` (so a restart can never fire a slot twice): ``pending`` to
start now, ``queued`` behind a running run, or ``skipped`` with a reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from corral import policy, schedule
from corral.spec import JobSpec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run

log = logging.getLogger("corral.scheduler")

ON_TIME = timedelta(seconds=60)
"""A slot found due less than this late is simply run; older ones are missed
slots and follow the job's ``catchup`` policy."""

MAX_SKIPS_RECORDED = 1000
"""Per job and catch-up pass, missed slots beyond this are summarised in one
extra skipped record instead of one row each."""


class Scheduler:
    def __init__(self, store: Store, jobs: Mapping[str, JobSpec]) -> None:
        self.store = store
        self.jobs: dict[str, JobSpec] = dict(jobs)
        self._next_due: dict[str, datetime | None] = {}
        self._cursors: dict[str, datetime | None] = {}
        self._loaded = False
        self._min_due: object = _UNKNOWN
        self._unsaved_cursors: dict[str, datetime] = {}
        self.created = 0
        """Run records created so far (the engine dispatches when this grows)."""

    def set_jobs(self, jobs: Mapping[str, JobSpec]) -> None:
        """New job definitions (live reload). Cursors are kept."""
        self.jobs = dict(jobs)
        self._next_due.clear()
        self._min_due = _UNKNOWN

    def forget_due(self, job: str) -> None:
        """Recompute the job's next slot on the next step (a run of it ended)."""
        self._forget(job)

    # -- the step ---------------------------------------------------------------

    def enqueue_due(self, now: datetime) -> datetime | None:
        """Create run records for every slot due at or before ``now``.

        Returns the next instant a slot falls due (None if none is known)."""
        if not self._loaded:
            for job, row in self.store.job_states().items():
                self._cursors[job] = row.get("cursor")
            self._loaded = True
        soonest = self.next_wake(now)
        if soonest is None or soonest > now:
            return soonest  # the common case: nothing due, no work
        due_jobs = []
        for name, job in self.jobs.items():
            if not job.enabled or job.manual_only:
                continue
            due = self._due_of(name, job, now)
            if due is not None and due <= now:
                due_jobs.append(job)
        if not due_jobs:
            return self.next_wake(now)
        states = self.store.job_states()
        active_by_job: dict[str, list[Run]] = defaultdict(list)
        if len(due_jobs) > 20:
            for run in self.store.active_runs():
                active_by_job[run.job].append(run)
        else:
            for job in due_jobs:
                active_by_job[job.name] = self.store.active_runs(job.name)
        creates: list[dict[str, Any]] = []
        stops: list[int] = []
        new_cursors: dict[str, datetime] = {}
        for job in due_jobs:
            name = job.name
            cursor = self._cursors.get(name)
            paused = bool(states.get(name, {}).get("paused"))
            slots, more = self._slots(job, cursor, now)
            made, victims = self._decide(job, slots, more, now, active_by_job[name], paused)
            creates.extend(made)
            stops.extend(victims)
            new_cursors[name] = now
            self._cursors[name] = now
            self._forget(name)
        if creates:
            self.store.create_runs(creates, now=now)
            self.created += len(creates)
        new_cursors.update(self._unsaved_cursors)
        self._unsaved_cursors = {}
        self.store.set_cursors(new_cursors, now=now)
        for victim in stops:
            self.store.request_stop(victim, "replaced", now=now)
        return self.next_wake(now)

    def next_wake(self, now: datetime) -> datetime | None:
        if self._min_due is _UNKNOWN:
            best: datetime | None = None
            for name, job in self.jobs.items():
                if not job.enabled or job.manual_only:
                    continue
                due = self._due_of(name, job, now)
                if due is not None and (best is None or due < best):
                    best = due
            self._min_due = best
        if self._unsaved_cursors:
            self.store.set_cursors(self._unsaved_cursors, now=now)
            self._unsaved_cursors = {}
        return self._min_due  # type: ignore[return-value]

    def _forget(self, name: str) -> None:
        self._next_due.pop(name, None)
        self._min_due = _UNKNOWN

    # -- helpers ------------------------------------------------------------------

    def _due_of(self, name: str, job: JobSpec, now: datetime) -> datetime | None:
        if name in self._next_due:
            return self._next_due[name]
        cursor = self._cursors.get(name)
        if cursor is None:
            # A job seen for the first time: nothing before now is "missed".
            self._cursors[name] = now
            self._unsaved_cursors[name] = now
            cursor = now
        due = schedule.next_fire(
            [s for s in job.schedules if s.kind != "after_completion"], cursor
        )
        after = self._after_completion_due(job, cursor, now)
        if after is not None and (due is None or after < due):
            due = after
        self._next_due[name] = due
        return due

    def _after_completion_due(self, job: JobSpec, cursor: datetime, now: datetime) -> datetime | None:
        gaps = [s for s in job.schedules if s.kind == "after_completion"]
        if not gaps:
            return None
        if self.store.active_runs(job.name):
            return None  # the next slot is known only once the current run ends
        last = self.store.last_executed(job.name)
        if last is None:
            # Never ran: the first slot is when corral first sees the job.
            return cursor if self.store.last_run(job.name) is None else None
        if last.ended_at is None:
            return None
        due = min(last.ended_at + s.gap for s in gaps)  # type: ignore[attr-defined]
        return due if due > cursor else None

    def _slots(self, job: JobSpec, cursor: datetime | None, now: datetime) -> tuple[list[datetime], int]:
        """Slots in (cursor, now], and how many more there were beyond the cap."""
        if cursor is None:
            cursor = now
        timed = [s for s in job.schedules if s.kind != "after_completion"]
        slots, _more = schedule.slots_between(timed, cursor, now, limit=MAX_SKIPS_RECORDED + 1) if timed else ([], 0)
        if _more and job.catchup.mode != "none":
            # A long outage: the first slots were listed, but catch-up wants the
            # newest ones (inside its window), so list those too.
            span = job.catchup.window
            while True:  # shrink the span until the newest slots fit the cap
                tail, beyond = schedule.slots_between(timed, max(cursor, now - span), now, limit=MAX_SKIPS_RECORDED)
                if not beyond or span <= ON_TIME:
                    break
                span = span / 2
            if tail and tail[-1] != slots[-1]:
                listed = len(slots)
                slots = sorted(set(slots) | set(tail))
                _more = max(0, _more - (len(slots) - listed))
        after = self._after_completion_due(job, cursor, now)
        if after is not None and after <= now and after not in slots:
            slots = sorted(slots + [after])
        return slots, _more

    def _decide(
        self, job: JobSpec, slots: list[datetime], more: int, now: datetime, active: list[Run], paused: bool
    ) -> tuple[list[dict[str, Any]], list[int]]:
        creates: list[dict[str, Any]] = []
        stops: list[int] = []
        if not slots:
            return creates, stops
        on_time = [s for s in slots if now - s <= ON_TIME]
        missed = [s for s in slots if now - s > ON_TIME]
        to_run: list[tuple[datetime, bool]] = [(s, False) for s in on_time]
        if missed:
            plan = policy.plan_catchup(job.catchup, missed, now=now)
            if on_time and job.catchup.mode == "latest" and plan.run:
                # A slot is due right now: it is newer than any missed one.
                superseded = tuple((s, "missed while corral was not running; the slot due now runs instead "
                                    "(catchup: latest)") for s in plan.run)
                plan = policy.CatchupPlan(run=(), skip=tuple(sorted(plan.skip + superseded)))
            for slot, why in plan.skip[:MAX_SKIPS_RECORDED]:
                creates.append(_row(job, slot, "skipped", policy.CATCHUP, why, catchup=True))
            extra = len(plan.skip) - MAX_SKIPS_RECORDED + more
            if extra > 0:
                last = plan.skip[-1][0]
                creates.append(
                    dict(
                        _row(job, last + timedelta(microseconds=1), "skipped", policy.CATCHUP,
                             f"{extra} further missed slots up to {last.isoformat()} skipped (catchup: {job.catchup.mode})",
                             catchup=True),
                    )
                )
            to_run = [(s, True) for s in plan.run] + to_run
        last_exec = self.store.last_executed(job.name) if job.min_gap is not None else None
        for slot, is_catchup in to_run:
            decision = policy.admit(job, slot=slot, now=now, active=active, last_executed=last_exec, paused=paused)
            row = _row(job, slot, decision.state, decision.reason, decision.message, catchup=is_catchup)
            row["not_before"] = decision.not_before
            creates.append(row)
            stops.extend(decision.stop)
            if decision.state in (t.PENDING, t.QUEUED):
                # Later slots of this same pass see this one as in flight.
                active.append(_Pending(id=0, state=decision.state, scheduled_for=slot))  # type: ignore[arg-type]
            if decision.skipped:
                log.info("%s slot %s skipped: %s", job.name, slot.isoformat(), decision.message)
        return creates, stops


_UNKNOWN = object()


class _Pending:
    """A run decided in this pass but not yet written (for later slots' decisions)."""

    def __init__(self, id: int, state: str, scheduled_for: datetime) -> None:
        self.id = id
        self.state = state
        self.scheduled_for = scheduled_for
        self.started_at = None
        self.ended_at = None


def _row(
    job: JobSpec, slot: datetime, state: str, reason: str | None, message: str | None, *, catchup: bool
) -> dict[str, Any]:
    return dict(
        job=job.name,
        state=state,
        trigger="catchup" if catchup else "schedule",
        scheduled_for=slot,
        reason=reason,
        message=message,
        slot=True,
        catchup=catchup,
        admitted=True,
    )
