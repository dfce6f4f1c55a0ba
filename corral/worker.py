"""Claim pending runs, start them, and record how they ended.

``Worker.dispatch(now)`` is the step: it claims every pending run it may start
(a conditional UPDATE: exactly one claimer wins) and hands it to the executor's
Supervisor. ``Worker.record(outcome, now)`` turns a finished process into the
run's final state, schedules a retry when the policy says so, and releases the
next queued run of the job. ``Worker.recover(now)`` adopts or closes runs left
behind by a previous ``corral up`` that died.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal as signals
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from corral import durations, errors, executor, pipeline, policy, triggers, waitfor
from corral import params as params_mod
from corral.spec import JobSpec, Settings, StepSpec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run, Step

log = logging.getLogger("corral.worker")


# Each path below is one joinpath rather than two "/": a burst builds thousands.
def log_path_for(settings: Settings, job: str, run_id: int) -> Path:
    return settings.log_dir.joinpath(job, f"{run_id}.log")


def exit_path_for(settings: Settings, job: str, run_id: int) -> Path:
    return settings.log_dir.joinpath(job, f"{run_id}.exit")


def handover_dir_for(settings: Settings) -> Path:
    """Where the spawners of each corral process hold the lock a restart waits
    on (see :func:`corral.executor.await_spawners`). Job names cannot start
    with a dot, so no job's log folder is this one."""
    return settings.log_dir / ".spawners"


def step_dir_for(settings: Settings, job: str, run_id: int) -> Path:
    """Where a pipeline run keeps its steps' logs, exit files and outputs."""
    return settings.log_dir.joinpath(job, str(run_id))


def step_log_path_for(settings: Settings, job: str, run_id: int, step: str) -> Path:
    return step_dir_for(settings, job, run_id) / f"{step}.log"


def step_key(step_id: int) -> int:
    """The executor key of a step's process. Steps are keyed by their negated
    row id, so they never collide with runs (positive ids) in one Supervisor."""
    return -step_id


PIPELINE_START_RETRY = timedelta(seconds=2)
"""How soon the store is tried again for a pipeline run whose steps it did not
let start, or for runs that could not start whose end it refused."""

RERUN_TRIGGERS = ("retry", "rerun_failed")
"""Triggers of a new attempt that keeps the succeeded steps of ``retry_of``:
the job's own ``retries`` and ``corral retry --from-failed``."""


@dataclass
class _Pipeline:
    """A pipeline run this worker drives: the step rows as last written, and
    the state of the run that is not in the store (why it is stopping)."""

    run: Run
    job: JobSpec
    steps: dict[str, Step]
    params: dict[str, Any]
    deadline: datetime | None
    folder: Path
    """Where the steps' logs, exit files and outputs are (step_dir_for)."""
    stopping: tuple[str, str] | None = None
    """(reason, message) once the run is being cancelled, replaced, timed out or shut down."""
    running: dict[int, str] = field(default_factory=dict)
    """step row id -> step name of the steps with a live process."""
    retry_at: dict[str, datetime] = field(default_factory=dict)
    """step name -> when its next try may start (steps waiting out a retry delay)."""
    unwritten: list[tuple[int, str, dict[str, Any], tuple[str, ...]]] = field(default_factory=list)
    """Step changes made in memory and not yet in the store (see Worker._write_steps)."""
    # Derived once per run, so each step's end costs the same in a long pipeline as in a short one:
    specs: dict[str, StepSpec] = field(init=False)
    position: dict[str, int] = field(init=False)
    """step name -> its place in the job file."""
    names: dict[int, str] = field(init=False)
    """step row id -> step name."""
    outputs: dict[str, dict[str, str]] = field(init=False)
    """step name -> the outputs of each step that succeeded and wrote some."""
    progress: pipeline.Progress = field(init=False)
    """What may start and what is skipped, kept up to date by Worker._change_steps."""
    folder_made: bool = False

    def __post_init__(self) -> None:
        self.specs = {step.name: step for step in self.job.steps}
        self.position = {step.name: index for index, step in enumerate(self.job.steps)}
        self.names = {step.id: name for name, step in self.steps.items()}
        self.outputs = {
            name: step.output_values for name, step in self.steps.items() if step.state == t.SUCCEEDED and step.outputs
        }
        self.progress = pipeline.Progress(
            self.job.steps, {name: step.state for name, step in self.steps.items()}, parallelism=self.job.parallelism
        )

    def spec_of(self, name: str) -> StepSpec:
        return self.specs[name]


def _kill_left_behind(run: Run, job: JobSpec | None) -> int:
    """Stop the processes of a run from before a restart, found by the run id
    in their environment; how many there were."""
    return executor.kill_marked(
        {"CORRAL_RUN_ID": str(run.id), "CORRAL_NODE": run.node or ""},
        grace=job.kill_grace.total_seconds() if job else 5.0,
    )


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
        self._runs_ended = False
        self._base_env = dict(os.environ)
        self._pipelines: dict[int, _Pipeline] = {}
        """Pipeline runs in flight here, by run id."""
        self._step_runs: dict[int, int] = {}
        """step row id -> run id, for the steps with a live process."""
        self._waiting_since: dict[int, datetime] = {}
        """run id -> when this worker first found the run's ``wait_for`` unmet
        (in memory: a restart of corral starts the wait's timeout again)."""
        self.triggered = 0
        """Runs created by job-after-job triggers so far."""
        self._unrecorded: list[executor.Outcome] = []
        """Runs that could not start and whose end the store refused (see _record_refused)."""
        self._held_pipelines: dict[int, Run] = {}
        """Pipeline runs claimed whose steps the store did not let start yet (see _begin_pipeline)."""
        self._started: dict[int, tuple[Run, datetime]] = {}
        """The runs this worker started (as claimed, and when their process
        started), until their end is recorded: what the end needs to know of
        them (job, attempt, slot, start), without reading them back from the
        store or copying each one."""

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
        a pending run becomes startable (its ``not_before``, or the next look at
        its ``wait_for`` conditions), if any; ``now`` when triggers created runs
        that still need admitting."""
        before = self.triggered
        for run in list(self._held_pipelines.values()):
            self._begin_pipeline(run, now)
        if self._unrecorded:
            refused, self._unrecorded = self._unrecorded, []
            self._record_refused(refused, now)
        next_at = self._dispatch(now)
        self._retry_steps(now)  # the engine wakes for these by next_step_retry
        if self._held_pipelines or self._unrecorded:
            again = now + PIPELINE_START_RETRY
            next_at = again if next_at is None or again < next_at else next_at
        return now if self.triggered != before else next_at

    def _retry_steps(self, now: datetime) -> None:
        """Start the pipeline steps whose retry delay is over (or stop a run
        whose timeout came while it waited)."""
        for pr in list(self._pipelines.values()):
            if pr.retry_at and (min(pr.retry_at.values()) <= now or (pr.deadline is not None and now >= pr.deadline)):
                self._advance(pr, now)

    def stop_idle_pipelines(self, now: datetime) -> None:
        """At shutdown: pipeline runs with no step running (waiting out a
        retry delay) end now, their pending steps skipped, instead of being
        left running in the store with nothing to finish them."""
        for pr in list(self._pipelines.values()):
            if not pr.running:
                self._advance(pr, now)

    def next_step_retry(self) -> datetime | None:
        """When a pipeline step waiting out its retry delay may start (or its
        run's timeout comes first): the engine wakes then."""
        next_at: datetime | None = None
        for pr in self._pipelines.values():
            if not pr.retry_at:
                continue
            soonest = min(pr.retry_at.values())
            if pr.deadline is not None and pr.stopping is None:
                soonest = min(soonest, pr.deadline)
            next_at = soonest if next_at is None or soonest < next_at else next_at
        return next_at

    def _dispatch(self, now: datetime) -> datetime | None:
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
        startable = self.store.startable_runs(limit=1000 if room is None else room + 100)
        if self._waiting_since:  # forget runs that stopped waiting elsewhere (cancelled, taken by another node)
            ids = {run.id for run in startable}
            self._waiting_since = {k: v for k, v in self._waiting_since.items() if k in ids}
        for run in startable:
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
            if job.wait_for:
                verdict = self._check_wait(run, job, now)
                if verdict.state == "timed_out":
                    skips.append((run.id, t.FAILED, dict(reason=waitfor.WAIT_TIMEOUT, message=verdict.message)))
                    continue
                if verdict.state == "waiting":
                    if verdict.next_check is not None and (next_at is None or verdict.next_check < next_at):
                        next_at = verdict.next_check
                    continue
            if run.catchup:
                if catchup_room <= 0:
                    continue
                catchup_room -= 1
            chosen.append(run)
        if skips:
            skipped = self.store.transition_many(skips, now=now, expect=(t.PENDING,))
            for job_name in {self.store.get_run(i).job for i, _, _ in skips}:
                if job_name in self.jobs:
                    self._release_next(self.jobs[job_name], now)
            gave_up = [i for (i, state, _), ok in zip(skips, skipped) if ok and state == t.FAILED]
            if gave_up:
                self._fire_triggers([(r.job, r.id, t.FAILED) for r in self.store.get_runs(gave_up).values()], now)
        if not chosen:
            return next_at
        won = set(self.store.claim_many([r.id for r in chosen], node=self.node, now=now))
        mine = [r for r in chosen if r.id in won]  # the others were taken by another node
        if any(self.jobs[r.job].steps for r in mine):
            for run in [r for r in mine if self.jobs[r.job].steps]:
                self._begin_pipeline(run, now)
            mine = [r for r in mine if not self.jobs[r.job].steps]
        launches = [self._launch_spec(self.jobs[r.job], r) for r in mine]
        results = self.supervisor.launch_many(launches)
        started: list[tuple[int, dict[str, Any]]] = []
        failed: list[executor.Outcome] = []
        for run, launch, result in zip(mine, launches, results):
            if isinstance(result, executor.Outcome):
                failed.append(result)
                continue
            log.info("run %s of %s started (pid %s, attempt %s)", run.id, run.job, result.pid, run.attempt)
            values = dict(
                pid=result.pid,
                pgid=result.pgid,
                proc_start=result.start_time,
                started_at=result.started_at,
                log_path=str(launch.log_path),
            )
            started.append((run.id, values))
            self._started[run.id] = (run, result.started_at)
            if run.catchup:
                self._catchup_running.add(run.id)
        # One transaction for all pids. A crash before it commits leaves runs
        # claimed without a pid: recovery finds their processes by environment.
        try:
            self.store.update_runs(started, now=now)
        except errors.CorralError as exc:  # the same when the store refuses it; the runs go on
            log.error("could not record the pids of %d started run(s); they are found by their environment "
                      "after a restart: %s", len(started), exc)
        if failed:
            self._record_refused(failed, now)
        return next_at

    def _record_refused(self, outcomes: list[executor.Outcome], now: datetime) -> None:
        """Record runs that could not start; if the store refuses, keep them
        for the next dispatch (within PIPELINE_START_RETRY) instead of leaving
        them claimed with nothing to end them. Recording twice is harmless:
        a run is ended only from running or pending."""
        try:
            self.record_many(outcomes, now)
        except errors.CorralError as exc:
            log.error("could not record %d run(s) that did not start, trying again: %s", len(outcomes), exc)
            self._unrecorded = outcomes + self._unrecorded

    def _begin_pipeline(self, run: Run, now: datetime) -> None:
        """Start a claimed pipeline run's steps. If the store refuses a write,
        the run is held and tried again by the next dispatch (the engine wakes
        for it within PIPELINE_START_RETRY): its step rows are created only
        once, and a run already in hand goes on from where it is."""
        job = self.jobs.get(run.job)
        if job is None:
            self._held_pipelines.pop(run.id, None)
            log.error("run %s of %s: its job left the job file before its steps could start", run.id, run.job)
            return
        try:
            pr = self._pipelines.get(run.id)
            if pr is None:
                self._start_pipeline(run, job, now)
            else:
                self._advance(pr, now)
        except errors.CorralError as exc:
            if run.id not in self._held_pipelines:
                log.error("run %s of %s: could not start its steps, trying again: %s", run.id, run.job, exc)
            self._held_pipelines[run.id] = run
        else:
            self._held_pipelines.pop(run.id, None)

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
        upstream = triggers.upstream_of(run.params)
        if upstream is not None:
            env[triggers.ENV] = str(upstream)
        if job.params:
            # A bad stored value (the job file changed since the trigger) is
            # left out here; the run then sees the parameter missing. Pipeline
            # runs fail instead (see _start_pipeline); plain runs keep the fast path.
            env.update(params_mod.env(self._param_values(job, run, strict=False)))
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
        mine = [key for key in self.supervisor.running() if key > 0]
        if self._pipelines:
            for run in self.store.stop_requests(list(self._pipelines)):
                self._stop_pipeline(self._pipelines[run.id], run.stop_requested or "cancel", now)
        for run in self.store.stop_requests(mine):
            why = {"replaced": "replace"}.get(run.stop_requested or "", run.stop_requested)
            if why not in ("cancel", "replace", "shutdown", "timeout"):
                why = "cancel"
            self.supervisor.stop(run.id, why)

    # -- recording outcomes -------------------------------------------------------------

    def record(self, outcome: executor.Outcome, now: datetime) -> None:
        self.record_many([outcome], now)

    def take_runs_ended(self) -> bool:
        """Whether a run (not just a pipeline step) ended or failed to start since the last call."""
        ended, self._runs_ended = self._runs_ended, False
        return ended

    def record_many(self, outcomes: list[executor.Outcome], now: datetime) -> None:
        """Final states of finished processes, in one transaction, then retries
        and the release of queued runs."""
        if not outcomes:
            return
        if any(o.run_id > 0 for o in outcomes):
            self._runs_ended = True
        if any(o.run_id < 0 for o in outcomes):
            self._record_steps([o for o in outcomes if o.run_id < 0], now)
            outcomes = [o for o in outcomes if o.run_id > 0]
            if not outcomes:
                return
        runs: dict[int, Run] = {}
        started: dict[int, datetime | None] = {}
        for outcome in outcomes:
            if outcome.run_id in self._started:
                runs[outcome.run_id], started[outcome.run_id] = self._started.pop(outcome.run_id)
        if len(runs) < len(outcomes):  # adopted after a restart, or an end that could not be recorded at once
            runs.update(self.store.get_runs([o.run_id for o in outcomes if o.run_id not in runs]))
            started.update({run_id: run.started_at for run_id, run in runs.items() if run_id not in started})
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
            if started[run.id] is None:
                values["started_at"] = outcome.ended_at
            changes.append((run.id, state, values))
        done = self.store.transition_many(changes, now=now, expect=(t.RUNNING, t.PENDING))
        release: set[str] = set()
        ended: list[tuple[str, int, str]] = []  # (job, run, state) of runs whose chain of tries is over
        for (run_id, state, values), ok in zip(changes, done):
            if not ok:
                continue
            run = runs[run_id]
            self._catchup_running.discard(run_id)
            self.finished_jobs.add(run.job)
            if log.isEnabledFor(logging.INFO):
                dur = (values["ended_at"] - (started[run_id] or values["ended_at"])).total_seconds()
                log.info("run %s of %s %s in %s: %s", run_id, run.job, state, durations.format(dur), values["message"])
            job = self.jobs.get(run.job)
            if job is None:
                continue
            if not self._maybe_retry(job, run, state, values["exit_code"], now) or state == t.SUCCEEDED:
                ended.append((run.job, run_id, state))
            release.add(run.job)
        for name in release:
            self._release_next(self.jobs[name], now)
        self._fire_triggers(ended, now)

    def _maybe_retry(self, job: JobSpec, run: Run, state: str, exit_code: int | None, now: datetime) -> bool:
        """Create the retry the policy asks for; True if one was created."""
        if not policy.should_retry(job.retries, state=state, exit_code=exit_code, attempt=run.attempt):
            return False
        if not self.accepting:
            return False
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
        return True

    # -- triggers and wait_for (issue 3) ----------------------------------------------

    def _fire_triggers(self, ended: list[tuple[str, int, str]], now: datetime) -> None:
        """Create the runs that job-after-job triggers ask for, unadmitted (so
        ``admit_new`` applies the overlap policy like for ``corral trigger``).
        A failure that is retried fires nothing yet: its chain of tries is not over."""
        if not ended or not any(job.triggers for job in self.jobs.values()):
            return
        todo = triggers.starts(self.jobs, ended)
        if not todo:
            return
        paused = {name for name, row in self.store.job_states().items() if row.get("paused")}
        rows: list[dict[str, Any]] = []
        for start in todo:
            row: dict[str, Any] = dict(
                job=start.job, state=t.PENDING, trigger=triggers.TRIGGER, scheduled_for=now,
                message=start.message, admitted=False, params=start.params,
            )
            if start.job in paused:
                row.update(
                    state=t.SKIPPED, reason=policy.PAUSED, admitted=True,
                    message=f"{start.message}; {start.job} is paused, `corral resume {start.job}` to run it again",
                )
            rows.append(row)
            log.info("run %s of %s %s: starting %s", start.upstream_run, start.upstream_job, start.state, start.job)
        self.store.create_runs(rows, now=now)
        self.triggered += len(rows)

    def _job_running(self, name: str) -> bool:
        return any(run.state == t.RUNNING for run in self.store.active_runs(name))

    def _check_wait(self, run: Run, job: JobSpec, now: datetime) -> waitfor.Verdict:
        """Look at the run's ``wait_for`` conditions; say so in its message while it waits."""
        since = self._waiting_since.setdefault(run.id, now)
        held = {i: waitfor.check(cond, job_running=self._job_running) for i, cond in enumerate(job.wait_for)}
        verdict = waitfor.decide(job.wait_for, held, since=since, now=now, poll=job.wait_poll)
        if verdict.state == "waiting":
            if run.message != verdict.message:
                self.store.update_run(run.id, now=now, message=verdict.message)
            return verdict
        self._waiting_since.pop(run.id, None)
        if verdict.state == "met" and waitfor.is_waiting(run.state, run.message):
            waited = durations.format(now - since)
            self.store.update_run(
                run.id, now=now, message=f"waited {waited} for: {(run.message or '')[len(waitfor.WAITING_PREFIX):]}"
            )
        return verdict

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
        stuck = executor.await_spawners(handover_dir_for(self.settings))
        if stuck:
            log.warning(
                "spawners of a previous corral process did not write their exit statuses within %.0fs (%s);"
                " runs whose status they hold may be recorded lost",
                executor.HANDOVER_WAIT,
                ", ".join(stuck),
            )
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
            code = executor.exit_status(exit_path, run.pid, run.proc_start)
            if code is not None:
                exit_code, sig = executor.decode_status(code)
                # It ended while corral was down, and nobody looked for what it
                # left behind: those processes still carry its run id.
                leftovers = _kill_left_behind(run, job)
                outcome = executor.Outcome(
                    run_id=run.id,
                    exit_code=exit_code,
                    signal=sig,
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
                    orphans_killed=leftovers,
                )
                self.record_many([outcome], now)
                continue
            ended_steps: dict[int, int] = {}
            if run.pid is None:
                # How the steps that ended while corral was down ended, read
                # before the kill below gives the others exit files of their own.
                ended_steps = self._step_exits(run)
                # Claimed but the pid was never written (or a pipeline, which
                # has no process of its own): find the processes by run id.
                _kill_left_behind(run, job)
            self.store.transition(
                run.id,
                t.LOST,
                now=now,
                expect=(t.RUNNING,),
                reason="lost",
                message="its process was gone when corral restarted, with no exit status recorded",
            )
            self._close_steps_of_lost(run.id, now, ended_steps)
            log.warning("run %s of %s lost", run.id, run.job)
            if job is not None:
                self._maybe_retry(job, run, t.LOST, None, now)
                self._release_next(job, now)

    # -- pipelines (issue 3) ----------------------------------------------------------
    #
    # A pipeline run is claimed like any run, but has no process of its own:
    # each step is a process keyed by step_key(step row id) in the same
    # Supervisor. pipeline.plan decides what starts and what is skipped;
    # pipeline.run_state decides the run's state once no step is left.

    def _param_values(self, job: JobSpec, run: Run, *, strict: bool) -> dict[str, Any]:
        given = triggers.user_params(json.loads(run.params)) if run.params else {}
        try:
            return params_mod.resolve(job.params, given, job=job.name)
        except errors.ParamError:
            if strict:
                raise
            known = {p.name for p in job.params}
            values = {p.name: p.default for p in job.params if p.default is not None}
            values.update({k: v for k, v in given.items() if k in known})
            return values

    def _start_pipeline(self, run: Run, job: JobSpec, now: datetime) -> None:
        """Create the run's step rows (keeping succeeded ones of the attempt it
        resumes) and start what may start."""
        previous: dict[str, Step] = {}
        if run.trigger in RERUN_TRIGGERS and run.retry_of is not None:
            previous = {step.name: step for step in self.store.get_steps(run.retry_of)}
        rerun = set(pipeline.to_rerun(job.steps, {n: s.state for n, s in previous.items()}, from_failed=bool(previous)))
        rows: list[dict[str, Any]] = []
        for position, step in enumerate(job.steps):
            old = previous.get(step.name)
            if step.name in rerun or old is None:
                rows.append(dict(name=step.name, position=position, state=t.PENDING))
                continue
            rows.append(
                dict(
                    name=step.name, position=position, state=t.SUCCEEDED, reason=pipeline.KEPT,
                    message=f"kept: succeeded in run {run.retry_of}", started_at=old.started_at,
                    ended_at=old.ended_at, exit_code=old.exit_code, peak_rss=old.peak_rss,
                    cpu_seconds=old.cpu_seconds, log_path=old.log_path, log_bytes=old.log_bytes,
                    outputs=old.outputs, kept_from=old.id,
                )
            )
        steps = self.store.create_steps(run.id, rows, now=now)
        started_at = run.started_at or now
        deadline = started_at + job.timeout if job.timeout is not None else None
        try:
            values = self._param_values(job, run, strict=True)
        except errors.ParamError as exc:
            values = {}
            stopping: tuple[str, str] | None = ("bad_params", str(exc))
        else:
            stopping = None
        pr = _Pipeline(
            run=run, job=job, steps={s.name: s for s in steps}, params=values, deadline=deadline,
            folder=step_dir_for(self.settings, job.name, run.id), stopping=stopping,
        )
        self._pipelines[run.id] = pr
        log.info("run %s of %s started: pipeline of %d step(s)", run.id, run.job, len(job.steps))
        self._advance(pr, now)

    def _stop_pipeline(self, pr: _Pipeline, why: str, now: datetime) -> None:
        if pr.stopping is not None:
            return
        texts = {
            "cancel": ("cancelled", "cancelled while running"),
            "cancelled": ("cancelled", "cancelled while running"),
            "replace": ("replaced", "terminated to make room for a newer run (overlap: replace)"),
            "replaced": ("replaced", "terminated to make room for a newer run (overlap: replace)"),
            "shutdown": ("shutdown", "terminated because corral shut down and the drain period ran out"),
            "timeout": ("timeout", "the run reached its timeout"),
        }
        pr.stopping = texts.get(why, ("cancelled", "cancelled while running"))
        signal_why = {"cancelled": "cancel", "replaced": "replace", "shutdown": "shutdown", "timeout": "timeout"}[pr.stopping[0]]
        for step_id in list(pr.running):
            self.supervisor.stop(step_key(step_id), signal_why)
        self._advance(pr, now)

    def _step_env(self, pr: _Pipeline, step: StepSpec, row: Step, output_path: Path) -> dict[str, str]:
        run, job = pr.run, pr.job
        env = dict(self._base_env)
        env.update(job.env_dict)
        env.update(step.env)
        outputs: dict[str, str] = {}
        for name in sorted(pr.outputs, key=pr.position.__getitem__):  # of the steps that succeeded, in file order
            outputs.update(pr.outputs[name])
        env.update(pipeline.output_env(outputs))
        env.update(params_mod.env(pr.params))
        env.update(
            CORRAL_JOB=job.name,
            CORRAL_RUN_ID=str(run.id),
            CORRAL_ATTEMPT=str(run.attempt),
            CORRAL_SCHEDULED_FOR=run.scheduled_for.isoformat(),
            CORRAL_TRIGGER=run.trigger,
            CORRAL_NODE=self.node,
            CORRAL_STEP=step.name,
            CORRAL_STEP_ATTEMPT=str(row.attempt),
            CORRAL_OUTPUT=str(output_path),
        )
        upstream = triggers.upstream_of(run.params)
        if upstream is not None:
            env[triggers.ENV] = str(upstream)
        return env

    def _advance(self, pr: _Pipeline, now: datetime) -> None:
        """Skip what can no longer run, start what may start, and finish the run
        when no step is left."""
        while True:
            if pr.stopping is None and not self.accepting:
                pr.stopping = ("shutdown", "corral shut down before the step could start")
            if pr.stopping is None and pr.deadline is not None and now >= pr.deadline:
                self._write_steps(pr, now)
                self._stop_pipeline(pr, "timeout", now)
                return
            for name in [n for n, at in pr.retry_at.items() if at <= now or pr.steps[n].state != t.PENDING]:
                del pr.retry_at[name]
            decided = pr.progress.next(stopping=pr.stopping, held=pr.retry_at)
            if decided.skip:
                changes = [
                    (pr.steps[s.name].id, t.SKIPPED, dict(reason=s.reason, message=s.message)) for s in decided.skip
                ]
                self._change_steps(pr, changes, now, expect=(t.PENDING,))
            if not decided.start:
                break
            failed = self._launch_steps(pr, decided.start, now)
            if not failed:
                break
            self._finish_steps(pr, failed, now)  # could not start: recorded, then plan again
        self._write_steps(pr, now)
        if not pr.running and pipeline.run_state(pr.job.steps, {n: s.state for n, s in pr.steps.items()}) is not None:
            self._finish_pipeline(pr, now)

    def _launch_steps(self, pr: _Pipeline, names: tuple[str, ...], now: datetime) -> list[executor.Outcome]:
        launches: list[executor.Launch] = []
        folder = pr.folder
        if not pr.folder_made:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                pr.folder_made = True
            except OSError:
                pass  # the executor reports an unusable folder when it opens the log
        for name in names:
            step, row = pr.spec_of(name), pr.steps[name]
            output_path = folder / f"{name}.output"
            try:
                output_path.unlink(missing_ok=True)
            except OSError:
                pass
            timeout = step.timeout.total_seconds() if step.timeout is not None else None
            if pr.deadline is not None:
                left = max(0.001, (pr.deadline - now).total_seconds())
                timeout = left if timeout is None else min(timeout, left)
            cwd = step.cwd or pr.job.cwd
            launches.append(
                executor.Launch(
                    run_id=step_key(row.id),
                    argv=step.command,
                    env=self._step_env(pr, step, row, output_path),
                    cwd=str(cwd) if cwd else str(self.settings.config_path.parent),
                    log_path=folder / f"{name}.log",
                    exit_path=folder / f"{name}.{row.attempt}.exit",
                    timeout=timeout,
                    kill_grace=pr.job.kill_grace.total_seconds(),
                    log_max_bytes=pr.job.log_max_bytes,
                )
            )
        results = self.supervisor.launch_many(launches)
        started: list[tuple[int, str, dict[str, Any]]] = []
        failed: list[executor.Outcome] = []
        for launch, result in zip(launches, results):
            if isinstance(result, executor.Outcome):
                failed.append(result)
                continue
            step_id = -launch.run_id
            pr.running[step_id] = pr.names[step_id]
            self._step_runs[step_id] = pr.run.id
            started.append(
                (step_id, t.RUNNING, dict(
                    pid=result.pid, pgid=result.pgid, proc_start=result.start_time,
                    started_at=result.started_at, log_path=str(launch.log_path),
                ))
            )
        self._change_steps(pr, started, now, expect=(t.PENDING,))
        return failed

    def _change_steps(
        self, pr: _Pipeline, changes: list[tuple[int, str, dict[str, Any]]], now: datetime, *, expect: tuple[str, ...]
    ) -> None:
        """Apply step state changes to the copy in memory (this worker owns the
        run, so it is the truth) and keep them for _write_steps."""
        names = pr.names
        for step_id, state, values in changes:
            update = dict(values, state=state, updated_at=now)
            if state in t.FINAL_STATES and "ended_at" not in update:
                update["ended_at"] = now
            if isinstance(update.get("outputs"), dict):
                update["outputs"] = json.dumps(update["outputs"], sort_keys=True)
            name = names[step_id]
            pr.steps[name] = row = replace(pr.steps[name], **update)
            pr.progress.set(name, state)
            if state == t.SUCCEEDED and row.outputs:
                pr.outputs[name] = row.output_values
            pr.unwritten.append((step_id, state, values, expect))

    def _write_steps(self, pr: _Pipeline, now: datetime) -> None:
        """Write the step changes kept in memory, in one transaction.

        The end of a step is written together with the start of the steps it
        let start, after they were launched: one transaction per step instead
        of two, and the next step does not wait for the first. A crash in
        between loses nothing: the pipeline's steps are then killed by their
        run id, and the exit file of a step that had ended says how it ended
        (see recover)."""
        if not pr.unwritten:
            return
        changes, pr.unwritten = pr.unwritten, []
        try:
            done = self.store.transition_steps(changes, now=now)
        except errors.CorralError:
            # Store trouble: the engine retries the step's outcome, which
            # comes back here (see _record_steps) with these still to write.
            pr.unwritten[:0] = changes
            raise
        for (step_id, state, _values, expect), ok in zip(changes, done):
            if not ok:
                log.warning("step %s of run %s: could not record %s (it was no longer %s)", step_id, pr.run.id, state,
                            " or ".join(expect))

    def _record_steps(self, outcomes: list[executor.Outcome], now: datetime) -> None:
        by_run: dict[int, list[executor.Outcome]] = {}
        again: set[int] = set()
        for outcome in outcomes:
            step_id = -outcome.run_id
            run_id = self._step_runs.pop(step_id, None)
            if run_id is None:
                # Taken in already, by a call that failed to write it (store
                # trouble; the engine hands the outcome back): what is left
                # is to write what that call could not, and go on.
                run_id = next((r for r, pr in self._pipelines.items() if step_id in pr.names), None)
                if run_id is not None:
                    again.add(run_id)
                    continue
            if run_id is None or run_id not in self._pipelines:
                log.warning("no pipeline run for step %s that ended", step_id)
                continue
            by_run.setdefault(run_id, []).append(outcome)
        for run_id in again - by_run.keys():
            self._advance(self._pipelines[run_id], now)
        for run_id, items in by_run.items():
            pr = self._pipelines[run_id]
            for outcome in items:
                pr.running.pop(-outcome.run_id, None)
            self._finish_steps(pr, items, now)
            self._advance(pr, now)

    def _finish_steps(self, pr: _Pipeline, outcomes: list[executor.Outcome], now: datetime) -> None:
        """Final states (or a retry) of steps whose process ended or never started."""
        names = pr.names
        changes: list[tuple[int, str, dict[str, Any]]] = []
        for outcome in outcomes:
            step_id = -outcome.run_id
            name = names.get(step_id)
            if name is None:
                continue
            row, step = pr.steps[name], pr.spec_of(name)
            state, reason, message = final_state(outcome)
            if outcome.stopped_by == "timeout" and pr.deadline is not None and now >= pr.deadline - timedelta(seconds=1):
                message = "killed when the run reached its timeout"
                if pr.stopping is None:
                    pr.stopping = ("timeout", f"the run reached its timeout of {durations.format(pr.job.timeout or timedelta(0))}")
            elif outcome.stopped_by in ("cancel", "replace", "shutdown") and pr.stopping is None:
                pr.stopping = (reason or "cancelled", message)
            if outcome.orphans_killed:
                message += f"; {outcome.orphans_killed} leftover background process(es) killed"
            outputs, complaints = self._read_outputs(pr, name)
            if complaints:
                message += "; " + "; ".join(complaints)
            values: dict[str, Any] = dict(
                reason=reason, message=message, exit_code=outcome.exit_code, signal=outcome.signal,
                ended_at=outcome.ended_at, peak_rss=outcome.peak_rss, cpu_seconds=outcome.cpu_seconds,
                log_bytes=outcome.log_bytes, outputs=outputs or None,
            )
            if row.started_at is None:
                values["started_at"] = outcome.ended_at
            retry = policy.should_retry(step.retries, state=state, exit_code=outcome.exit_code, attempt=row.attempt)
            if retry and pr.stopping is None and self.accepting:
                delay = policy.retry_delay(step.retries, attempt=row.attempt, rng=self.rng)
                when = ""
                if delay > timedelta(0):
                    pr.retry_at[name] = now + delay
                    when = f", next try at {now + delay:%H:%M:%S} UTC (in {durations.format(delay)})"
                values.update(
                    attempt=row.attempt + 1,
                    message=f"retry {row.attempt} of {step.retries.attempts} after attempt {row.attempt} {state}"
                    f"{when}: {message}",
                )
                values.pop("ended_at")
                changes.append((step_id, t.PENDING, values))
                log.info("step %s of run %s %s; retrying (%s of %s) in %s", name, pr.run.id, state, row.attempt,
                         step.retries.attempts, durations.format(delay))
                continue
            changes.append((step_id, state, values))
            log.info("step %s of run %s %s: %s", name, pr.run.id, state, message)
        self._change_steps(pr, changes, now, expect=(t.PENDING, t.RUNNING))

    def _read_outputs(self, pr: _Pipeline, name: str) -> tuple[dict[str, str], list[str]]:
        path = pr.folder / f"{name}.output"
        try:
            with path.open("rb") as fh:
                data = fh.read(pipeline.OUTPUT_MAX_BYTES + 1)
        except FileNotFoundError:
            return {}, []
        except OSError as exc:
            return {}, [f"cannot read $CORRAL_OUTPUT: {exc.strerror}"]
        complaints: list[str] = []
        if len(data) > pipeline.OUTPUT_MAX_BYTES:
            data = data[: pipeline.OUTPUT_MAX_BYTES]
            complaints.append(f"$CORRAL_OUTPUT cut at {pipeline.OUTPUT_MAX_BYTES} bytes")
        outputs, problems = pipeline.parse_outputs(data.decode("utf-8", "replace"))
        return outputs, complaints + problems

    def _finish_pipeline(self, pr: _Pipeline, now: datetime) -> None:
        """The run's final state from its steps, its outputs and result, then
        what any run does at its end (retry, release the queue). The run stays
        in hand until its end is written: if the store fails here, the retry
        of the last step's outcome finishes it."""
        steps = [pr.steps[s.name] for s in pr.job.steps if s.name in pr.steps]
        verdict = pipeline.run_state(pr.job.steps, {s.name: s.state for s in steps})
        assert verdict is not None  # _advance only calls when every step is final
        state, reason, message = verdict.state, verdict.reason, verdict.message
        if pr.stopping is not None:
            why, text = pr.stopping
            state = t.TIMED_OUT if why == "timeout" else t.FAILED if why == "bad_params" else t.CANCELLED
            reason, message = why, f"{text}; {message}"
        failed = next((s for s in steps if s.state in (t.FAILED, t.TIMED_OUT, t.LOST)), None)
        exit_code = 0 if state == t.SUCCEEDED else (failed.exit_code if failed else None)
        outputs: dict[str, str] = {}
        for step in steps:
            if step.state == t.SUCCEEDED:
                outputs.update(step.output_values)
        if state != t.SUCCEEDED:  # what a failed step wrote is named in the note, never taken as the verdict
            written: dict[str, str] = {}
            for step in steps:
                written.update(step.output_values)
            result = pipeline.result_of(written, state=state, message=message)
        else:
            result = pipeline.result_of(outputs, state=state, message=message)
        self.store.set_run_result(pr.run.id, outputs=outputs, result=result, now=now)
        values: dict[str, Any] = dict(
            reason=reason,
            message=message,
            exit_code=exit_code,
            ended_at=now,
            peak_rss=max((s.peak_rss or 0 for s in steps), default=0) or None,
            cpu_seconds=sum(s.cpu_seconds or 0.0 for s in steps if s.kept_from is None),
            log_bytes=sum(s.log_bytes or 0 for s in steps),
        )
        ended = self.store.transition(pr.run.id, state, now=now, expect=(t.RUNNING,), **values)
        self._pipelines.pop(pr.run.id, None)
        if not ended:
            return
        self.finished_jobs.add(pr.run.job)
        self._runs_ended = True
        log.info("run %s of %s %s: %s", pr.run.id, pr.run.job, state, message)
        job = self.jobs.get(pr.run.job)
        if job is None:
            return
        retried = self._maybe_retry(job, pr.run, state, exit_code, now)
        self._release_next(job, now)
        if not retried or state == t.SUCCEEDED:
            self._fire_triggers([(pr.run.job, pr.run.id, state)], now)

    def _step_exits(self, run: Run) -> dict[int, int]:
        """Step row id -> the status in the exit file of each step still marked
        running whose process has ended."""
        found: dict[int, int] = {}
        folder = step_dir_for(self.settings, run.job, run.id)
        for step in self.store.get_steps(run.id):
            if step.state != t.RUNNING:
                continue
            status = executor.exit_status(folder / f"{step.name}.{step.attempt}.exit", step.pid, step.proc_start)
            if status is not None:
                found[step.id] = status
        return found

    def _close_steps_of_lost(self, run_id: int, now: datetime, ended: Mapping[int, int] | None = None) -> None:
        """After a crash, the steps of a lost pipeline run end too: the ones that
        ended on their own as their exit file says, running ones lost, pending
        ones skipped."""
        changes: list[tuple[int, str, dict[str, Any]]] = []
        for step in self.store.get_steps(run_id):
            status = (ended or {}).get(step.id)
            if step.state == t.RUNNING and status is not None:
                code, sig = executor.decode_status(status)
                state = t.SUCCEEDED if code == 0 else t.FAILED
                how = f"exited {code}" if sig is None else f"killed by signal {sig}"
                changes.append((step.id, state, dict(
                    exit_code=code, signal=sig, reason=None if code == 0 else "exit_code" if sig is None else "signal",
                    message=f"{how} while corral was down (from its exit file)",
                )))
            elif step.state == t.RUNNING:
                changes.append((step.id, t.LOST, dict(reason="lost", message="corral restarted while it ran")))
            elif step.state == t.PENDING:
                changes.append((step.id, t.SKIPPED, dict(reason="lost", message="the run was lost before it started")))
        self.store.transition_steps(changes, now=now)
