"""Claim pending runs, start them, and record how they ended.

``Worker.dispatch(now)`` is the step: it claims every pending run it may start
(a conditional UPDATE: exactly one claimer wins) and hands it to the executor's
Supervisor. ``Worker.record(outcome, now)`` turns a finished process into the
run's final state, schedules a retry when the policy says so, and releases the
next queued run of the job. ``Worker.recover(now)`` adopts or closes runs left
behind by a previous ``corral up`` that died.
"""

from __future__ import annotations

import logging
import os
import random
import signal as signals
import socket
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from corral import durations, executor, policy
from corral.spec import JobSpec, Settings
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run

log = logging.getLogger("corral.worker")


def log_path_for(settings: Settings, job: str, run_id: int) -> Path:
    return settings.log_dir / job / f"{run_id}.log"


def exit_path_for(settings: Settings, job: str, run_id: int) -> Path:
    return settings.log_dir / job / f"{run_id}.exit"


def final_state(outcome: executor.Outcome) -> tuple[str, str | None, str]:
    """(state, reason, message) for a finished process."""
    if outcome.reason is not None:
        return t.FAILED, outcome.reason, outcome.error or outcome.reason
    if outcome.stopped_by == "timeout":
        return t.TIMED_OUT, "timeout", "killed after reaching its timeout"
    if outcome.stopped_by in ("cancel", "replace", "shutdown"):
        reason = {"cancel": "cancelled", "replace": "replaced", "shutdown": "shutdown"}[outcome.stopped_by]
        text = {
            "cancel": "cancelled while running",
            "replace": "terminated to make room for a newer run (overlap: replace)",
            "shutdown": "terminated because corral shut down and the drain period ran out",
        }[outcome.stopped_by]
        return t.CANCELLED, reason, text
    if outcome.exit_code == 0:
        return t.SUCCEEDED, None, "exited 0"
    if outcome.signal is not None:
        try:
            name = signals.Signals(outcome.signal).name
        except ValueError:
            name = f"signal {outcome.signal}"
        return t.FAILED, "signal", f"killed by {name}"
    if outcome.exit_code is None:
        return t.FAILED, "unknown_exit", "the process ended but its exit status is unknown"
    return t.FAILED, "exit_code", f"exited {outcome.exit_code}"


class Worker:
    def __init__(
        self,
        store: Store,
        supervisor: executor.Supervisor,
        settings: Settings,
        jobs: Mapping[str, JobSpec],
        *,
        node: str,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.settings = settings
        self.jobs: dict[str, JobSpec] = dict(jobs)
        self.node = node
        self.rng = rng or random.Random()
        self.accepting = True
        self._catchup_running: set[int] = set()
        self.finished_jobs: set[str] = set()
        """Jobs with a run that ended since the engine last looked (for after_completion)."""
        self._base_env = dict(os.environ)

    def set_jobs(self, settings: Settings, jobs: Mapping[str, JobSpec]) -> None:
        self.settings = settings
        self.jobs = dict(jobs)

    # -- admission of runs created outside the engine (corral trigger) -------------

    def admit_new(self, now: datetime) -> int:
        """Apply the overlap policy to runs created by ``corral trigger``."""
        fresh = self.store.unadmitted_runs()
        for run in fresh:
            job = self.jobs.get(run.job)
            if job is None:
                self.store.transition(
                    run.id, t.CANCELLED, now=now, expect=(t.PENDING,), reason="job_removed",
                    message=f"job {run.job} is not in the job file any more", admitted=True,
                )
                continue
            active = [r for r in self.store.active_runs(run.job) if r.id != run.id and r.admitted]
            # A person asked for this run: pause does not block it, overlap does.
            last = self.store.last_executed(run.job) if job.min_gap is not None else None
            decision = policy.admit(job, slot=run.scheduled_for, now=now, active=active, last_executed=last)
            if decision.skipped:
                self.store.transition(
                    run.id, t.SKIPPED, now=now, expect=(t.PENDING,),
                    reason=decision.reason, message=decision.message, admitted=True,
                )
            elif decision.state == t.QUEUED:
                self.store.transition(
                    run.id, t.QUEUED, now=now, expect=(t.PENDING,), message=decision.message, admitted=True,
                )
                for victim in decision.stop:
                    self.store.request_stop(victim, "replaced", now=now)
            else:
                self.store.update_run(run.id, now=now, admitted=True, not_before=decision.not_before)
        return len(fresh)

    # -- starting runs ------------------------------------------------------------

    def dispatch(self, now: datetime) -> datetime | None:
        """Start every pending run that may start now. Returns the next instant
        a pending run becomes startable (its ``not_before``), if any."""
        if not self.accepting:
            return None
        running_now = len(self.supervisor.running())
        room = None if self.settings.max_running is None else self.settings.max_running - running_now
        if room is not None and room <= 0:
            return None
        self._catchup_running &= set(self.supervisor.running())
        catchup_room = self.settings.catchup_concurrency - len(self._catchup_running)
        next_at: datetime | None = None
        chosen: list[Run] = []
        skips: list[tuple[int, str, dict[str, Any]]] = []
        for run in self.store.startable_runs(limit=1000 if room is None else room + 100):
            job = self.jobs.get(run.job)
            if job is None:
                skips.append((run.id, t.CANCELLED, dict(
                    reason="job_removed", message=f"job {run.job} is not in the job file any more")))
                continue
            if run.not_before is not None and run.not_before > now:
                next_at = run.not_before if next_at is None or run.not_before < next_at else next_at
                continue
            late = policy.past_deadline(job, scheduled_for=run.scheduled_for, now=now) if not run.catchup else None
            if late is not None:
                skips.append((run.id, t.SKIPPED, dict(reason=late.reason, message=late.message)))
                continue
            if room is not None and len(chosen) >= room:
                break
            if run.catchup:
                if catchup_room <= 0:
                    continue
                catchup_room -= 1
            chosen.append(run)
        if skips:
            self.store.transition_many(skips, now=now, expect=(t.PENDING,))
            for job_name in {self.store.get_run(i).job for i, _, _ in skips}:
                if job_name in self.jobs:
                    self._release_next(self.jobs[job_name], now)
        if not chosen:
            return next_at
        won = set(self.store.claim_many([r.id for r in chosen], node=self.node, now=now))
        mine = [r for r in chosen if r.id in won]  # the others were taken by another node
        results = self.supervisor.launch_many([self._launch_spec(self.jobs[r.job], r) for r in mine])
        started: list[tuple[int, dict[str, Any]]] = []
        failed: list[executor.Outcome] = []
        for run, result in zip(mine, results):
            if isinstance(result, executor.Outcome):
                failed.append(result)
                continue
            log.info("run %s of %s started (pid %s, attempt %s)", run.id, run.job, result.pid, run.attempt)
            started.append((run.id, dict(
                pid=result.pid,
                pgid=result.pgid,
                proc_start=result.start_time,
                started_at=result.started_at,
                log_path=str(log_path_for(self.settings, run.job, run.id)),
            )))
            if run.catchup:
                self._catchup_running.add(run.id)
        # One transaction for all pids. A crash before it commits leaves runs
        # claimed without a pid: recovery finds their processes by environment.
        self.store.update_runs(started, now=now)
        self.record_many(failed, now)
        return next_at

    def _launch_spec(self, job: JobSpec, run: Run) -> executor.Launch:
        log_path = log_path_for(self.settings, job.name, run.id)
        exit_path = exit_path_for(self.settings, job.name, run.id)
        env = dict(self._base_env)
        env.update(job.env_dict)
        env.update(
            CORRAL_JOB=job.name,
            CORRAL_RUN_ID=str(run.id),
            CORRAL_ATTEMPT=str(run.attempt),
            CORRAL_SCHEDULED_FOR=run.scheduled_for.isoformat(),
            CORRAL_TRIGGER=run.trigger,
            CORRAL_NODE=self.node,
        )
        return executor.Launch(
            run_id=run.id,
            argv=job.command,
            env=env,
            cwd=str(job.cwd) if job.cwd else str(self.settings.config_path.parent),
            log_path=log_path,
            exit_path=exit_path,
            timeout=job.timeout.total_seconds() if job.timeout else None,
            kill_grace=job.kill_grace.total_seconds(),
            log_max_bytes=job.log_max_bytes,
        )

    # -- stopping runs ----------------------------------------------------------------

    def apply_stop_requests(self, now: datetime) -> None:
        mine = self.supervisor.running()
        for run in self.store.stop_requests(mine):
            why = {"replaced": "replace"}.get(run.stop_requested or "", run.stop_requested)
            if why not in ("cancel", "replace", "shutdown", "timeout"):
                why = "cancel"
            self.supervisor.stop(run.id, why)

    # -- recording outcomes -------------------------------------------------------------

    def record(self, outcome: executor.Outcome, now: datetime) -> None:
        self.record_many([outcome], now)

    def record_many(self, outcomes: list[executor.Outcome], now: datetime) -> None:
        """Final states of finished processes, in one transaction, then retries
        and the release of queued runs."""
        if not outcomes:
            return
        runs = self.store.get_runs([o.run_id for o in outcomes])
        changes: list[tuple[int, str, dict[str, Any]]] = []
        for outcome in outcomes:
            run = runs.get(outcome.run_id)
            if run is None:
                continue
            state, reason, message = final_state(outcome)
            if outcome.adopted:
                message += " (adopted after a corral restart)"
            if outcome.orphans_killed:
                message += f"; {outcome.orphans_killed} leftover background process(es) killed"
            if outcome.log_dropped:
                message += f"; {outcome.log_dropped} bytes of early output dropped by the log cap"
            values: dict[str, Any] = dict(
                reason=reason,
                message=message,
                exit_code=outcome.exit_code,
                signal=outcome.signal,
                ended_at=outcome.ended_at,
                peak_rss=outcome.peak_rss,
                cpu_seconds=outcome.cpu_seconds,
                log_bytes=outcome.log_bytes,
                log_dropped=outcome.log_dropped,
            )
            if run.started_at is None:
                values["started_at"] = outcome.ended_at
            changes.append((run.id, state, values))
        done = self.store.transition_many(changes, now=now, expect=(t.RUNNING, t.PENDING))
        release: set[str] = set()
        for (run_id, state, values), ok in zip(changes, done):
            if not ok:
                continue
            run = runs[run_id]
            self._catchup_running.discard(run_id)
            self.finished_jobs.add(run.job)
            if log.isEnabledFor(logging.INFO):
                dur = (values["ended_at"] - (run.started_at or values["ended_at"])).total_seconds()
                log.info("run %s of %s %s in %s: %s", run_id, run.job, state, durations.format(dur), values["message"])
            job = self.jobs.get(run.job)
            if job is None:
                continue
            self._maybe_retry(job, run, state, values["exit_code"], now)
            release.add(run.job)
        for name in release:
            self._release_next(self.jobs[name], now)

    def _maybe_retry(self, job: JobSpec, run: Run, state: str, exit_code: int | None, now: datetime) -> None:
        if not policy.should_retry(job.retries, state=state, exit_code=exit_code, attempt=run.attempt):
            return
        if not self.accepting:
            return
        delay = policy.retry_delay(job.retries, attempt=run.attempt, rng=self.rng)
        new_id = self.store.create_run(
            job=job.name,
            state=t.PENDING,
            trigger="retry",
            scheduled_for=run.scheduled_for,
            now=now,
            not_before=now + delay,
            attempt=run.attempt + 1,
            retry_of=run.id,
            message=f"retry {run.attempt} of {job.retries.attempts} after run {run.id} {state}, "
            f"in {durations.format(delay)}",
        )
        log.info("run %s of %s will be retried as run %s in %s", run.id, job.name, new_id, durations.format(delay))

    def _release_next(self, job: JobSpec, now: datetime) -> None:
        """If nothing of the job is in flight, the oldest queued run gets its turn."""
        if job.overlap not in ("queue_one", "queue_all", "replace") and not self._may_have_queue(job):
            return
        while not self.store.in_flight(job.name):
            nxt = self.store.first_queued(job.name)
            if nxt is None:
                return
            last = self.store.last_executed(job.name)
            decision = policy.release(job, nxt, now=now, last_executed=last)
            if decision.skipped:
                self.store.transition(
                    nxt.id, t.SKIPPED, now=now, expect=(t.QUEUED,), reason=decision.reason, message=decision.message
                )
                continue
            self.store.transition(
                nxt.id, t.PENDING, now=now, expect=(t.QUEUED,), not_before=decision.not_before,
                message=(nxt.message or "") + (f"; {decision.message}" if decision.message else ""),
            )
            return

    def _may_have_queue(self, job: JobSpec) -> bool:
        # A live reload may have changed the policy while runs were queued.
        return self.store.first_queued(job.name) is not None

    # -- crash recovery -------------------------------------------------------------------

    def recover(self, now: datetime) -> None:
        """Deal with runs a previous corral process left running on this host."""
        host = socket.gethostname()
        for run in self.store.active_runs():
            if run.state != t.RUNNING or run.id in self.supervisor.running():
                continue
            if run.node and not run.node.startswith(f"{host}:"):
                continue  # another machine's run
            job = self.jobs.get(run.job)
            exit_path = exit_path_for(self.settings, run.job, run.id)
            log_path = Path(run.log_path) if run.log_path else log_path_for(self.settings, run.job, run.id)
            if run.pid is not None and run.proc_start is not None and executor.process_alive(run.pid, run.proc_start):
                timeout_at = None
                if job is not None and job.timeout is not None and run.started_at is not None:
                    left = (run.started_at + job.timeout - now).total_seconds()
                    timeout_at = time.monotonic() + max(0.0, left)
                adopted = self.supervisor.adopt(
                    run.id,
                    run.pid,
                    run.proc_start,
                    run.pgid or run.pid,
                    exit_path,
                    log_path,
                    timeout_at_monotonic=timeout_at,
                    kill_grace=job.kill_grace.total_seconds() if job else 10.0,
                    log_max_bytes=job.log_max_bytes if job else self.settings.log_max_bytes,
                )
                if adopted:
                    self.store.update_run(run.id, now=now, node=self.node)
                    log.info("run %s of %s adopted (pid %s still running)", run.id, run.job, run.pid)
                    continue
            code = executor.read_exit_file(exit_path)
            if code is not None:
                outcome = executor.Outcome(
                    run_id=run.id,
                    exit_code=code if code < 128 else None,
                    signal=code - 128 if code > 128 else None,
                    ended_at=datetime.fromtimestamp(exit_path.stat().st_mtime, tz=now.tzinfo),
                    duration=None,
                    peak_rss=None,
                    cpu_seconds=None,
                    log_bytes=log_path.stat().st_size if log_path.exists() else 0,
                    log_dropped=0,
                    stopped_by=None,
                    error=None,
                    reason=None,
                    adopted=True,
                )
                self.record_many([outcome], now)
                continue
            if run.pid is None:
                # Claimed but the pid was never written: find the process by its run id.
                executor.kill_marked(
                    {"CORRAL_RUN_ID": str(run.id), "CORRAL_NODE": run.node or ""},
                    grace=job.kill_grace.total_seconds() if job else 5.0,
                )
            self.store.transition(
                run.id,
                t.LOST,
                now=now,
                expect=(t.RUNNING,),
                reason="lost",
                message="its process was gone when corral restarted, with no exit status recorded",
            )
            log.warning("run %s of %s lost", run.id, run.job)
            if job is not None:
                self._maybe_retry(job, run, t.LOST, None, now)
                self._release_next(job, now)
