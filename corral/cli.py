"""The ``corral`` command line. Parses arguments, calls the layers below,
prints tables for people and JSON for scripts, and turns errors into one
readable message and exit status 1."""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from corral import config_child, durations, errors, forecast, schedule
from corral.spec import Config, JobSpec
from corral.store import Store, open_store
from corral.store import tables as t
from corral.store.queries import Run

F = TypeVar("F", bound=Callable[..., Any])

STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "lost": "magenta",
    "cancelled": "yellow",
    "skipped": "dim",
    "running": "cyan",
    "pending": "blue",
    "queued": "blue",
}


class Ctx:
    def __init__(self, config_path: str | None, db: str | None) -> None:
        self.config_path = Path(config_path) if config_path else config_child.default_path(os.environ)
        self.db = db
        self._cfg: Config | None = None
        self._store: Store | None = None

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            from corral import config as config_mod  # YAML and pydantic: imported when a command needs the file

            self._cfg = config_mod.load(self.config_path, environ=os.environ)
        return self._cfg

    @property
    def store_url(self) -> str:
        return self.db or self.cfg.settings.store_url

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_url)
        return self._store

    def job(self, name: str) -> JobSpec:
        jobs = self.cfg.jobs
        if name in jobs:
            return jobs[name]
        close = difflib.get_close_matches(name, list(jobs), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else f"; jobs are: {', '.join(sorted(jobs)) or 'none'}"
        raise errors.NotFound(f'no job "{name}" in {self.config_path}{hint}')


def common(fn: F) -> F:
    fn = click.option(
        "-c",
        "--config",
        "config_path",
        envvar="CORRAL_CONFIG",
        show_envvar=True,
        help="Job file (default ./corral.yaml).",
    )(fn)
    fn = click.option(
        "--db",
        envvar="CORRAL_DB",
        show_envvar=True,
        help="Store URL, overriding the job file's (sqlite:///path or postgresql://...).",
    )(fn)
    return fn


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False, width=max(100, Console().width))


def Table(**kw: Any) -> Any:  # noqa: N802 - rich's class, imported when a table is printed
    from rich.table import Table as RichTable

    return RichTable(**kw)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _local(instant: datetime | None, tz: str) -> str:
    if instant is None:
        return "-"
    return instant.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _relative(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return ""
    delta = instant - now
    if delta.total_seconds() >= 0:
        return f"in {durations.format(delta)}"
    return f"{durations.format(-delta)} ago"


def _parse_instant(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f'"{text}" is not an ISO-8601 instant like 2026-11-01T05:30:00+00:00') from exc
    if value.tzinfo is None:
        raise click.BadParameter(f'"{text}" has no UTC offset; add one, e.g. {text}+00:00 or {text}Z')
    return value.astimezone(timezone.utc)


def _run_json(run: Run) -> dict[str, Any]:
    data = run.as_dict()
    return data


def _wake_engine(store: Store) -> int:
    from corral.engine import notify_running_engines

    return notify_running_engines(store)


class _LazyGroup(click.Group):
    """A group whose ``lazy_commands`` (name -> "module:attribute") are imported on first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            import importlib

            module, _, attribute = self.lazy_commands[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="corral")
def main() -> None:
    """corral: run batch jobs from one place with rules a person can read."""


# -- up / validate ------------------------------------------------------------


@main.command()
@common
@click.option("--host", default=None, help="Dashboard address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Dashboard port (default 8377).")
@click.option("--no-web", is_flag=True, help="Do not serve the dashboard.")
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Inventory of `corral discover --json` for the dashboard's Discovery page "
    "(default: newest *.json in .corral/inventories/ next to the job file).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def up(
    config_path: str | None, db: str | None, host: str | None, port: int | None, no_web: bool,
    inventory: Path | None, verbose: bool,
) -> None:
    """Schedule and run the jobs of the job file until stopped (Ctrl-C / SIGTERM)."""
    from corral.engine import Engine

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx = Ctx(config_path, db)
    # Checked in a child process: the checker's modules stay out of this long-lived one.
    cfg = ctx._cfg = config_child.load_in_child(ctx.config_path, environ=os.environ)
    for warning in cfg.warnings:
        logging.getLogger("corral").warning("%s", warning)
    from corral.store import migrate

    store = Store(ctx.store_url)
    migrate.upgrade_in_child(ctx.store_url, store.engine)
    ctx._store = store
    engine = Engine(cfg, store, db_override=db)
    engine.install_signal_handlers()
    if not no_web:
        _start_web(ctx, engine, host or cfg.settings.web_host, port or cfg.settings.web_port, inventory)
    engine.run_forever()


def _start_web(ctx: Ctx, engine: Any, host: str, port: int, inventory: Path | None = None) -> None:
    try:
        from corral.web import serve_in_thread
    except ImportError:
        logging.getLogger("corral").info("dashboard not available in this build")
        return
    serve_in_thread(ctx.config_path, ctx.store_url, host=host, port=port, inventory=inventory)


@main.command()
@common
def validate(config_path: str | None, db: str | None) -> None:
    """Check the job file; report every mistake with file, line, job and key."""
    ctx = Ctx(config_path, db)
    cfg = ctx.cfg
    warnings = list(cfg.warnings)
    db_file = _sqlite_file(ctx.store_url)
    if db_file is None or db_file.exists():
        try:
            store = ctx.store
            for job in cfg.jobs.values():
                warnings.extend(_duration_warnings(store, job))
        except errors.StoreError:
            pass
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{ctx.config_path}: {len(cfg.jobs)} job(s), no errors")


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    import sqlalchemy as sa

    db = sa.engine.make_url(url).database
    return Path(db) if db and db != ":memory:" else None


def _duration_warnings(store: Store, job: JobSpec) -> list[str]:
    interval = schedule.interval_of(list(job.schedules))
    stats = forecast.percentiles(store.durations(job.name))
    if interval is None or stats is None:
        return []
    p50, p95 = stats
    if p95 <= interval.total_seconds():
        return []
    return [
        f'job "{job.name}": its p95 duration {durations.format(p95)} is longer than its schedule interval '
        f"{durations.format(interval)}; with overlap {job.overlap} "
        + ("slots will be skipped" if job.overlap == "skip" else "runs will pile up or overlap")
        + f"; see `corral forecast {job.name}`"
    ]


# -- jobs / next ---------------------------------------------------------------------


@main.command()
@common
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs(config_path: str | None, db: str | None, as_json: bool) -> None:
    """List jobs: schedule, next run, policy, state and last outcome."""
    ctx = Ctx(config_path, db)
    cfg = ctx.cfg
    store = ctx.store
    now = datetime.now(timezone.utc)
    states = store.job_states()
    summaries = store.job_summaries()
    nodes = store.live_nodes()
    rows = []
    for name, job in sorted(cfg.jobs.items()):
        nxt = schedule.next_fire([s for s in job.schedules if s.kind != "after_completion"], now)
        st = states.get(name, {})
        summary = summaries.get(name, {"counts": {}, "last": None})
        last: Run | None = summary["last"]
        counts = summary["counts"]
        done = sum(counts.get(s, 0) for s in (t.SUCCEEDED, t.FAILED, t.TIMED_OUT, t.LOST))
        rate = (counts.get(t.SUCCEEDED, 0) / done) if done else None
        rows.append(
            dict(
                job=name,
                schedule=schedule.describe_all(list(job.schedules)),
                timezone=job.timezone,
                next=nxt.isoformat() if nxt else None,
                overlap=job.overlap,
                enabled=job.enabled,
                paused=bool(st.get("paused")),
                last_state=last.state if last else None,
                last_run=last.id if last else None,
                last_ended_at=last.ended_at.isoformat() if last and last.ended_at else None,
                success_rate=rate,
                skipped=counts.get(t.SKIPPED, 0),
                description=job.description,
            )
        )
    errors_seen = [n["config_error"] for n in nodes if n.get("config_error")]
    if as_json:
        _emit_json({"jobs": rows, "config_errors": errors_seen})
        return
    table = Table(title=f"{len(rows)} job(s) in {ctx.config_path}")
    for col in ("job", "schedule", "next run", "overlap", "state", "last", "ok%"):
        table.add_column(col)
    for row, job in zip(rows, (cfg.jobs[r["job"]] for r in rows)):
        nxt = datetime.fromisoformat(row["next"]) if row["next"] else None
        state = "disabled" if not row["enabled"] else ("paused" if row["paused"] else "active")
        last = f"[{STATE_STYLE.get(row['last_state'] or '', '')}]{row['last_state']}[/] #{row['last_run']}" if row["last_state"] else "-"
        rate = f"{row['success_rate'] * 100:.0f}" if row["success_rate"] is not None else "-"
        table.add_row(
            row["job"],
            row["schedule"],
            f"{_local(nxt, job.timezone)} ({_relative(nxt, now)})" if nxt else "-",
            row["overlap"],
            state,
            last,
            rate,
        )
    console = _console()
    console.print(table)
    for err in errors_seen:
        console.print(f"[red]The running corral could not reload the job file and keeps the previous one:[/]\n{err}")


@main.command(name="next")
@common
@click.argument("job")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many fire times.")
@click.option("--from", "from_", metavar="INSTANT", help="ISO-8601 instant to count from (default now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def next_(config_path: str | None, db: str | None, job: str, count: int, from_: str | None, as_json: bool) -> None:
    """Show the next fire times of JOB, in its timezone and in UTC."""
    ctx = Ctx(config_path, db)
    spec = ctx.job(job)
    start = _parse_instant(from_)
    times = schedule.next_times(list(spec.schedules), start, count)
    dst = [e for e in (schedule.next_dst_event(s, start) for s in spec.schedules) if e is not None]
    if as_json:
        tz = ZoneInfo(spec.timezone)
        _emit_json(
            {
                "job": spec.name,
                "timezone": spec.timezone,
                "schedule": schedule.describe_all(list(spec.schedules)),
                "next": [x.astimezone(tz).isoformat() for x in times],
                "dst": [
                    {"at": e.at.isoformat(), "kind": e.kind, "from": e.wall_from, "to": e.wall_to, "effect": e.effect}
                    for e in dst[:1]
                ],
            }
        )
        return
    click.echo(f"{spec.name}: {schedule.describe_all(list(spec.schedules))}")
    if spec.manual_only:
        click.echo("manual only: runs when triggered (`corral trigger`)")
    for x in times:
        click.echo(f"  {_local(x, spec.timezone):<28} {x.strftime('%Y-%m-%d %H:%M:%S')} UTC")
    if any(s.kind == "after_completion" for s in spec.schedules):
        click.echo("  (after_completion: the next slot is known once the current run ends)")
    for e in dst[:1]:
        click.echo(
            f"next DST change in {spec.timezone}: {_local(e.at, spec.timezone)} "
            f"({e.wall_from} -> {e.wall_to}): {e.effect}"
        )


# -- runs / show / logs -----------------------------------------------------------------


@main.command()
@common
@click.option("--job", help="Only this job.")
@click.option("--state", type=click.Choice(t.ALL_STATES), multiple=True, help="Only these states (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100000), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs(config_path: str | None, db: str | None, job: str | None, state: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List runs, newest first: every slot with its outcome, skips included."""
    ctx = Ctx(config_path, db)
    if job is not None:
        ctx.job(job)
    items = ctx.store.list_runs(job=job, states=state or None, limit=limit)
    if as_json:
        _emit_json([_run_json(r) for r in items])
        return
    now = datetime.now(timezone.utc)
    table = Table()
    for col in ("run", "job", "state", "scheduled", "started", "duration", "exit", "why"):
        table.add_column(col)
    for run in items:
        tz = ctx.cfg.jobs[run.job].timezone if run.job in ctx.cfg.jobs else "UTC"
        dur = run.duration
        if run.state == t.RUNNING and run.started_at:
            dur = (now - run.started_at).total_seconds()
        table.add_row(
            str(run.id),
            run.job,
            _run_state_cell(run),
            _local(run.scheduled_for, tz),
            _relative(run.started_at, now) if run.started_at else "-",
            durations.format(dur) if dur is not None else "-",
            "-" if run.exit_code is None else str(run.exit_code),
            (f"{run.reason}: " if run.reason else "") + (run.message or ""),
        )
    _console().print(table)


def _run_state_cell(run: Run) -> str:
    """A pending run held back by ``wait_for`` shows as ``waiting`` (its message says for what)."""
    from corral import waitfor

    if waitfor.is_waiting(run.state, run.message):
        return "[yellow]waiting[/]"
    return f"[{STATE_STYLE.get(run.state, '')}]{run.state}[/]"


def _get_run(ctx: Ctx, run_id: str) -> Run:
    try:
        rid = int(run_id.lstrip("#"))
    except ValueError as exc:
        raise errors.NotFound(f'"{run_id}" is not a run id; run ids are numbers, see `corral runs`') from exc
    return ctx.store.get_run(rid)


@main.command()
@common
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(config_path: str | None, db: str | None, run_id: str, as_json: bool) -> None:
    """Show everything recorded about one run."""
    ctx = Ctx(config_path, db)
    run = _get_run(ctx, run_id)
    steps = ctx.store.get_steps(run.id)
    result = ctx.store.get_run_result(run.id)
    if as_json:
        data = _run_json(run)
        data["steps"] = [_step_json(step) for step in steps]
        data["outputs"] = result["outputs"] if result else {}
        data["result"] = {"verdict": result["verdict"], "note": result["note"]} if result and result["verdict"] else None
        _emit_json(data)
        return
    data = _run_json(run)
    width = max(len(k) for k in data)
    for key, value in data.items():
        if value is None:
            continue
        if key == "peak_rss":
            value = f"{value / 1048576:.1f} MiB"
        if key == "duration":
            value = durations.format(value)
        click.echo(f"{key:<{width}}  {value}")
    if result and result["verdict"]:
        click.echo(f"{'result':<{width}}  {result['verdict']}" + (f" - {result['note']}" if result["note"] else ""))
    if result and result["outputs"]:
        click.echo("outputs:")
        for key, value in result["outputs"].items():
            click.echo(f"  {key}={value}")
    if steps:
        _print_steps(steps)


def _step_json(step: Any) -> dict[str, Any]:
    data = step.as_dict()
    duration = None
    if step.started_at is not None and step.ended_at is not None:
        duration = (step.ended_at - step.started_at).total_seconds()
    out = {key: data[key] for key in ("name", "state", "reason", "started_at", "ended_at", "exit_code")}
    out.update(
        message=step.message, attempt=step.attempt, duration=duration, pid=step.pid, signal=step.signal,
        peak_rss=step.peak_rss,
        cpu_seconds=step.cpu_seconds, outputs=data["outputs"], log_path=step.log_path,
    )
    return out


def _print_steps(steps: list[Any]) -> None:
    table = Table(title="steps")
    for col in ("step", "state", "started", "duration", "exit", "why"):
        table.add_column(col)
    for step in steps:
        dur = (step.ended_at - step.started_at).total_seconds() if step.started_at and step.ended_at else None
        table.add_row(
            step.name,
            f"[{STATE_STYLE.get(step.state, '')}]{step.state}[/]",
            step.started_at.strftime("%H:%M:%S") if step.started_at else "-",
            durations.format(dur) if dur is not None else "-",
            "-" if step.exit_code is None else str(step.exit_code),
            (f"{step.reason}: " if step.reason else "") + (step.message or ""),
        )
    _console().print(table)


@main.command()
@common
@click.argument("run_id", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends.")
@click.option("--step", "step_name", metavar="NAME", help="Only this step of a pipeline run.")
def logs(config_path: str | None, db: str | None, run_id: str, follow: bool, step_name: str | None) -> None:
    """Print the output (stdout and stderr) of a run, or of one step of a pipeline run."""
    ctx = Ctx(config_path, db)
    run = _get_run(ctx, run_id)
    path = Path(run.log_path) if run.log_path else None
    steps = ctx.store.get_steps(run.id) if path is None or step_name else []
    if step_name is not None or (steps and not follow):
        _step_logs(ctx, run, steps, step_name)
        return
    if path is None:
        from corral.worker import log_path_for

        path = log_path_for(ctx.cfg.settings, run.job, run.id)
    if not path.exists():
        if run.state in (t.PENDING, t.QUEUED) and follow:
            click.echo(f"run {run.id} has not started yet; waiting...", err=True)
        elif not follow:
            raise errors.NotFound(f"run {run.id} has no log ({run.state}{': ' + run.message if run.message else ''})")
    offset = 0
    out = sys.stdout.buffer
    while True:
        if path.exists():
            with path.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < offset:  # truncated by the log cap: start over at the marker
                    offset = 0
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
                out.write(chunk)
                out.flush()
        if not follow:
            return
        run = ctx.store.get_run(run.id)
        if not run.active:
            if path.exists() and path.stat().st_size > offset:
                continue
            return
        time.sleep(0.3)


def _step_logs(ctx: Ctx, run: Run, steps: list[Any], name: str | None) -> None:
    """One step's log (``--step``), or every step's log under a header."""
    from corral.worker import step_log_path_for

    if name is not None:
        chosen = [step for step in steps if step.name == name]
        if not chosen:
            if not steps:
                raise errors.NotFound(f"run {run.id} of {run.job} has no steps; drop --step")
            close = difflib.get_close_matches(name, [s.name for s in steps], n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"steps are {', '.join(s.name for s in steps)}"
            raise errors.NotFound(f'run {run.id} has no step "{name}"; {hint}')
    else:
        chosen = steps
    out = sys.stdout.buffer
    for step in chosen:
        path = Path(step.log_path) if step.log_path else step_log_path_for(ctx.cfg.settings, run.job, run.id, step.name)
        if name is None:
            out.write(f"==> step {step.name} ({step.state}) <==\n".encode())
        if path.exists():
            out.write(path.read_bytes())
        elif name is not None:
            raise errors.NotFound(f"step {step.name} of run {run.id} has no log ({step.state})")
        out.flush()


# -- trigger / cancel / pause / resume ------------------------------------------------------


@main.command()
@common
@click.argument("job")
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 0 only if it succeeded.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--param", "param_pairs", metavar="NAME=VALUE", multiple=True, help="A job parameter (repeatable).")
def trigger(
    config_path: str | None, db: str | None, job: str, wait: bool, as_json: bool, param_pairs: tuple[str, ...]
) -> None:
    """Start a run of JOB now (its overlap policy still applies)."""
    from corral import params as params_mod

    ctx = Ctx(config_path, db)
    spec = ctx.job(job)
    if spec.monitor is not None:
        raise errors.Conflict(
            f"{spec.name} is a monitor-only job: corral does not run it, it watches its pings (docs/alerts.md); "
            "replace monitor with run to let corral run it"
        )
    values = params_mod.resolve(spec.params, params_mod.parse_pairs(param_pairs), job=spec.name)
    store = ctx.store
    now = datetime.now(timezone.utc)
    run_id = store.create_run(
        job=spec.name, state=t.PENDING, trigger="manual", scheduled_for=now, now=now, admitted=False,
        params=values or None,
    )
    assert run_id is not None
    told = _wake_engine(store)
    run = store.get_run(run_id)
    if wait:
        while run.active or not run.admitted:
            time.sleep(0.2)
            run = store.get_run(run_id)
    if as_json:
        _emit_json(_run_json(run))
    else:
        click.echo(f"run {run_id} of {spec.name}: {run.state}" + (f" ({run.message})" if run.message else ""))
        if not told and not wait:
            click.echo("note: no `corral up` is running on this machine; the run starts when one does", err=True)
    if wait and run.state != t.SUCCEEDED:
        raise click.exceptions.Exit(1)


@main.command()
@common
@click.argument("run_id", metavar="RUN")
def cancel(config_path: str | None, db: str | None, run_id: str) -> None:
    """Cancel a run: a waiting run ends now, a running one is terminated (TERM, then KILL)."""
    ctx = Ctx(config_path, db)
    run = _get_run(ctx, run_id)
    run = ctx.store.request_stop(run.id, "cancel", now=datetime.now(timezone.utc))
    _wake_engine(ctx.store)
    if run.state == t.CANCELLED:
        click.echo(f"run {run.id} of {run.job} cancelled")
    else:
        click.echo(f"run {run.id} of {run.job} is being stopped")


@main.command()
@common
@click.argument("job")
def pause(config_path: str | None, db: str | None, job: str) -> None:
    """Pause JOB: its slots are recorded as skipped (reason paused) until resumed."""
    ctx = Ctx(config_path, db)
    spec = ctx.job(job)
    ctx.store.set_paused(spec.name, True, now=datetime.now(timezone.utc), by=os.environ.get("USER", "cli"))
    _wake_engine(ctx.store)
    click.echo(f"{spec.name} paused")


@main.command()
@common
@click.argument("job")
def resume(config_path: str | None, db: str | None, job: str) -> None:
    """Resume a paused JOB."""
    ctx = Ctx(config_path, db)
    spec = ctx.job(job)
    ctx.store.set_paused(spec.name, False, now=datetime.now(timezone.utc))
    _wake_engine(ctx.store)
    click.echo(f"{spec.name} resumed")


@main.command()
@common
@click.argument("run_id", metavar="RUN")
@click.option("--from-failed", is_flag=True, help="Keep the steps that succeeded; rerun only failed and skipped ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the new run as JSON.")
def retry(config_path: str | None, db: str | None, run_id: str, from_failed: bool, as_json: bool) -> None:
    """Start a new attempt of a finished RUN, linked to it (same parameters)."""
    from corral import rerun

    ctx = Ctx(config_path, db)
    old = _get_run(ctx, run_id)
    spec = ctx.job(old.job)
    made = rerun.retry(ctx.store, spec, old, from_failed=from_failed, now=datetime.now(timezone.utc))
    new_id, note = made.run_id, made.note
    told = _wake_engine(ctx.store)
    run = ctx.store.get_run(new_id)
    if as_json:
        _emit_json(_run_json(run))
        return
    click.echo(f"run {new_id} of {spec.name}: attempt {run.attempt}, retry of run {old.id}{note}")
    if not told:
        click.echo("note: no `corral up` is running on this machine; the run starts when one does", err=True)


# -- forecast ------------------------------------------------------------------------------------


@main.command(name="forecast")
@common
@click.argument("job")
@click.option("--days", type=click.FloatRange(0.01, 366), default=7, show_default=True)
@click.option("--duration", help="Assumed run duration (default: p50 and p95 of the job's history).")
@click.option("--from", "from_", metavar="INSTANT", help="ISO-8601 instant to start from (default now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def forecast_cmd(
    config_path: str | None, db: str | None, job: str, days: float, duration: str | None, from_: str | None, as_json: bool
) -> None:
    """Simulate JOB's schedule and overlap policy for the coming days."""
    ctx = Ctx(config_path, db)
    spec = ctx.job(job)
    start = _parse_instant(from_)
    if duration is not None:
        cases = [("given", durations.parse(duration))]
    else:
        stats = forecast.percentiles(ctx.store.durations(spec.name))
        if stats is None:
            raise errors.CorralError(
                f"{spec.name} has no finished runs to learn its duration from; pass --duration, e.g. --duration 26h"
            )
        from datetime import timedelta

        cases = [("p50", timedelta(seconds=stats[0])), ("p95", timedelta(seconds=stats[1]))]
    results = [(label, forecast.simulate(spec, start=start, days=days, duration=d)) for label, d in cases]
    if as_json:
        main_fc = results[-1][1]
        data = main_fc.as_dict()
        if len(results) > 1:
            data["cases"] = {label: fc.as_dict() for label, fc in results}
        _emit_json(data)
        return
    for label, fc in results:
        click.echo(f"{spec.name} with runs of {durations.spec(fc.duration)} ({label}), overlap {spec.overlap}:")
        for slot in fc.slots:
            line = f"  {_local(slot.scheduled_for, spec.timezone)}  {slot.outcome:<8}"
            if slot.outcome == "skipped":
                line += f" {slot.reason}: {slot.message}"
            elif slot.starts_at and slot.starts_at != slot.scheduled_for:
                line += f" starts {_local(slot.starts_at, spec.timezone)}"
            click.echo(line)
        ran = [s for s in fc.slots if s.starts_at is not None]
        click.echo(f"  {len(ran)} of {len(fc.slots)} slots run, {len(fc.skipped)} skipped")
        if fc.effective_cadence is not None:
            nominal = f" (schedule interval {durations.format(fc.nominal_interval)})" if fc.nominal_interval else ""
            click.echo(f"  effective cadence: every {durations.format(fc.effective_cadence)}{nominal}")
        if fc.suggestions:
            click.echo("  schedules that fit:")
            for s in fc.suggestions:
                click.echo(f"    {s}")


# -- entry point ------------------------------------------------------------------------------


def run(args: list[str] | None = None) -> int:
    """Run the CLI; our errors become one message on stderr. Returns the exit status."""
    try:
        main.main(args=args, prog_name="corral", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except errors.CorralError as exc:
        click.echo(f"error: {exc}", err=True)
        cause = exc.__cause__
        while cause is not None and isinstance(exc, (errors.StoreError, errors.ExecError)):
            click.echo(f"  caused by: {cause}", err=True)
            cause = cause.__cause__
        return 1
    return 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(run())

# Commands of other modules, imported when they are run (or listed by --help):
# `corral up` need not load the dashboard, discovery or publishing code.
main.lazy_commands.update(
    {
        "events": "corral.events_cli:events",
        "web": "corral.web.cli:web",  # dashboard commands (issue 5)
        "users": "corral.web.cli:users",
        "tokens": "corral.web.cli:tokens",
        "discover": "corral.discover.cli:discover",
        "import": "corral.discover.cli:import_",
        "publish": "corral.publish_cli:publish",  # staging-to-final publish (issue 3 item 7)
        "doctor": "corral.doctor_cli:doctor",  # health checks (issue 6)
        "wrap": "corral.wrap:wrap",  # heartbeat pings for legacy jobs (issue 6 item 4)
        "monitors": "corral.monitor_cli:monitors",  # monitor-only jobs (issue 6 item 4)
    }
)
