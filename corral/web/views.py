"""What the API and the pages show, gathered from the job file and the store.

Each function takes ``now`` and returns plain values; ``api`` turns them into
JSON and ``pages`` into HTML, so both always say the same thing.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from corral import durations, errors, forecast, masking, schedule
from corral.config import NO_CAP
from corral.spec import Config, JobSpec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run, Step
from corral.web import charts

EXECUTED_STATES = (t.SUCCEEDED, t.FAILED, t.TIMED_OUT)
"""Runs whose duration says how long the job takes (durations() counts these)."""
OUTCOME_STATES = (t.SUCCEEDED, t.FAILED, t.TIMED_OUT, t.LOST)
"""Runs that count for the success rate."""
ENDED_STATES = (t.SUCCEEDED, t.FAILED, t.TIMED_OUT, t.CANCELLED, t.LOST)

SPARK_RUNS = 30
CHART_RUNS = 100
FORECAST_DEFAULT_DURATION = timedelta(hours=1)
FORECAST_MAX_SLOTS = 1000
"""The simulation's cost grows with the square of the slots; beyond this the
forecast horizon is shortened (and says so)."""
TIMELINE_MAX_RUNS = 5000


def local(instant: datetime | None, zone: str) -> str:
    """``2026-01-31 01:00 KST`` (seconds shown only when not zero)."""
    if instant is None:
        return "-"
    moment = instant.astimezone(ZoneInfo(zone))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if moment.second else "%Y-%m-%d %H:%M %Z")


def relative(instant: datetime | None, now: datetime) -> str:
    """``in 3h12m``, ``5m00s ago``, ``now``."""
    if instant is None:
        return ""
    seconds = (instant - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    if seconds > 0:
        return f"in {durations.format(seconds)}"
    return f"{durations.format(-seconds)} ago"


def count(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def iso_in(instant: datetime | None, zone: str) -> str | None:
    return instant.astimezone(ZoneInfo(zone)).isoformat() if instant is not None else None


# ---------------------------------------------------------------------------
# Finding things


def find_job(cfg: Config, name: str) -> JobSpec:
    """The job called ``name``; :class:`errors.NotFound` with a did-you-mean otherwise."""
    job = cfg.jobs.get(name)
    if job is not None:
        return job
    shown = name if len(name) <= 64 else name[:61] + "..."
    close = difflib.get_close_matches(name, list(cfg.jobs), n=1)
    if close:
        hint = f'did you mean "{close[0]}"?'
    elif cfg.jobs:
        names = sorted(cfg.jobs)
        hint = "jobs are: " + ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    else:
        hint = "the job file has no jobs"
    raise errors.NotFound(f'no job "{shown}" in the job file; {hint}')


# ---------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class JobRow:
    job: JobSpec
    schedule: str
    next_at: datetime | None
    next_note: str | None
    paused: bool
    paused_at: datetime | None
    paused_by: str | None
    last: Run | None
    counts: dict[str, int]
    durations: list[float]
    """Seconds of the last runs, oldest first (for the sparkline)."""
    active: int

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def success_rate(self) -> float | None:
        done = sum(self.counts.get(s, 0) for s in OUTCOME_STATES)
        return self.counts.get(t.SUCCEEDED, 0) / done if done else None

    @property
    def skipped(self) -> int:
        return self.counts.get(t.SKIPPED, 0)

    @property
    def status(self) -> str:
        """``disabled``, ``paused`` or ``enabled``."""
        if not self.job.enabled:
            return "disabled"
        return "paused" if self.paused else "enabled"

    @property
    def spark(self) -> charts.Spark | None:
        return charts.sparkline(self.durations)

    def as_dict(self) -> dict[str, Any]:
        job = self.job
        return {
            "name": job.name,
            "description": job.description,
            "schedule": self.schedule,
            "timezone": job.timezone,
            "next_run": iso_in(self.next_at, job.timezone),
            "next_run_note": self.next_note,
            "overlap": job.overlap,
            "enabled": job.enabled,
            "paused": self.paused,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "paused_by": self.paused_by,
            "status": self.status,
            "labels": dict(job.labels),
            "last_run": self.last.as_dict() if self.last else None,
            "counts": dict(self.counts),
            "success_rate": self.success_rate,
            "skipped": self.skipped,
            "active_runs": self.active,
            "recent_durations": self.durations,
        }


def next_fires(
    job: JobSpec, now: datetime, n: int, *, active: bool, last_end: datetime | None
) -> tuple[list[datetime], str | None]:
    """Up to ``n`` coming fire times, and a note for after-completion schedules."""
    timed = [s for s in job.schedules if s.kind != "after_completion"]
    after = [s for s in job.schedules if s.kind == "after_completion"]
    times = schedule.next_times(timed, now, n) if timed else []
    note = None
    if after:
        gap = min(s.gap for s in after)  # type: ignore[attr-defined]
        if active:
            note = f"{durations.format(gap)} after the current run ends"
        elif last_end is None:
            note = "as soon as corral sees the job (it has not run yet)"
        else:
            due = last_end + gap
            times = sorted({*times, max(due, now)})[:n]
            if due <= now:
                note = f"due now ({durations.format(gap)} after the last run ended)"
    elif not timed:
        note = "manual only"
    return times, note


def matching_jobs(cfg: Config, query: str = "") -> list[str]:
    """Names of the jobs of the file matching ``query``, sorted."""
    needle = query.strip().lower()
    return [name for name, job in sorted(cfg.jobs.items()) if not needle or _matches(job, needle)]


def job_rows(
    cfg: Config, store: Store, now: datetime, *, query: str = "", offset: int = 0, limit: int | None = None
) -> list[JobRow]:
    """Every job of the file (those matching ``query``; a page of them), by name."""
    names = matching_jobs(cfg, query)
    names = names[offset : None if limit is None else offset + limit]
    states = store.job_states()
    # A page of jobs (or one) looks its runs up by name; many jobs read the whole index once.
    summaries = store.job_summaries(names if len(names) <= 500 else None)
    recent = store.recent_durations(names, limit=SPARK_RUNS)
    active_by_job: dict[str, int] = {}
    for run in store.active_runs():
        active_by_job[run.job] = active_by_job.get(run.job, 0) + 1
    rows = []
    for name in names:
        job = cfg.jobs[name]
        state = states.get(name, {})
        summary = summaries.get(name, {"counts": {}, "last": None})
        last: Run | None = summary["last"]
        last_end = last.ended_at if last is not None and last.started_at is not None else None
        times, note = next_fires(job, now, 1, active=name in active_by_job, last_end=last_end)
        rows.append(
            JobRow(
                job=job,
                schedule=schedule.describe_all(list(job.schedules)),
                next_at=times[0] if times else None,
                next_note=note,
                paused=bool(state.get("paused")),
                paused_at=state.get("paused_at"),
                paused_by=state.get("paused_by"),
                last=last,
                counts=dict(summary["counts"]),
                durations=list(reversed(recent[name])),
                active=active_by_job.get(name, 0),
            )
        )
    return rows


def _matches(job: JobSpec, needle: str) -> bool:
    words = [job.name, job.description, job.overlap] + [f"{k}={v}" if v else k for k, v in job.labels]
    return any(needle in word.lower() for word in words)


@dataclass(frozen=True)
class Stats:
    p50: float | None
    p95: float | None
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return {"p50_seconds": self.p50, "p95_seconds": self.p95, "samples": self.samples}


def duration_stats(store: Store, job: str) -> Stats:
    values = store.durations(job)
    pair = forecast.percentiles(values)
    return Stats(pair[0], pair[1], len(values)) if pair else Stats(None, None, 0)


@dataclass
class JobDetail:
    row: JobRow
    next_times: list[datetime]
    next_note: str | None
    stats: Stats
    interval: timedelta | None
    active: list[Run]

    @property
    def job(self) -> JobSpec:
        return self.row.job

    def as_dict(self, recent: Sequence[Run]) -> dict[str, Any]:
        job = self.job
        data = self.row.as_dict()
        data.update(
            {
                "schedules": [{"kind": s.kind, "text": s.text, "description": s.describe()} for s in job.schedules],
                "next_runs": [iso_in(x, job.timezone) for x in self.next_times],
                "next_runs_note": self.next_note,
                "schedule_interval_seconds": self.interval.total_seconds() if self.interval else None,
                "max_concurrent": None if job.max_concurrent >= NO_CAP else job.max_concurrent,
                "min_gap_seconds": job.min_gap.total_seconds() if job.min_gap else None,
                "timeout_seconds": job.timeout.total_seconds() if job.timeout else None,
                "start_deadline_seconds": job.start_deadline.total_seconds() if job.start_deadline else None,
                "catchup": {"mode": job.catchup.mode, "window_seconds": job.catchup.window.total_seconds()},
                "retries": job.retries.attempts,
                "durations": self.stats.as_dict(),
                "active": [r.as_dict() for r in self.active],
                "recent_runs": [r.as_dict() for r in recent],
                "source": job.source,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "default": p.default,
                        "required": p.default is None,
                        "choices": list(p.choices),
                        "description": p.description,
                    }
                    for p in job.params
                ],
                "steps": [{"name": s.name, "needs": list(s.needs)} for s in job.steps],
            }
        )
        return data


def job_detail(cfg: Config, store: Store, job: JobSpec, now: datetime) -> JobDetail:
    row = job_rows(Config(settings=cfg.settings, jobs={job.name: job}), store, now)[0]
    active = store.active_runs(job.name)
    ended = store.list_runs(job=job.name, states=ENDED_STATES, limit=1)
    last_end = ended[0].ended_at if ended and ended[0].started_at is not None else None
    times, note = next_fires(job, now, 5, active=bool(active), last_end=last_end)
    return JobDetail(
        row=row,
        next_times=times,
        next_note=note,
        stats=duration_stats(store, job.name),
        interval=schedule.interval_of(list(job.schedules)),
        active=active,
    )


def duration_samples(store: Store, job: JobSpec) -> list[charts.Sample]:
    runs = store.list_runs(job=job.name, states=EXECUTED_STATES, limit=CHART_RUNS)
    return [
        charts.Sample(r.id, r.duration or 0.0, r.state, local(r.started_at, job.timezone))
        for r in reversed(runs)
        if r.duration is not None
    ]


# ---------------------------------------------------------------------------
# Forecast


@dataclass
class ForecastView:
    forecast: forecast.Forecast
    basis: str
    """Where the assumed duration came from: ``given``, ``p95`` or ``default``."""
    days: float
    truncated: bool
    """True when the horizon was shortened to keep the simulation quick."""

    @property
    def ran(self) -> int:
        return sum(1 for s in self.forecast.slots if s.starts_at is not None)

    def as_dict(self) -> dict[str, Any]:
        data = self.forecast.as_dict()
        data.update(
            {
                "duration_basis": self.basis,
                "days": self.days,
                "truncated": self.truncated,
                "slots_run": self.ran,
                "slots_skipped": len(self.forecast.skipped),
            }
        )
        return data


def forecast_for(job: JobSpec, stats: Stats, now: datetime, *, days: float, duration: timedelta | None) -> ForecastView:
    """Simulate ``days`` from ``now`` with ``duration`` (default: the job's p95, or 1 h)."""
    if duration is not None:
        basis = "given"
    elif stats.p95 is not None:
        duration, basis = timedelta(seconds=max(stats.p95, 0.001)), "p95"
    else:
        duration, basis = FORECAST_DEFAULT_DURATION, "default"
    end = now + timedelta(days=days)
    horizon = end
    timed = [s for s in job.schedules if s.kind != "after_completion"]
    if timed:
        slots, more = schedule.slots_between(timed, now, end, limit=FORECAST_MAX_SLOTS)
        if more and slots:
            horizon = slots[-1]
    gaps = [s.gap for s in job.schedules if s.kind == "after_completion"]  # type: ignore[attr-defined]
    if gaps:
        cycle = min(gaps) + duration
        if cycle.total_seconds() > 0 and (end - now) / cycle > FORECAST_MAX_SLOTS:
            horizon = min(horizon, now + cycle * FORECAST_MAX_SLOTS)
    span_days = max((horizon - now).total_seconds() / 86400, 1e-6)
    fc = forecast.simulate(job, start=now, days=span_days, duration=duration)
    return ForecastView(forecast=fc, basis=basis, days=span_days, truncated=horizon < end)


def forecast_chart(view: ForecastView, zone: str, row: str) -> charts.Gantt:
    """The simulated runs as bars and the skipped slots as markers, on one row."""
    items = []
    for slot in view.forecast.slots:
        when = local(slot.scheduled_for, zone)
        if slot.outcome == "skipped":
            title = f"slot {when} would be skipped ({slot.reason}): {slot.message}"
            items.append(charts.Item(row, slot.scheduled_for, None, "state-skipped", title, marker=True))
        elif slot.starts_at is not None:
            title = f"slot {when} would run {local(slot.starts_at, zone)} to {local(slot.ends_at, zone)}"
            items.append(charts.Item(row, slot.starts_at, slot.ends_at, "state-forecast", title))
    fc = view.forecast
    return charts.gantt([row], items, start=fc.start, end=fc.end, zone=zone, now=fc.start)


# ---------------------------------------------------------------------------
# Timeline


@dataclass
class Timeline:
    chart: charts.Gantt
    start: datetime
    end: datetime
    zone: str
    runs: int
    truncated: bool
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[Run] = field(default_factory=list)
    """Skipped slots in the range, newest first."""


def run_title(run: Run, zone: str, now: datetime) -> str:
    if run.state == t.SKIPPED:
        slot = local(run.scheduled_for, zone)
        return f"run {run.id} of {run.job}: slot {slot} skipped ({run.reason}): {run.message or ''}"
    started = run.started_at or run.scheduled_for
    until = run.ended_at or now
    words = f"run {run.id} of {run.job}: {run.state}, {local(started, zone)}, {durations.format(until - started)}"
    if run.message:
        words += f": {run.message}"
    return words


def run_item(run: Run, zone: str, now: datetime) -> charts.Item:
    href = f"/runs/{run.id}"
    title = run_title(run, zone, now)
    if run.state == t.SKIPPED:
        return charts.Item(run.job, run.scheduled_for, None, "state-skipped", title, href, marker=True)
    start = run.started_at or run.scheduled_for
    end = run.ended_at if run.state in t.FINAL_STATES else None
    return charts.Item(run.job, start, end, f"state-{run.state}", title, href)


def timeline(cfg: Config, store: Store, now: datetime, *, span: timedelta, zone: str) -> Timeline:
    """Every run that overlaps the last ``span``, one row per job."""
    start = now - span
    # list_runs filters on scheduled_for: look one more span back so runs that
    # began before the window and ended inside it are drawn too; running runs
    # of any age come from active_runs().
    found = store.list_runs(since=start - span, until=now, limit=TIMELINE_MAX_RUNS)
    truncated = len(found) >= TIMELINE_MAX_RUNS
    by_id = {r.id: r for r in found}
    for run in store.active_runs():
        by_id.setdefault(run.id, run)
    shown: list[Run] = []
    for run in by_id.values():
        if run.state == t.SKIPPED:
            visible = start <= run.scheduled_for <= now
        else:
            begin = run.started_at or run.scheduled_for
            finish = run.ended_at if run.state in t.FINAL_STATES else now
            visible = finish is not None and finish >= start and begin <= now
        if visible:
            shown.append(run)
    shown.sort(key=lambda r: r.id)
    counts: dict[str, int] = {}
    for run in shown:
        counts[run.state] = counts.get(run.state, 0) + 1
    rows = sorted(cfg.jobs)
    notes = {r.job: "not in the job file" for r in shown if r.job not in cfg.jobs}
    chart = charts.gantt(
        rows,
        [run_item(r, zone, now) for r in shown],
        start=start,
        end=now,
        zone=zone,
        now=now,
        row_links={name: f"/jobs/{name}" for name in rows},
        row_notes=notes,
    )
    skipped = [r for r in reversed(shown) if r.state == t.SKIPPED]
    return Timeline(chart, start, now, zone, len(shown), truncated, counts, skipped)


# ---------------------------------------------------------------------------
# Logs


@dataclass(frozen=True)
class LogChunk:
    offset: int
    next_offset: int
    size: int
    text: str
    exists: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "next_offset": self.next_offset,
            "size": self.size,
            "text": self.text,
            "exists": self.exists,
        }


def _complete_utf8(chunk: bytes) -> int:
    """Length of ``chunk`` without a UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(chunk)) + 1):
        byte = chunk[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: keep looking for the lead
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return len(chunk) - back if need > back else len(chunk)
    return len(chunk)


def read_log(
    path: Path, offset: int, limit: int, *, secrets: Sequence[bytes] = (), live: bool = False
) -> LogChunk:
    """Up to ``limit`` bytes of the log from ``offset``, as text, ``secrets`` masked.

    Bad UTF-8 becomes U+FFFD. A character cut by the end of the range is left
    for the next read (``next_offset`` stops before it), so a live tail never
    shows a broken character; with ``live`` (the run is still writing), the
    start of a secret at the very end is held back the same way. If ``size``
    is below ``offset`` the log was capped (its head dropped) since the caller
    last read: read again from 0.
    """
    try:
        fh = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return LogChunk(offset, offset, 0, "", False)
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if offset >= size:
            return LogChunk(offset, offset, size, "", True)
        pad = masking.reach(secrets) if secrets else 0
        start = max(0, offset - pad)
        fh.seek(start)
        window = fh.read(offset - start + limit + pad)
    if secrets:
        window = masking.mask_bytes(window, secrets)
    chunk = window[offset - start : offset - start + limit]
    if live and secrets and offset + len(chunk) >= size:
        held = masking.partial_tail(chunk, secrets)
        if held:
            chunk = chunk[: len(chunk) - held]
    keep = _complete_utf8(chunk)
    if keep > 0:
        chunk = chunk[:keep]
    return LogChunk(offset, offset + len(chunk), size, chunk.decode("utf-8", errors="replace"), True)


def log_secrets(cfg: Config, job: str) -> tuple[bytes, ...]:
    """The secret values to mask in ``job``'s logs (none if the job left the file)."""
    spec = cfg.jobs.get(job)
    return masking.encode(spec.secret_values) if spec is not None else ()


def log_tail_start(size: int, path: Path, most: int) -> int:
    """Where to start showing the last ``most`` bytes: on a line start when one is near."""
    if size <= most:
        return 0
    start = size - most
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            head = fh.read(4096)
    except OSError:
        return start
    newline = head.find(b"\n")
    return start + newline + 1 if 0 <= newline < len(head) - 1 else start


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """The text without terminal colour and cursor sequences (shown as plain text)."""
    return _ANSI.sub("", text)


# ---------------------------------------------------------------------------
# A pipeline run's steps


@dataclass(frozen=True)
class StepRow:
    step: Step
    needs: tuple[str, ...]
    """From the job file as it is now (empty if the job or step left it)."""
    duration: float | None

    def as_dict(self) -> dict[str, Any]:
        data = self.step.as_dict()
        data.update(needs=list(self.needs), duration=self.duration)
        return data


@dataclass(frozen=True)
class RunSteps:
    run: Run
    steps: list[StepRow]
    outputs: dict[str, str]
    verdict: str | None
    note: str | None

    @property
    def graph(self) -> charts.StepGraph | None:
        nodes = []
        for row in self.steps:
            s = row.step
            shown = durations.format(row.duration) if row.duration is not None else ""
            detail = s.state.replace("_", " ") + (f" · {shown}" if shown else "")
            if s.exit_code not in (None, 0):
                detail += f" · exit {s.exit_code}"
            title = f"step {s.name}: {s.state}" + (f" ({s.reason})" if s.reason else "")
            if s.message:
                title += f": {s.message}"
            nodes.append(charts.Node(s.name, row.needs, s.state, detail, title))
        return charts.step_graph(nodes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.id,
            "job": self.run.job,
            "state": self.run.state,
            "steps": [row.as_dict() for row in self.steps],
            "outputs": self.outputs,
            "result": {"verdict": self.verdict, "note": self.note} if self.verdict else None,
        }


def run_steps(cfg: Config, store: Store, run: Run) -> RunSteps:
    """``run``'s steps in job-file order with the needs the job file gives them,
    and what the run produced (outputs, verdict and note)."""
    spec = cfg.jobs.get(run.job)
    needs = {s.name: s.needs for s in spec.steps} if spec is not None else {}
    rows = []
    for step in store.get_steps(run.id):
        took = None
        if step.started_at is not None and step.ended_at is not None:
            took = (step.ended_at - step.started_at).total_seconds()
        rows.append(StepRow(step, tuple(needs.get(step.name, ())), took))
    result = store.get_run_result(run.id) or {}
    return RunSteps(run, rows, dict(result.get("outputs") or {}), result.get("verdict"), result.get("note"))
