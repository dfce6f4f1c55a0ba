"""Read a job file (``corral.yaml``) into frozen :mod:`corral.spec` values.

The loader finds every mistake in one pass and reports each one with its file,
line, job and key (see :class:`corral.errors.Problem`), so a person can fix the
whole file at once. YAML is composed into nodes (to keep line numbers and to
catch duplicate keys, which YAML itself accepts silently), turned into plain
values, then validated by pydantic models whose errors are rewritten into
messages that name the key, show the bad value and say what would be valid.

The job file
============

Top level (every key optional except ``jobs``; keys starting with ``x-`` are
ignored, so they can hold YAML anchors to merge with ``<<: *name``):

``timezone``
    IANA zone name used by every job that sets none. Default ``UTC``.
``log_dir``
    Directory for run logs. Relative paths resolve against the job file's
    directory. Default ``<dir of the job file>/.corral/logs``.
``store``
    SQLAlchemy URL of corral's database. A relative SQLite path
    (``sqlite:///state/corral.db``) resolves against the job file's directory.
    Default ``sqlite:///<dir of the job file>/.corral/corral.db``. The
    ``CORRAL_DB`` environment variable overrides it.
``log_max``
    Size cap of one run's log, like ``512KB``, ``50MB``, ``1GB`` (units are
    binary: 1KB = 1024 bytes) or a number of bytes. Default ``50MB``.
``catchup_concurrency``
    Whole number >= 1: how many catch-up runs may execute at once across all
    jobs. Default 4.
``max_running``
    Whole number >= 1: cap on runs executing at once across all jobs. Default:
    no cap.
``drain``
    Duration: on shutdown, how long running jobs get to finish. Default ``30s``.
``web``
    ``{host, port}`` of the dashboard. Default ``127.0.0.1`` and ``8377``.
``notify``
    Alert channels and rules: ``{channels: {NAME: {type, ...}}, default:
    RULE, dashboard_url}``; see :mod:`corral.config_notify` and docs/alerts.md.
``defaults``
    Any job key except ``run`` and ``schedule``; applied to every job that
    does not set it. ``env`` and ``labels`` merge key by key (the job wins);
    every other key is replaced as a whole.
``jobs``
    Mapping of job name to job. Names match ``^[a-z0-9][a-z0-9_.-]{0,63}$``.

Per job (only ``run`` is required):

``run``
    A shell string (run as ``/bin/sh -c STRING``) or an argv list
    (``["python", "sync.py"]``, run without a shell; numbers in the list are
    taken as written).
``cwd``
    Working directory; relative paths resolve against the job file's directory.
``env``
    Mapping ``NAME: value`` added to the environment; numbers and booleans are
    taken as written (``DEBUG: yes`` gives ``"yes"``). A value written
    ``{secret: "..."}`` is passed the same way but masked wherever corral
    shows it: the dashboard, its API, the job's YAML and run logs.
``schedule``
    One value or a list: a cron string (``"0 1 * * *"``), ``{every: 30h,
    anchor: "2024-01-01 01:00"}`` or ``{after_completion: 6h}``. Absent means
    manual runs only.
``timezone``
    IANA zone for the job's wall-clock schedules. Default: the top-level one.
``overlap``
    What a due run does while the previous one still runs: ``skip``
    (default), ``queue_one``, ``queue_all``, ``replace`` or ``allow``.
``max_concurrent``
    Whole number >= 1: cap on overlapping runs with ``overlap: allow`` (no
    cap when absent). Above 1 it is an error with any other overlap.
``min_gap``
    Duration: a run does not start until this long after the previous run ended.
``timeout``
    Duration: a run still going after this long is killed (with its process tree).
``kill_grace``
    Duration between the polite stop signal and the kill. Default ``10s``.
``retries``
    Number of retries (``3``) or ``{attempts, backoff, factor, max_backoff,
    jitter, exit_codes, on}``: attempts >= 0 (default 0), backoff duration
    (``10s``), factor >= 1 (2), max_backoff duration (``1h``), jitter fraction
    0..1 (0.1), exit_codes list of 1..255 (default any), on list of
    ``failed``/``timed_out``/``lost`` (default all three).
``catchup``
    ``none`` (default), ``latest`` or ``all``, or ``{mode, window}`` (window:
    duration, default ``1d``): which slots missed while corral was down still run.
``start_deadline``
    Duration: a run that could not start within this long after its slot is
    skipped.
``enabled``
    ``true`` (default) or ``false``.
``description``
    Free text.
``labels``
    Mapping ``{zone: eu}`` or a list ``[gpu, ssd]`` (a list item ``s`` means
    ``s: ""``).
``dst``
    ``{gap: run_after|skip, fold: cron|once|both}``; see
    :class:`corral.spec.DstPolicy`. Default ``run_after`` and ``cron``.
``log_max``
    Log size cap for this job. Default: the top-level ``log_max``.
``steps``
    Instead of ``run``: a list of steps, each ``{name, run, needs, timeout,
    retries, env, cwd, continue_on_failure}`` (see :mod:`corral.pipeline`).
    ``needs`` names earlier-or-later steps (a list or one name); they must
    exist and must not form a cycle.
``parallelism``
    Whole number >= 1: how many steps of one run may execute at once. Default 1.
``params``
    Mapping of parameter name to ``{type: string|int|bool|choice, default,
    choices, description}`` (see :mod:`corral.params`).
``trigger``
    ``{after: JOB, on: success|failure|always}`` or a list of them: a run of
    this job is created when a run of JOB ends that way (``on`` defaults to
    ``success``; see :mod:`corral.triggers`). JOB must exist; triggers must
    not form a loop.
``expected_duration``
    Duration: a run still going after this long is overrunning (``overrun`` alerts).
``notify``
    This job's alert rule, overriding ``notify: {default: ...}`` key by key
    (``channels``, ``on``, ``remind_every``, ``quiet_hours``, ``overrun_factor``,
    ``missed_after``); ``false`` for no alerts.
``wait_for``
    A list of conditions, or ``{poll: 5s, conditions: [...]}``: each one of
    ``{pid_file: PATH}``, ``{process: "cmdline text"}`` (has exited),
    ``{path: PATH}`` (exists), ``{job_idle: JOB}`` (no run of JOB running),
    ``{tcp: "host:port"}`` (answers), with an optional ``timeout`` (default
    ``1h``). A pending run starts only when all hold; see :mod:`corral.waitfor`.

Durations are written ``90s``, ``30m``, ``26h``, ``2d``, ``1h30m``; a bare
number is seconds. An empty value for a key without a default (``timeout:``,
``min_gap:``, ``start_deadline:``, ``max_concurrent:``, ``cwd:``, ``log_dir:``,
``store:``, ``max_running:``) means "not set", which also clears a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import textwrap
import types
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from corral import durations, errors, spec
from corral import pipeline as pipeline_mod
from corral.config_child import DEFAULT_FILE as DEFAULT_FILE  # re-exported: corral.config.DEFAULT_FILE
from corral.config_child import default_path as default_path

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

NO_CAP = 2**31 - 1
"""``max_concurrent`` of an ``overlap: allow`` job that sets none: no cap."""

SCHEDULE_KEYS: tuple[str, ...] = ("every", "anchor", "after_completion")
"""Keys a mapping schedule may use (``schedule.parse`` decides what combines)."""

RESERVED_JOB_KEYS: dict[str, str] = {}
"""Job keys of features not built yet. To add one: give the job model a field
and drop its entry here."""

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SQLITE_RE = re.compile(r"^(sqlite(?:\+\w+)?):///(.*)$", re.DOTALL)

_Path = tuple[Any, ...]


# ---------------------------------------------------------------------------
# Scalar values


def _fail(message: str) -> PydanticCustomError:
    # Braces in our messages ("{every: 30h}") must not be read as a template.
    return PydanticCustomError("corral", "{m}", {"m": message})


def _to_duration(value: Any) -> Any:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (dict, list)):
        raise _fail(f"{_show(value)} is not a duration; write it like 90s, 30m, 26h or 2d")
    try:
        return durations.parse(value)
    except errors.DurationError as exc:
        if isinstance(value, str) and value.strip().startswith("-"):
            raise _fail(f"{_show(value)} is negative; a duration must be 0 or more, like 90s, 30m or 2h") from exc
        raise _fail(str(exc)) from exc


def _to_positive_duration(value: Any) -> Any:
    delta = _to_duration(value)
    if isinstance(delta, timedelta) and delta <= timedelta(0):
        raise _fail(f"{_show(value)} is zero; write a duration longer than 0, like 90s, 30m or 2h")
    return delta


def parse_size(value: Any) -> int:
    """Bytes from ``512KB``, ``50MB``, ``1GB`` (binary units) or a whole number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail(f"{_show(value)} is not a size; write it like 512KB, 50MB or 1GB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise _fail(
                f"{_show(value)} is not a size; write a number with a unit B, KB, MB or GB, like 512KB, 50MB or 1GB"
            )
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size <= 0:
        raise _fail(f"{_show(value)} is too small; a size must be at least 1 byte, like 512KB or 50MB")
    return size


@functools.cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _suggest_zone(name: str) -> str | None:
    zones = _zones()
    lower = {zone.lower(): zone for zone in zones}
    wanted = name.strip().lower().replace(" ", "_")
    if wanted in lower:
        return lower[wanted]
    cities = {zone.rsplit("/", 1)[-1].lower(): zone for zone in zones if "/" in zone}
    if wanted in cities:
        return cities[wanted]
    close = difflib.get_close_matches(wanted, list(lower), n=1, cutoff=0.75)
    if close:
        return lower[close[0]]
    close = difflib.get_close_matches(wanted, list(cities), n=1, cutoff=0.75)
    return cities[close[0]] if close else None


def check_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA zone; raise a did-you-mean otherwise."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    else:
        return name
    hint = _suggest_zone(name)
    if hint is not None:
        raise _fail(f'unknown time zone "{name}"; did you mean "{hint}"?')
    raise _fail(f'unknown time zone "{name}"; use an IANA name like "Asia/Seoul", "Europe/Berlin" or "UTC"')


def _check_url(value: str) -> str:
    if not _URL_RE.match(value):
        raise _fail(
            f"{_show(value)} is not a database URL; write it like sqlite:///corral.db "
            "or postgresql+psycopg://user@host/corral"
        )
    return value


def _check_run(value: Any) -> Any:
    example = 'like run: "echo hello" or run: ["echo", "hello"]'
    if isinstance(value, str):
        if not value.strip():
            raise _fail(f"empty command; write the command to run, {example}")
        return value
    if isinstance(value, list):
        if not value:
            raise _fail('empty list; an argv list needs at least the program, like run: ["echo", "hello"]')
        for number, item in enumerate(value, 1):
            if not isinstance(item, str):
                raise _fail(
                    f'item {number} is {_show(item)}; every argv item must be text, like run: ["python", "sync.py"]'
                )
        if not value[0]:
            raise _fail('item 1 (the program) is empty; write it like run: ["echo", "hello"]')
        return value
    raise _fail(f"{_show(value)} is not a command; write a shell string or an argv list, {example}")


def _publish_argv(args: _PublishWith) -> tuple[str, ...]:
    """A ``uses: publish`` step runs ``corral publish`` with this interpreter, no shell."""
    import sys

    argv = [sys.executable, "-m", "corral", "publish", args.src, args.dest, "--verify", ",".join(args.verify)]
    argv += ["--each"] * args.each + ["--depth", str(args.depth)] * (args.depth != 1)
    argv += ["--delete-source"] * args.delete_source + ["--replace"] * args.replace + ["--no-progress"]
    return tuple(argv)


def _check_env(value: Any) -> Any:
    if isinstance(value, dict):
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise _fail(f'"{name}" is not an environment variable name; use a name like LANG or APP_MODE')
    return value


def _retries_shorthand(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"attempts": value}
    return value


def _retry_policy(retries: _Retries) -> spec.RetryPolicy:
    return spec.RetryPolicy(
        attempts=retries.attempts,
        backoff=retries.backoff,
        factor=retries.factor,
        max_backoff=retries.max_backoff,
        jitter=retries.jitter,
        exit_codes=None if retries.exit_codes is None else tuple(dict.fromkeys(retries.exit_codes)),
        on=tuple(dict.fromkeys(retries.on)),
    )


def _catchup_shorthand(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value


def _labels_shorthand(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    labels: dict[str, str] = {}
    for number, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise _fail(
                f"item {number} is {_show(item)}; list labels as words like [gpu, ssd] or use a mapping like {{zone: eu}}"
            )
        labels[item] = ""
    return labels


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


STEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_STEP_NAME_RE = re.compile(STEP_NAME_PATTERN)


def _check_step_name(value: str) -> str:
    if not _STEP_NAME_RE.match(value):
        raise _fail(
            f"{_show(value)} is not a step name; use 1-64 characters of letters, digits, _, . and -, "
            "starting with a letter or digit, like collect or 31"
        )
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_to_positive_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]
Count = Annotated[int, Field(ge=1)]


# ---------------------------------------------------------------------------
# Models: the shape of the file. Each key's wording for errors is in _EXPECT.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Web(_Strict):
    """``web:`` where the dashboard listens."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8377


class _Settings(_Strict):
    """Top-level keys. ``defaults`` and ``jobs`` are checked on their own."""

    timezone: TimeZone = "UTC"
    log_dir: str | None = None
    store: Annotated[str, AfterValidator(_check_url)] | None = None
    log_max: Size = spec.DEFAULT_LOG_MAX_BYTES
    catchup_concurrency: Count = 4
    max_running: Count | None = None
    drain: Duration = timedelta(seconds=30)
    web: _Web = _Web()
    notify: Any = None  # checked in corral.config_notify
    defaults: Any = None
    jobs: Any = None


class _Retries(_Strict):
    """``retries:`` of a job (an int N is shorthand for ``{attempts: N}``)."""

    attempts: Annotated[int, Field(ge=0)] = 0
    backoff: Duration = timedelta(seconds=10)
    factor: Annotated[float, Field(ge=1)] = 2.0
    max_backoff: Duration = timedelta(hours=1)
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.1
    exit_codes: Annotated[list[Annotated[int, Field(ge=1, le=255)]], Field(min_length=1)] | None = None
    on: Annotated[list[Literal["failed", "timed_out", "lost"]], Field(min_length=1)] = list(spec.RETRYABLE_STATES)


class _Catchup(_Strict):
    """``catchup:`` of a job (a string is shorthand for ``{mode: ...}``)."""

    mode: Literal["none", "latest", "all"] = "none"
    window: PositiveDuration = timedelta(days=1)


class _Dst(_Strict):
    """``dst:`` of a job."""

    gap: Literal["run_after", "skip"] = "run_after"
    fold: Literal["cron", "once", "both"] = "cron"


class _JobOptions(_Strict):
    """Job keys that ``defaults:`` may also set."""

    cwd: str | None = None
    env: Annotated[dict[str, str], AfterValidator(_check_env)] = {}
    timezone: TimeZone | None = None
    overlap: Literal["skip", "queue_one", "queue_all", "replace", "allow"] = "skip"
    max_concurrent: Count | None = None
    min_gap: Duration | None = None
    timeout: PositiveDuration | None = None
    kill_grace: Duration = spec.DEFAULT_KILL_GRACE
    retries: Annotated[_Retries, BeforeValidator(_retries_shorthand)] = _Retries()
    catchup: Annotated[_Catchup, BeforeValidator(_catchup_shorthand)] = _Catchup()
    start_deadline: PositiveDuration | None = None
    enabled: bool = True
    description: str = ""
    labels: Annotated[dict[str, str], BeforeValidator(_labels_shorthand)] = {}
    dst: _Dst = _Dst()
    log_max: Size | None = None
    parallelism: Count = 1
    expected_duration: PositiveDuration | None = None


class _PublishWith(_Strict):
    """``with:`` of a ``uses: publish`` step: the arguments of ``corral publish``."""

    src: Annotated[str, Field(min_length=1)]
    dest: Annotated[str, Field(min_length=1)]
    verify: list[Literal["count", "bytes", "sha256"]] = ["count", "bytes"]
    each: bool = False
    depth: Annotated[int, Field(ge=1, le=2)] = 1
    delete_source: bool = False
    replace: bool = False


class _Step(_Strict):
    """One item of ``steps:``: a command (``run``) or a built-in step (``uses: publish``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    name: Annotated[str, AfterValidator(_check_step_name)]
    run: Annotated[Any, AfterValidator(_check_run)] = None
    uses: Literal["publish"] | None = None
    with_: _PublishWith | None = Field(default=None, alias="with")

    @model_validator(mode="after")
    def _run_or_uses(self) -> _Step:
        if self.run is None and self.uses is None:
            raise _fail(
                'a step has no "run" key; expected a shell string like "echo hello" or an argv list like '
                '["echo", "hello"], or a built-in step like uses: publish'
            )
        return self
    needs: Annotated[list[str], BeforeValidator(_one_or_list)] = []
    timeout: PositiveDuration | None = None
    retries: Annotated[_Retries, BeforeValidator(_retries_shorthand)] = _Retries()
    env: Annotated[dict[str, str], AfterValidator(_check_env)] = {}
    cwd: str | None = None
    continue_on_failure: bool = False


class _Param(_Strict):
    """One entry of ``params:`` (a default's type is checked in _Checker.params)."""

    type: Literal["string", "int", "bool", "choice"] = "string"
    default: Any = None
    choices: Annotated[list[str], Field(min_length=1)] | None = None
    description: str = ""


def _check_ping_id(value: Any) -> Any:
    import uuid

    try:
        parsed = uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise _fail(f"{_show(value)} is not a UUID; write one like 3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44, or remove id to let corral make one") from None
    return str(parsed)


class _Monitor(_Strict):
    grace: PositiveDuration
    id: Annotated[str, AfterValidator(_check_ping_id)] | None = None


class _Job(_JobOptions):
    """A job: the options plus what only a job itself can say."""

    run: Annotated[Any, AfterValidator(_check_run)] = None
    schedule: Any = None  # each value goes through schedule.parse (see _Checker.schedules)
    steps: Annotated[list[_Step], Field(min_length=1)] | None = None
    params: dict[str, _Param] = {}
    trigger: Any = None  # checked in _Checker.triggers
    wait_for: Any = None  # checked in _Checker.wait_conditions
    notify: Any = None  # checked in corral.config_notify
    monitor: _Monitor | None = None  # a monitor-only job (no run): see _Checker.pipeline


_DURATION = "a duration like 90s, 30m, 26h or 2d"
_EXPECT: dict[str, str] = {
    "timezone": 'an IANA time zone name like "Asia/Seoul" or "UTC"',
    "log_dir": "a directory path",
    "store": "a database URL like sqlite:///corral.db or postgresql+psycopg://user@host/corral",
    "log_max": "a size like 512KB, 50MB or 1GB",
    "catchup_concurrency": "a whole number of 1 or more",
    "max_running": "a whole number of 1 or more",
    "drain": _DURATION,
    "web": "a mapping like {host: 127.0.0.1, port: 8377}",
    "web.host": "a host name or IP address",
    "web.port": "a port number from 1 to 65535",
    "defaults": "a mapping of job keys to apply to every job",
    "jobs": "a mapping of job name to job",
    "cwd": "a directory path",
    "env": "a mapping of NAME: value, like {LANG: C.UTF-8}",
    "env.*": "an env value (text, a number or true/false), or {secret: text} for a value to mask",
    "overlap": "one of skip, queue_one, queue_all, replace, allow",
    "max_concurrent": "a whole number of 1 or more",
    "min_gap": _DURATION,
    "timeout": _DURATION,
    "kill_grace": _DURATION,
    "retries": "a number of attempts like 3, or a mapping like {attempts: 3, backoff: 30s}",
    "retries.attempts": "a whole number of 0 or more",
    "retries.backoff": _DURATION,
    "retries.factor": "a number of 1 or more, like 2",
    "retries.max_backoff": _DURATION,
    "retries.jitter": "a fraction from 0 to 1, like 0.1",
    "retries.exit_codes": "a list of exit codes from 1 to 255, like [1, 75]",
    "retries.exit_codes.*": "an exit code from 1 to 255",
    "retries.on": "a list of failed, timed_out, lost",
    "retries.on.*": "one of failed, timed_out, lost",
    "catchup": "none, latest or all, or a mapping like {mode: latest, window: 6h}",
    "catchup.mode": "one of none, latest, all",
    "catchup.window": _DURATION,
    "start_deadline": _DURATION,
    "enabled": "true or false",
    "description": "text",
    "labels": "a mapping like {zone: eu} or a list like [gpu, ssd]",
    "labels.*": "a label value (text, a number or true/false)",
    "dst": "a mapping like {gap: run_after, fold: cron}",
    "dst.gap": "one of run_after, skip",
    "dst.fold": "one of cron, once, both",
    "run": 'a shell string like "echo hello" or an argv list like ["echo", "hello"]',
    "schedule": 'a cron string like "0 1 * * *", {every: 30h} or {after_completion: 6h}, or a list of them',
    "parallelism": "a whole number of 1 or more",
    "expected_duration": _DURATION,
    "monitor": "a mapping like {grace: 10m} for a job corral watches through pings instead of running",
    "monitor.grace": _DURATION,
    "monitor.id": "a UUID like 3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44",
    "notify": "alert channels and rules, like {channels: {ops: {type: discord, url: ...}}, default: {channels: [ops]}}",
    "steps": 'a list of steps like [{name: fetch, run: "./fetch.sh"}, {name: load, run: "./load.sh", needs: [fetch]}]',
    "steps.*": 'a step like {name: fetch, run: "./fetch.sh"}',
    "steps.name": "a step name like fetch or 31",
    "steps.run": 'a shell string like "echo hello" or an argv list like ["echo", "hello"]',
    "steps.needs": "a list of step names like [fetch, clean]",
    "steps.needs.*": "a step name",
    "steps.timeout": _DURATION,
    "steps.retries": "a number of attempts like 3, or a mapping like {attempts: 3, backoff: 30s}",
    "steps.retries.attempts": "a whole number of 0 or more",
    "steps.retries.backoff": _DURATION,
    "steps.retries.factor": "a number of 1 or more, like 2",
    "steps.retries.max_backoff": _DURATION,
    "steps.retries.jitter": "a fraction from 0 to 1, like 0.1",
    "steps.retries.exit_codes": "a list of exit codes from 1 to 255, like [1, 75]",
    "steps.retries.exit_codes.*": "an exit code from 1 to 255",
    "steps.retries.on": "a list of failed, timed_out, lost",
    "steps.retries.on.*": "one of failed, timed_out, lost",
    "steps.env": "a mapping of NAME: value, like {LANG: C.UTF-8}",
    "steps.env.*": "an env value (text, a number or true/false)",
    "steps.cwd": "a directory path",
    "steps.continue_on_failure": "true or false",
    "steps.uses": "publish (the only built-in step)",
    "steps.with_": "the publish arguments, like {src: staging, dest: /srv/final}",
    "steps.with_.src": "the staging path to publish from",
    "steps.with_.dest": "the final path to publish to",
    "steps.with_.verify": "a list of count, bytes and sha256",
    "steps.with_.verify.*": "count, bytes or sha256",
    "steps.with_.each": "true or false",
    "steps.with_.depth": "1 or 2",
    "steps.with_.delete_source": "true or false",
    "steps.with_.replace": "true or false",
    "params": "a mapping of parameter name to {type, default, choices}",
    "params.*": "a parameter like {type: int, default: 3}",
    "params.type": "one of string, int, bool, choice",
    "params.choices": "a list of allowed values like [eu, us]",
    "params.choices.*": "an allowed value (text)",
    "params.description": "text",
    "params.default": "a default value of the parameter's type",
    "trigger": "a trigger like {after: collect, on: success}, or a list of them",
    "wait_for": "a list of conditions like [{pid_file: /run/collector.pid, timeout: 12h}]",
}


def _show(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    lowered = {choice.lower(): choice for choice in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _unknown_key(name: str, valid: list[str]) -> str:
    hint = _did_you_mean(name, valid)
    if hint is not None:
        return f'unknown key "{name}"; did you mean "{hint}"?'
    return f'unknown key "{name}"; valid keys are {", ".join(valid)}'


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, Annotated, types.UnionType, list, dict):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _is_mapping(annotation: Any) -> bool:
    if get_origin(annotation) is dict:
        return True
    if get_origin(annotation) in (Union, Annotated, types.UnionType):
        return any(_is_mapping(arg) for arg in get_args(annotation))
    return False


@dataclass
class _Where:
    """What a pydantic error location means in the file's terms."""

    key: str | None  # dotted key for messages ("retries.exit_codes"), list indexes dropped
    pattern: str  # the _EXPECT entry ("env.*")
    parent: type[BaseModel] | None  # the model holding the last key


def _where(model: type[BaseModel], loc: tuple[Any, ...]) -> _Where:
    names: list[str] = []
    pattern: list[str] = []
    current: type[BaseModel] | None = model
    parent: type[BaseModel] | None = model
    keyed = False  # the next part is a key of a mapping of models (params: {name: {...}})
    for part in loc:
        if isinstance(part, int):
            pattern.append("*")
            continue
        names.append(str(part))
        if keyed:
            pattern.append("*")
            keyed = False
            continue
        parent = current
        if current is not None and part in current.model_fields:
            pattern.append(str(part))
            annotation = current.model_fields[part].annotation
            current = _inner_model(annotation)
            keyed = current is not None and _is_mapping(annotation)
        else:
            pattern.append("*")
            current = None
    # Positions inside a list of models (steps) and names in a mapping of
    # models (params) are not part of a key's wording: "steps.*.run" is "steps.run".
    pattern = [part for index, part in enumerate(pattern) if part != "*" or index == len(pattern) - 1]
    return _Where(".".join(names) or None, ".".join(pattern), parent)


# ---------------------------------------------------------------------------
# YAML: nodes to plain values, remembering where each one was written.

_TAG = "tag:yaml.org,2002:"
_SAFE = yaml.constructor.SafeConstructor()
_SCALARS: dict[str, Callable[[yaml.ScalarNode], Any]] = {
    _TAG + "null": _SAFE.construct_yaml_null,
    _TAG + "bool": _SAFE.construct_yaml_bool,
    _TAG + "int": _SAFE.construct_yaml_int,
    _TAG + "float": _SAFE.construct_yaml_float,
    _TAG + "str": _SAFE.construct_yaml_str,
    # Dates stay text: no key wants a date object, and anchors go to schedule.parse.
    _TAG + "timestamp": lambda node: node.value,
}


@dataclass
class _Doc:
    """Plain values of a YAML document plus where every value and key was written.

    Paths are tuples from the root, like ``("jobs", "sync", "retries", "attempts")``.
    """

    file: str
    lines: dict[_Path, int] = field(default_factory=dict)
    key_lines: dict[_Path, int] = field(default_factory=dict)
    raw: dict[_Path, str] = field(default_factory=dict)
    ends: dict[_Path, int] = field(default_factory=dict)
    problems: list[errors.Problem] = field(default_factory=list)

    def build(
        self, node: yaml.Node, path: _Path = (), key_line: int | None = None, stack: frozenset[int] = frozenset()
    ) -> Any:
        block = isinstance(node, yaml.CollectionNode) and not node.flow_style
        self.lines[path] = key_line if (block and key_line is not None) else node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            self.raw[path] = node.value
            self.ends[path] = node.end_mark.line + (1 if node.end_mark.column else 0)
            construct = _SCALARS.get(node.tag)
            if construct is None:
                self.problem(path, node.start_mark.line + 1, f'unsupported YAML tag "{node.tag}"; remove it')
                return node.value
            return construct(node)
        if id(node) in stack:
            self.problem(path, node.start_mark.line + 1, "an alias refers to itself; remove the loop")
            return None
        stack = stack | {id(node)}
        if not isinstance(node, yaml.MappingNode):
            items = [self.build(child, (*path, index), None, stack) for index, child in enumerate(node.value)]
            self.ends[path] = self._end(node, [(*path, index) for index in range(len(items))])
            return items
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in self._pairs(node, path, seen, stack):
            name = key_node.value
            line = key_node.start_mark.line + 1
            self.key_lines[(*path, name)] = line
            result[name] = self.build(value_node, (*path, name), line, stack)
        self.ends[path] = self._end(node, [(*path, name) for name in result])
        return result

    def _pairs(
        self, node: yaml.MappingNode, path: _Path, seen: dict[str, int] | None, stack: frozenset[int]
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """Explicit pairs first, then pairs brought in by ``<<: *anchor`` (which lose to them)."""
        pairs: list[tuple[yaml.ScalarNode, yaml.Node]] = []
        merged: list[tuple[yaml.ScalarNode, yaml.Node]] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _TAG + "merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode) or id(source) in stack:
                        self.problem(path, line, "<< must refer to a mapping, like <<: *common")
                        continue
                    merged.extend(self._pairs(source, path, None, stack | {id(source)}))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(path, line, "a key must be plain text, not a list or mapping")
                continue
            if seen is not None:
                if key_node.value in seen:
                    self.duplicate(path, key_node.value, seen[key_node.value], line)
                seen[key_node.value] = line
            pairs.append((key_node, value_node))
        names = {key.value for key, _ in pairs}
        for key_node, value_node in merged:
            if key_node.value not in names:
                names.add(key_node.value)
                pairs.append((key_node, value_node))
        # The last duplicate wins, as in YAML; the duplicate itself is already an error.
        last = {key.value: (key, value) for key, value in pairs}
        return list(last.values())

    def _end(self, node: yaml.Node, children: list[_Path]) -> int:
        if node.flow_style or not children:
            return node.end_mark.line + (1 if node.end_mark.column else 0)
        return max(self.ends.get(child, 0) for child in children)

    def problem(self, path: _Path, line: int | None, message: str) -> None:
        job, key = _split(path)
        self.problems.append(errors.Problem(self.file, line, job, key, message))

    def duplicate(self, path: _Path, name: str, first: int, again: int) -> None:
        if path == ("jobs",):
            self.problems.append(
                errors.Problem(
                    self.file, again, name, None, f"defined twice (also on line {first}); job names must be unique"
                )
            )
            return
        self.problem(
            path, again, f'duplicate key "{name}" (also on line {first}); YAML would silently keep only the last one'
        )

    def line(self, prefixes: list[_Path], loc: tuple[Any, ...], *, of_key: bool = False) -> int | None:
        """Line of the deepest part of ``loc`` written under one of ``prefixes``."""
        best: tuple[int, int | None] = (-1, None)
        for prefix in prefixes:
            for depth in range(len(loc), -1, -1):
                path = (*prefix, *loc[:depth])
                if depth == 0 or path in self.lines:
                    if depth == 0:
                        found = self.key_lines.get(path, self.lines.get(path))
                    elif of_key and depth == len(loc):
                        found = self.key_lines.get(path, self.lines[path])
                    else:
                        found = self.lines[path]
                    if depth > best[0]:
                        best = (depth, found)
                    break
        return best[1]

    def shown(self, path: _Path, value: Any) -> str:
        """A value for a message, as it was written when it is not text."""
        if isinstance(value, (bool, int, float)) and path in self.raw:
            return self.raw[path]
        return _show(value)


def _split(path: _Path) -> tuple[str | None, str | None]:
    """(job, dotted key) of an absolute path."""
    job = None
    if len(path) >= 2 and path[0] == "jobs":
        job, path = str(path[1]), path[2:]
    return job, _dotted(path)


def _dotted(path: _Path) -> str | None:
    """``("retries", "exit_codes", 1)`` -> ``retries.exit_codes`` (list positions dropped)."""
    return ".".join(str(part) for part in path if not isinstance(part, int)) or None


# ---------------------------------------------------------------------------
# The checker: one pass over the whole file, collecting problems.


class _Checker:
    def __init__(self, doc: _Doc, base: Path, text: str) -> None:
        self.doc = doc
        self.base = base
        self.text_lines = text.splitlines()
        self.problems = doc.problems
        self.warnings: list[errors.Problem] = []
        self.bad_steps: set[str] = set()
        self.notify = spec.NotifySettings()

    def add(self, line: int | None, job: str | None, key: str | None, message: str) -> None:
        self.problems.append(errors.Problem(self.doc.file, line, job, key, message))

    def warn(self, line: int | None, job: str | None, key: str | None, message: str) -> None:
        self.warnings.append(errors.Problem(self.doc.file, line, job, key, message))

    # -- pydantic ------------------------------------------------------------

    def validate(
        self,
        model: type[_Strict],
        data: dict[str, Any],
        *,
        home: _Path,
        job: str | None,
        origins: Mapping[str, list[_Path]] | None = None,
        key_prefix: str | None = None,
    ) -> tuple[_Strict | None, set[str]]:
        """Validate ``data``; report every error; return the model and the keys that failed.

        ``home`` is where ``data`` was written; ``origins`` says where a key came
        from instead when it was merged in (``defaults:``)."""
        origins = origins or {}
        try:
            return model.model_validate(data), set()
        except ValidationError as exc:
            failed: set[str] = set()
            for error in exc.errors(include_url=False):
                loc = tuple(error["loc"])
                if loc:
                    failed.add(str(loc[0]))
                prefixes = origins.get(str(loc[0]), [home]) if loc else [home]
                where = _where(model, loc)
                extra = error["type"] in ("extra_forbidden", "missing")
                line = self.doc.line(prefixes, loc, of_key=extra)
                exact = self._exact(prefixes, loc)
                key, message = self.explain(error, where, exact)
                if not extra and key is not None:
                    key = self._written_key(prefixes, loc, key)
                if key_prefix:
                    key = f"{key_prefix}.{key}" if key else key_prefix
                self.add(line, job, key, message)
            return None, failed

    def _written_key(self, prefixes: list[_Path], loc: tuple[Any, ...], key: str) -> str:
        """Name the key as written: ``catchup: sometimes`` is reported as catchup, not catchup.mode."""
        for prefix in prefixes:
            for depth in range(len(loc) - 1, 0, -1):
                if (*prefix, *loc[:depth]) in self.doc.raw:
                    return _dotted(loc[:depth]) or key
        return key

    def _exact(self, prefixes: list[_Path], loc: tuple[Any, ...]) -> _Path:
        for prefix in prefixes:
            if (*prefix, *loc) in self.doc.lines:
                return (*prefix, *loc)
        return ()

    def explain(self, error: Any, where: _Where, path: _Path) -> tuple[str | None, str]:
        """(key, message) in our words for one pydantic error."""
        kind = error["type"]
        value = error.get("input")
        loc = tuple(error["loc"])
        shown = self.doc.shown(path, value)
        expect = _EXPECT.get(where.pattern, "")
        if kind == "corral":
            return where.key, error["ctx"]["m"]
        parent_key = ".".join(where.key.split(".")[:-1]) if where.key else ""
        name = str(loc[-1]) if loc else ""
        if kind == "extra_forbidden":
            return parent_key or None, self.unknown(name, where.parent, value)
        if kind == "missing":
            if loc and loc[0] == "steps":
                return "steps", f'a step has no "{name}" key; expected {_EXPECT.get(where.pattern, "")}'
            return parent_key or None, f'missing key "{name}": {_EXPECT.get(where.pattern, "")}'
        if value is None:
            return where.key, f"no value given; expected {expect}"
        if kind == "literal_error":
            choices = re.findall(r"'([^']*)'", error["ctx"]["expected"])
            message = f"{shown} is not one of {', '.join(choices)}"
            hint = _did_you_mean(value, choices) if isinstance(value, str) else None
            return where.key, message + (f'; did you mean "{hint}"?' if hint else "")
        if kind in ("greater_than_equal", "greater_than"):
            return where.key, f"{shown} is too small; expected {expect}"
        if kind in ("less_than_equal", "less_than"):
            return where.key, f"{shown} is too large; expected {expect}"
        if kind == "too_short":
            return where.key, f"an empty list; expected {expect}"
        if isinstance(value, str) and kind in ("int_type", "float_type", "bool_type"):
            unquoted = _SAFE_LOADABLE.get(kind, lambda text: False)(value)
            if unquoted:
                return where.key, f"{shown} is text, not {_KIND_NOUN[kind]}; write it without quotes: {value}"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and kind == "string_type":
            return where.key, f'{shown} is a number, not {expect}; put it in quotes: "{value}"'
        if expect:
            return where.key, f"{shown} is not {expect}"
        return where.key, f"{shown}: {error['msg']}"

    def unknown(self, name: str, parent: type[BaseModel] | None, value: Any) -> str:
        if parent is None:
            return f'unknown key "{name}"'
        valid = list(parent.model_fields)
        if parent is _Settings:
            if name in _Job.model_fields:
                return f'unknown key "{name}"; {name} is a job setting: put it under a job, or under "defaults:" to apply it to every job'
            if isinstance(value, dict) and "run" in value:
                return f'unknown key "{name}"; it looks like a job: put it under "jobs:"'
        if parent is _JobOptions and name == "notify":
            return 'unknown key "notify" under defaults; the default alert rule goes under the top-level "notify: {default: ...}"'
        if parent in (_Job, _JobOptions):
            if name in RESERVED_JOB_KEYS:
                return f'"{name}" is not supported yet: {RESERVED_JOB_KEYS[name]}'
            if name in _Settings.model_fields and name not in parent.model_fields:
                return f'unknown key "{name}"; {name} is a top-level setting, not a job setting'
        return _unknown_key(name, valid)

    # -- the file --------------------------------------------------------------

    def check(
        self, tree: Any, environ: Mapping[str, str], config_path: Path
    ) -> tuple[spec.Settings, dict[str, spec.JobSpec]]:
        # Top-level "x-..." keys are free for YAML anchors (x-common: &common ...).
        top = {key: value for key, value in tree.items() if not key.startswith("x-")}
        model, _ = self.validate(_Settings, top, home=(), job=None)
        settings_model = model if isinstance(model, _Settings) else None
        timezone = settings_model.timezone if settings_model else _valid_or(top.get("timezone"), check_timezone, "UTC")
        log_max = settings_model.log_max if settings_model else spec.DEFAULT_LOG_MAX_BYTES
        settings = self.settings(settings_model, environ, config_path)

        defaults = self.defaults(top.get("defaults"))
        jobs: dict[str, spec.JobSpec] = {}
        raw_jobs = top.get("jobs")
        if "jobs" not in top:
            self.add(
                None,
                None,
                None,
                'no "jobs:" section; add one with at least one job, like  jobs: {hello: {run: "echo hello"}}',
            )
        elif raw_jobs is None or raw_jobs == {}:
            self.add(
                self.doc.key_lines.get(("jobs",)),
                None,
                "jobs",
                'is empty; add at least one job, like  hello: {run: "echo hello"}',
            )
        elif isinstance(raw_jobs, list):
            self.add(
                self.doc.lines.get(("jobs",)),
                None,
                "jobs",
                'is a list; jobs maps each job name to its settings, like  hello: {run: "echo hello"}',
            )
        elif not isinstance(raw_jobs, dict):
            self.add(
                self.doc.lines.get(("jobs",)),
                None,
                "jobs",
                f"{self.doc.shown(('jobs',), raw_jobs)} is not {_EXPECT['jobs']}",
            )
        else:
            for name, body in raw_jobs.items():
                job = self.job(name, body, defaults, timezone, log_max)
                if job is not None:
                    jobs[name] = job
            self.trigger_graph(jobs, [str(name) for name in raw_jobs])
        from corral import config_notify

        self.notify = config_notify.check(self, top.get("notify"), raw_jobs, environ, settings)
        return settings, jobs

    def settings(self, model: _Settings | None, environ: Mapping[str, str], config_path: Path) -> spec.Settings:
        model = model or _Settings()
        log_dir = self.base / ".corral" / "logs" if model.log_dir is None else _resolve(self.base, model.log_dir)
        store = model.store or f"sqlite:///{self.base / '.corral' / 'corral.db'}"
        store = environ.get("CORRAL_DB") or _resolve_sqlite(store, self.base)
        return spec.Settings(
            config_path=config_path,
            timezone=model.timezone,
            log_dir=log_dir,
            store_url=store,
            log_max_bytes=model.log_max,
            catchup_concurrency=model.catchup_concurrency,
            max_running=model.max_running,
            drain=model.drain,
            web_host=model.web.host,
            web_port=model.web.port,
        )

    def defaults(self, raw: Any) -> dict[str, tuple[Any, list[_Path]]]:
        """Valid ``defaults:`` keys with their values (bad ones are reported once, here)."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.add(
                self.doc.lines.get(("defaults",)),
                None,
                "defaults",
                f"{self.doc.shown(('defaults',), raw)} is not {_EXPECT['defaults']}",
            )
            return {}
        raw = dict(raw)
        for name in ("run", "schedule", "steps", "params", "trigger", "wait_for"):
            if name in raw:
                del raw[name]
                self.add(
                    self.doc.key_lines.get(("defaults", name)),
                    None,
                    "defaults",
                    f'"{name}" cannot have a default; set it on each job',
                )
        data = _text_scalars(self.doc, raw, ("defaults",))
        _, failed = self.validate(_JobOptions, data, home=("defaults",), job=None, key_prefix="defaults")
        return {key: (value, [("defaults",)]) for key, value in data.items() if key not in failed}

    def job(
        self,
        name: str,
        body: Any,
        defaults: dict[str, tuple[Any, list[_Path]]],
        timezone: str,
        log_max: int,
    ) -> spec.JobSpec | None:
        prefix: _Path = ("jobs", name)
        key_line = self.doc.key_lines.get(prefix)
        good_name = bool(_NAME_RE.match(name))
        if not good_name:
            self.add(key_line, None, None, _bad_name(name))
        if body is None:
            self.add(key_line, name, None, 'has no settings; a job needs at least a command, like  run: "echo hello"')
            return None
        if isinstance(body, str):
            self.add(
                key_line,
                name,
                None,
                f"is text, not a mapping; write the command under run, like  {name}: {{run: {json.dumps(body)}}}",
            )
            return None
        if not isinstance(body, dict):
            self.add(
                key_line,
                name,
                None,
                f'{self.doc.shown(prefix, body)} is not a job; a job is a mapping with at least "run", like  {{run: "echo hello"}}',
            )
            return None

        own = _text_scalars(self.doc, body, prefix)
        for reserved in [key for key in own if key in RESERVED_JOB_KEYS]:
            del own[reserved]
            self.add(
                self.doc.key_lines.get((*prefix, reserved)),
                name,
                None,
                f'"{reserved}" is not supported yet: {RESERVED_JOB_KEYS[reserved]}',
            )
        data: dict[str, Any] = {}
        origins: dict[str, list[_Path]] = {}
        for key, (value, where) in defaults.items():
            data[key] = value
            origins[key] = where
        for key, value in own.items():
            if key in ("env", "labels") and isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
                origins[key] = [prefix, *origins[key]]
            else:
                data[key] = value
                origins[key] = [prefix]

        self.step_items(name, data, prefix)
        model, _ = self.validate(_Job, data, home=prefix, job=name, origins=origins)
        self.contradictions(name, data, origins)
        pipeline_ok = self.pipeline(name, data, prefix, model)
        params_ok = self.params(name, data, prefix, model)
        tz = _valid_or(data.get("timezone"), check_timezone, timezone)
        dst = _valid_or(data.get("dst", {}), lambda value: _Dst.model_validate(value), _Dst())
        dst_policy = spec.DstPolicy(gap=dst.gap, fold=dst.fold)
        schedules = self.schedules(name, data, origins.get("schedule", [prefix]), tz, dst_policy)
        trigs = self.triggers(name, data, prefix)
        waits = self.wait_conditions(name, data, prefix)
        if not isinstance(model, _Job):
            return None
        if not (pipeline_ok and params_ok) or trigs is None or waits is None:
            return None
        job = self.spec(name, model, tz, dst_policy, schedules or (), log_max, key_line)
        job = dataclasses.replace(job, triggers=trigs, wait_for=waits[0], wait_poll=waits[1])
        job = _with_secrets(job, data)
        if model.expected_duration is not None:
            job = dataclasses.replace(job, expected_duration=model.expected_duration)
        if model.monitor is not None:
            job = dataclasses.replace(job, monitor=spec.MonitorSpec(grace=model.monitor.grace, id=model.monitor.id))
        self.check_rules(job, model, origins)
        return job if good_name and schedules is not None else None

    # -- pipelines and parameters (issue 3) -------------------------------------

    def step_items(self, name: str, data: dict[str, Any], prefix: _Path) -> None:
        """Steps written as bare names instead of mappings get one message each (and are dropped)."""
        steps = data.get("steps")
        if not isinstance(steps, list):
            return
        kept = []
        for index, item in enumerate(steps):
            if isinstance(item, dict):
                kept.append(item)
                continue
            shown = self.doc.shown((*prefix, "steps", index), item)
            example = f'{{name: {item}, run: "./{item}.sh"}}' if isinstance(item, (str, int)) else '{name: fetch, run: "./fetch.sh"}'
            self.add(
                self.doc.line([prefix], ("steps", index)),
                name,
                "steps",
                f"item {index + 1} is {shown}, not a step; write each step as a mapping like {example}",
            )
        if len(kept) != len(steps):
            data["steps"] = kept or None
            self.bad_steps.add(name)

    def pipeline(self, name: str, data: dict[str, Any], prefix: _Path, model: Any) -> bool:
        """run xor steps; step names unique; needs known and acyclic. False if any problem."""
        bad_items = name in self.bad_steps
        has_run = data.get("run") is not None or "run" in data
        has_steps = "steps" in data
        key_line = self.doc.key_lines.get(prefix)
        if "monitor" in data:
            return self.monitor_only(name, data, prefix, has_run or has_steps)
        if not has_run and not has_steps:
            self.add(
                key_line,
                name,
                None,
                'no "run" key; every job needs a command, like run: "echo hello" or run: ["echo", "hello"]',
            )
            return False
        if has_run and has_steps:
            self.add(
                self.doc.key_lines.get((*prefix, "steps")),
                name,
                "steps",
                "a job has either run (one command) or steps (a pipeline), not both; move the command into a step or remove steps",
            )
            return False
        if not has_steps:
            if "parallelism" in data and (*prefix, "parallelism") in self.doc.key_lines:
                self.warn(
                    self.doc.key_lines.get((*prefix, "parallelism")),
                    name,
                    "parallelism",
                    "has no effect on a job without steps",
                )
            return True
        if not isinstance(model, _Job) or model.steps is None:
            return False
        ok = not bad_items
        seen: dict[str, int | None] = {}
        for index, step in enumerate(model.steps):
            line = self.doc.line([prefix], ("steps", index, "name"))
            if step.name in seen:
                self.add(
                    line,
                    name,
                    "steps",
                    f'step name "{step.name}" is used twice (also on line {seen[step.name]}); step names must be unique',
                )
                ok = False
            else:
                seen[step.name] = line
        names = list(seen)
        for index, step in enumerate(model.steps):
            for position, need in enumerate(step.needs):
                if need in seen and need != step.name:
                    continue
                line = self.doc.line([prefix], ("steps", index, "needs", position))
                if need == step.name:
                    message = f'step "{step.name}" needs itself; remove "{need}" from its needs'
                else:
                    hint = _did_you_mean(need, names)
                    message = f'step "{step.name}" needs "{need}", which is not a step of this job; ' + (
                        f'did you mean "{hint}"?' if hint else f"steps are {', '.join(names)}"
                    )
                self.add(line, name, "steps.needs", message)
                ok = False
        if ok:
            cycle = pipeline_mod.find_cycle([(step.name, step.needs) for step in model.steps])
            if cycle:
                first = names.index(cycle[0])
                self.add(
                    self.doc.line([prefix], ("steps", first, "needs")),
                    name,
                    "steps.needs",
                    f"the steps' needs form a cycle: {' -> '.join(cycle)} (each needs the next); "
                    "remove one of these needs",
                )
                ok = False
        return ok

    def monitor_only(self, name: str, data: dict[str, Any], prefix: _Path, runs: bool) -> bool:
        """A ``monitor:`` job is watched, not run: no run or steps, and a schedule
        to expect pings by. False if any problem."""
        line = self.doc.key_lines.get((*prefix, "monitor"))
        if runs:
            self.add(
                line, name, "monitor",
                "a monitor-only job is not run by corral, so it has no run or steps; "
                "remove monitor to let corral run the command, or remove run and steps",
            )
            return False
        if data.get("schedule") is None:
            self.add(
                line, name, "monitor",
                'needs a schedule to know when pings are due, like schedule: "0 3 * * *"',
            )
            return False
        for key in ("trigger", "wait_for", "params"):
            if data.get(key):
                self.add(
                    self.doc.key_lines.get((*prefix, key)), name, key,
                    "has no effect on a monitor-only job (corral does not run it); remove it",
                )
                return False
        return True

    def params(self, name: str, data: dict[str, Any], prefix: _Path, model: Any) -> bool:
        """Parameter names, choices and defaults. False if any problem."""
        if not isinstance(model, _Job) or not model.params:
            return isinstance(model, _Job) or "params" not in data
        from corral import params as params_mod

        ok = True
        scheduled = data.get("schedule") is not None
        for pname, param in model.params.items():
            where = (*prefix, "params", pname)
            line = self.doc.key_lines.get(where)
            if not re.match(params_mod.NAME_PATTERN, pname):
                self.add(
                    line, name, "params",
                    f'"{pname}" is not a parameter name; use 1-64 characters of a-z, 0-9 and _, starting with a letter',
                )
                ok = False
                continue
            if param.type == "choice" and not param.choices:
                self.add(line, name, f"params.{pname}", "type choice needs choices, like choices: [eu, us]")
                ok = False
                continue
            if param.type != "choice" and param.choices is not None:
                self.add(
                    self.doc.key_lines.get((*where, "choices")), name, f"params.{pname}.choices",
                    f"only applies with type: choice, but type is {param.type}",
                )
                ok = False
                continue
            if param.default is None:
                if scheduled:
                    self.add(
                        line, name, f"params.{pname}",
                        "has no default, but the job has a schedule and scheduled runs get no --param; give it a default",
                    )
                    ok = False
                continue
            default = param.default
            if param.type in ("string", "choice") and isinstance(default, (bool, int, float)):
                default = self.doc.raw.get((*where, "default"), str(default))
            try:
                params_mod.convert(self._param_spec(pname, param, None), default)
            except errors.ParamError as exc:
                self.add(
                    self.doc.line([prefix], ("params", pname, "default")), name, f"params.{pname}.default",
                    str(exc).split(": ", 1)[-1],
                )
                ok = False
        return ok

    def _param_spec(self, pname: str, param: _Param, default: Any) -> spec.ParamSpec:
        return spec.ParamSpec(
            name=pname,
            type=param.type,
            default=default,
            choices=tuple(param.choices or ()),
            description=param.description,
        )

    def param_specs(self, prefix: _Path, model: _Job) -> tuple[spec.ParamSpec, ...]:
        from corral import params as params_mod

        out = []
        for pname, param in model.params.items():
            default = param.default
            if default is not None:
                if param.type in ("string", "choice") and isinstance(default, (bool, int, float)):
                    default = self.doc.raw.get((*prefix, "params", pname, "default"), str(default))
                default = params_mod.convert(self._param_spec(pname, param, None), default)
            out.append(self._param_spec(pname, param, default))
        return tuple(out)

    def step_specs(self, prefix: _Path, model: _Job) -> tuple[spec.StepSpec, ...]:
        out = []
        for index, step in enumerate(model.steps or ()):
            where = (*prefix, "steps", index)
            if (step.run is None) == (step.uses is None):
                self.doc.problem(
                    where, self.doc.line([prefix], ("steps", index)),
                    f'step "{step.name}" needs either run (a command) or uses: publish (a built-in step), not '
                    + ("both" if step.run is not None else "neither"),
                )
                continue
            if step.uses is not None and step.with_ is None:
                self.doc.problem(
                    where, self.doc.line([prefix], ("steps", index)),
                    f'step "{step.name}": uses: publish needs with: {{src: STAGING, dest: FINAL}}',
                )
                continue
            if step.uses == "publish" and step.with_ is not None:
                command = _publish_argv(step.with_)
                shell = False
            elif isinstance(step.run, str):
                command: tuple[str, ...] = ("/bin/sh", "-c", step.run)
                shell = True
            else:
                command = tuple(step.run)
                shell = False
            out.append(
                spec.StepSpec(
                    name=step.name,
                    command=command,
                    shell=shell,
                    needs=tuple(dict.fromkeys(step.needs)),
                    timeout=step.timeout,
                    retries=_retry_policy(step.retries),
                    env=tuple(step.env.items()),
                    cwd=None if step.cwd is None else _resolve(self.base, step.cwd),
                    continue_on_failure=step.continue_on_failure,
                    line=self.doc.line([prefix], ("steps", index)),
                )
            )
        return tuple(out)

    # -- triggers and wait_for (issue 3) -------------------------------------------

    def triggers(self, name: str, data: dict[str, Any], prefix: _Path) -> tuple[spec.TriggerSpec, ...] | None:
        """``trigger:`` items (their ``after`` jobs are checked in trigger_graph). None if any is wrong."""
        raw = data.get("trigger")
        if "trigger" not in data:
            return ()
        example = "{after: collect, on: success}"
        if raw is None or raw == []:
            self.add(self.doc.key_lines.get((*prefix, "trigger")), name, "trigger", f"no value given; write it like {example}")
            return None
        items = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
        out: list[spec.TriggerSpec] = []
        ok = True
        for index, item in items:
            loc: tuple[Any, ...] = ("trigger",) if index is None else ("trigger", index)
            line = self.doc.line([prefix], loc)
            if not isinstance(item, dict):
                shown = self.doc.shown((*prefix, *loc), item)
                self.add(line, name, "trigger", f"{shown} is not a trigger; write it like {example}")
                ok = False
                continue
            unknown = [key for key in item if key not in ("after", "on")]
            for key in unknown:
                self.add(self.doc.line([prefix], (*loc, key), of_key=True), name, "trigger", _unknown_key(key, ["after", "on"]))
            after, on = item.get("after"), item.get("on", "success")
            if isinstance(after, (int, float)) and not isinstance(after, bool):  # a job named 31
                after = self.doc.raw.get((*prefix, *loc, "after"), str(after))
            if "after" not in item:
                self.add(line, name, "trigger", f'missing key "after": the job whose runs start this one, like {example}')
            elif not isinstance(after, str) or not after:
                shown = self.doc.shown((*prefix, *loc, "after"), after)
                self.add(self.doc.line([prefix], (*loc, "after")), name, "trigger.after", f"{shown} is not a job name; write it like {example}")
                after = None
            if on not in spec.TRIGGER_ON:
                shown = self.doc.shown((*prefix, *loc, "on"), on)
                hint = _did_you_mean(on, spec.TRIGGER_ON) if isinstance(on, str) else None
                self.add(
                    self.doc.line([prefix], (*loc, "on")), name, "trigger.on",
                    f"{shown} is not one of {', '.join(spec.TRIGGER_ON)}" + (f'; did you mean "{hint}"?' if hint else ""),
                )
                on = None
            if unknown or not isinstance(after, str) or not after or on is None:
                ok = False
                continue
            out.append(spec.TriggerSpec(after=after, on=on, line=self.doc.line([prefix], (*loc, "after"))))
        return tuple(out) if ok else None

    def wait_conditions(
        self, name: str, data: dict[str, Any], prefix: _Path
    ) -> tuple[tuple[spec.WaitCondition, ...], timedelta] | None:
        """``wait_for:`` as (conditions, poll). None if anything is wrong."""
        from corral import waitfor

        poll = spec.DEFAULT_WAIT_POLL
        if "wait_for" not in data:
            return (), poll
        raw = data.get("wait_for")
        where: tuple[Any, ...] = ("wait_for",)
        example = "[{pid_file: /run/collector.pid, timeout: 12h}]"
        if isinstance(raw, dict) and ("conditions" in raw or "poll" in raw):
            ok = True
            for key in raw:
                if key not in ("poll", "conditions"):
                    self.add(
                        self.doc.line([prefix], (*where, key), of_key=True), name, "wait_for",
                        _unknown_key(key, ["poll", "conditions"]),
                    )
                    ok = False
            if "poll" in raw:
                try:
                    poll = waitfor.parse_duration(raw["poll"], "poll")
                except waitfor.BadCondition as exc:
                    self.add(self.doc.line([prefix], (*where, "poll")), name, "wait_for.poll", str(exc))
                    ok = False
            if "conditions" not in raw:
                self.add(self.doc.line([prefix], where), name, "wait_for", f'missing key "conditions": a list like {example}')
                return None
            raw, where = raw["conditions"], (*where, "conditions")
            if not ok:
                return None
        if isinstance(raw, dict):
            raw = [raw]
            items: list[tuple[tuple[Any, ...], Any]] = [(where, raw[0])]
        elif isinstance(raw, list) and raw:
            items = [((*where, index), item) for index, item in enumerate(raw)]
        else:
            shown = self.doc.shown((*prefix, *where), raw)
            self.add(self.doc.line([prefix], where), name, "wait_for", f"{'an empty list' if raw == [] else shown} is not a list of conditions; write it like {example}")
            return None
        out: list[spec.WaitCondition] = []
        for loc, item in items:
            try:
                out.append(waitfor.parse(item, base=self.base))
            except waitfor.BadCondition as exc:
                at = (*loc, exc.key) if exc.key and isinstance(item, dict) and exc.key in item else loc
                self.add(self.doc.line([prefix], at, of_key=exc.key not in (None, "timeout", "tcp")), name, "wait_for", str(exc))
        return (tuple(out), poll) if len(out) == len(items) else None

    def trigger_graph(self, jobs: Mapping[str, spec.JobSpec], names: list[str]) -> None:
        """Across jobs: ``after`` and ``job_idle`` name jobs of the file; triggers form no loop."""
        from corral import triggers as triggers_mod

        def unknown(job: str, what: str, wanted: str) -> str:
            hint = _did_you_mean(wanted, [n for n in names if n != job])
            return f'{what} "{wanted}", which is not a job in this file; ' + (
                f'did you mean "{hint}"?' if hint else f"jobs are {', '.join(names)}"
            )

        bad: set[str] = set()
        for job in jobs.values():
            for trig in job.triggers:
                if trig.after not in names:
                    self.add(trig.line, job.name, "trigger.after", unknown(job.name, "runs after", trig.after))
                    bad.add(job.name)
            nested = ("jobs", job.name, "wait_for", "conditions") in self.doc.lines
            for index, cond in enumerate(job.wait_for):
                if cond.kind == "job_idle" and cond.target not in names:
                    at = ("wait_for", "conditions", index) if nested else ("wait_for", index)
                    self.add(
                        self.doc.line([("jobs", job.name)], at), job.name, "wait_for",
                        unknown(job.name, "waits for job", cond.target),
                    )
        graph = [(job.name, [trig.after for trig in job.triggers]) for job in jobs.values() if job.name not in bad]
        loop = triggers_mod.find_loop(graph)
        if loop:
            first = jobs[loop[1]]
            line = next((trig.line for trig in first.triggers if trig.after == loop[0]), first.line)
            if len(loop) == 2:
                message = f'job "{loop[0]}" is triggered after itself, so every run would start another; remove this trigger'
            else:
                message = (
                    f"triggers form a loop: {' -> '.join(loop)} (each one's end starts the next), "
                    "so runs would start each other forever; remove one of these triggers"
                )
            self.add(line, first.name, "trigger", message)

    def contradictions(self, name: str, data: dict[str, Any], origins: Mapping[str, list[_Path]]) -> None:
        """Keys that are each fine but wrong together (checked even when other keys fail)."""
        most = data.get("max_concurrent")
        overlap = data.get("overlap", "skip")
        if type(most) is int and most > 1 and overlap in spec.OVERLAP_CHOICES and overlap != "allow":
            where = origins["max_concurrent"]
            self.add(
                self.doc.line(where, ("max_concurrent",)),
                name,
                "max_concurrent",
                f"{self.doc.shown((*where[0], 'max_concurrent'), most)} only applies with overlap: allow, but overlap is {overlap}; "
                f"set overlap: allow to let up to {most} runs overlap, or remove max_concurrent",
            )

    def schedules(
        self, name: str, data: dict[str, Any], prefixes: list[_Path], tz: str, dst: spec.DstPolicy
    ) -> tuple[Any, ...] | None:
        """Every schedule value through ``schedule.parse``; None if any is wrong."""
        if "schedule" not in data:
            return ()
        from corral import schedule

        raw = data["schedule"]
        if raw is None:
            self.add(
                self.doc.line(prefixes, ("schedule",)),
                name,
                "schedule",
                f"no value given; expected {_EXPECT['schedule']}, or remove schedule for a job you only start by hand",
            )
            return None
        items = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
        parsed = []
        ok = True
        for index, item in items:
            loc = ("schedule",) if index is None else ("schedule", index)
            line = self.doc.line(prefixes, loc)
            if isinstance(item, dict):
                unknown = [key for key in item if key not in SCHEDULE_KEYS]
                for key in unknown:
                    self.add(
                        self.doc.line(prefixes, (*loc, key), of_key=True),
                        name,
                        "schedule",
                        _unknown_key(key, list(SCHEDULE_KEYS)),
                    )
                if unknown:
                    ok = False
                    continue
            elif not isinstance(item, str):
                self.add(
                    line,
                    name,
                    "schedule",
                    f"{self.doc.shown((*prefixes[0], *loc), item)} is not a schedule; write {_EXPECT['schedule']}",
                )
                ok = False
                continue
            try:
                parsed.append(schedule.parse(item, timezone=tz, dst=dst))
            except (errors.ScheduleError, errors.DurationError) as exc:
                shown = self.flow((*prefixes[0], *loc), item)
                message = str(exc) if shown in str(exc) else f"{shown}: {exc}"
                self.add(line, name, "schedule", message)
                ok = False
        return tuple(parsed) if ok else None

    def flow(self, path: _Path, value: Any) -> str:
        """A schedule value for a message, close to how it was written."""
        if isinstance(value, dict):
            inner = ", ".join(f"{key}: {self.doc.raw.get((*path, key), _show(item))}" for key, item in value.items())
            return "{" + inner + "}"
        return _show(value)

    def spec(
        self,
        name: str,
        model: _Job,
        tz: str,
        dst: spec.DstPolicy,
        schedules: tuple[Any, ...],
        log_max: int,
        key_line: int | None,
    ) -> spec.JobSpec:
        if isinstance(model.run, str):
            command: tuple[str, ...] = ("/bin/sh", "-c", model.run)
            shell = True
        elif model.run is None:  # a pipeline: the steps carry the commands
            command = ()
            shell = False
        else:
            command = tuple(model.run)
            shell = False
        if model.max_concurrent is not None:
            max_concurrent = model.max_concurrent
        else:
            max_concurrent = NO_CAP if model.overlap == "allow" else 1
        retries = model.retries
        return spec.JobSpec(
            name=name,
            command=command,
            shell=shell,
            schedules=schedules,
            timezone=tz,
            cwd=None if model.cwd is None else _resolve(self.base, model.cwd),
            env=tuple(model.env.items()),
            overlap=model.overlap,
            max_concurrent=max_concurrent,
            min_gap=model.min_gap,
            timeout=model.timeout,
            kill_grace=model.kill_grace,
            retries=_retry_policy(retries),
            catchup=spec.CatchupPolicy(mode=model.catchup.mode, window=model.catchup.window),
            start_deadline=model.start_deadline,
            enabled=model.enabled,
            description=model.description,
            labels=tuple(model.labels.items()),
            dst=dst,
            log_max_bytes=model.log_max if model.log_max is not None else log_max,
            line=key_line,
            source=self.source(("jobs", name), key_line),
            steps=self.step_specs(("jobs", name), model),
            parallelism=model.parallelism,
            params=self.param_specs(("jobs", name), model),
        )

    def source(self, path: _Path, key_line: int | None) -> str:
        if key_line is None:
            return ""
        lines = self.text_lines[key_line - 1 : max(self.doc.ends.get(path, key_line), key_line)]
        while lines and not lines[-1].strip():
            lines.pop()
        return textwrap.dedent("\n".join(lines)) + "\n"

    def check_rules(self, job: spec.JobSpec, model: _Job, origins: Mapping[str, list[_Path]]) -> None:
        """Rules across keys: errors for contradictions, warnings for likely surprises."""

        def line(key: str) -> int | None:
            return self.doc.line(origins.get(key, [("jobs", job.name)]), (key,))

        name = job.name
        if model.max_concurrent == 1 and model.overlap != "allow":
            self.warn(
                line("max_concurrent"),
                name,
                "max_concurrent",
                f"has no effect with overlap: {model.overlap}; only overlap: allow runs several at once",
            )
        if model.overlap == "allow" and model.max_concurrent is None and model.timeout is None and job.schedules:
            self.warn(
                line("overlap"),
                name,
                "overlap",
                "allow with neither max_concurrent nor timeout: a run that hangs never ends while new ones keep starting; set one of them",
            )
        if not job.schedules:
            return
        from corral import schedule

        interval = schedule.interval_of(job.schedules)
        if interval is None or interval <= timedelta(0):
            return
        if job.overlap == "allow" and job.timeout is not None and job.timeout > interval:
            overlapping = min(-(-job.timeout // interval), job.max_concurrent)
            if overlapping > 1:
                self.warn(
                    line("timeout"),
                    name,
                    "timeout",
                    f"{durations.format(job.timeout)} is longer than the schedule interval {durations.format(interval)} "
                    f"with overlap: allow, so up to {overlapping} runs may overlap",
                )
        if job.min_gap is not None and job.min_gap >= interval:
            self.warn(
                line("min_gap"),
                name,
                "min_gap",
                f"{durations.format(job.min_gap)} is not shorter than the schedule interval {durations.format(interval)}; "
                "it counts from the end of the previous run, so at least every other slot will be skipped",
            )


def _valid_or(value: Any, check: Callable[[Any], Any], fallback: Any) -> Any:
    if value is None:
        return fallback
    try:
        result = check(value)
    except (PydanticCustomError, ValidationError, ValueError, TypeError):
        return fallback
    return result


class _Secret(str):
    """An ``env`` value written as ``{secret: ...}`` (stays a str through validation and merging)."""


SECRET_MASK = "********"


def _secret(item: Any, text: Callable[[_Path, Any], Any], path: _Path) -> Any:
    """``{secret: VALUE}`` -> a :class:`_Secret`; anything else unchanged (a bad
    mapping is then reported by the model as "not an env value")."""
    if isinstance(item, dict) and list(item) == ["secret"]:
        value = text((*path, "secret"), item["secret"])
        if isinstance(value, str):
            return _Secret(value)
    return item


def _with_secrets(job: spec.JobSpec, data: dict[str, Any]) -> spec.JobSpec:
    """Mark the job's secret env names and mask their values in its YAML."""
    env = data.get("env")
    names = tuple(name for name, value in env.items() if isinstance(value, _Secret)) if isinstance(env, dict) else ()
    if not names:
        return job
    marked = dataclasses.replace(job, secret_env=names)
    source = marked.source
    for value in marked.secret_values:
        source = source.replace(value, SECRET_MASK)
    return dataclasses.replace(marked, source=source)


def _text_scalars(doc: _Doc, data: dict[str, Any], prefix: _Path) -> dict[str, Any]:
    """Numbers and booleans where text is meant (argv items, env and label values) become the text as written."""

    def text(path: _Path, value: Any) -> Any:
        if isinstance(value, (bool, int, float)) and path in doc.raw:
            return doc.raw[path]
        return value

    out = dict(data)
    labels = out.get("labels")
    if isinstance(labels, list) and all(isinstance(item, str) for item in labels):
        # A list of words means {word: ""}; as a mapping it merges with defaults.
        out["labels"] = dict.fromkeys(labels, "")
    if isinstance(out.get("run"), list):
        out["run"] = [text((*prefix, "run", index), item) for index, item in enumerate(out["run"])]
    for key in ("env", "labels"):
        value = out.get(key)
        if isinstance(value, dict):
            out[key] = {name: text((*prefix, key, name), item) for name, item in value.items()}
            if key == "env":
                out[key] = {name: _secret(item, text, (*prefix, key, name)) for name, item in out[key].items()}
        elif isinstance(value, list) and key == "labels":
            out[key] = [text((*prefix, key, index), item) for index, item in enumerate(value)]
    steps = out.get("steps")
    if isinstance(steps, list):
        fixed: list[Any] = []
        for index, step in enumerate(steps):
            if isinstance(step, dict):
                step = dict(step)
                where = (*prefix, "steps", index)
                if isinstance(step.get("run"), list):
                    step["run"] = [text((*where, "run", i), item) for i, item in enumerate(step["run"])]
                if isinstance(step.get("env"), dict):
                    step["env"] = {n: text((*where, "env", n), item) for n, item in step["env"].items()}
                if isinstance(step.get("name"), int) and not isinstance(step.get("name"), bool):
                    step["name"] = text((*where, "name"), step["name"])  # seed 004's stages are named 31, 32...
                if isinstance(step.get("needs"), list):
                    step["needs"] = [
                        text((*where, "needs", i), item) if isinstance(item, int) else item
                        for i, item in enumerate(step["needs"])
                    ]
                elif isinstance(step.get("needs"), int) and not isinstance(step.get("needs"), bool):
                    step["needs"] = text((*where, "needs"), step["needs"])
            fixed.append(step)
        out["steps"] = fixed
    return out


def _bad_name(name: str) -> str:
    message = (
        f"invalid job name {_show(name)}; use 1-64 characters of a-z, 0-9, _, . and -, "
        f"starting with a letter or digit ({NAME_PATTERN})"
    )
    fixed = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-_.")[:64]
    if fixed and _NAME_RE.match(fixed):
        message += f'; try "{fixed}"'
    return message


_KIND_NOUN = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false"}


def _loads_as(kinds: tuple[type, ...]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return False
        return isinstance(value, kinds) and (bool not in kinds) == (not isinstance(value, bool))

    return check


_SAFE_LOADABLE: dict[str, Callable[[str], bool]] = {
    "int_type": _loads_as((int,)),
    "float_type": _loads_as((int, float)),
    "bool_type": _loads_as((bool,)),
}


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make the path of a ``sqlite:///relative.db`` URL relative to the job file."""
    match = _SQLITE_RE.match(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    if not rest or rest.startswith(("/", ":memory:", "file:")):
        return url
    path, mark, query = rest.partition("?")
    return f"{scheme}:///{base / path}{mark}{query}"


def _syntax_problem(file: str, exc: yaml.YAMLError) -> errors.Problem:
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context:
        elsewhere = context_mark is not None and (mark is None or context_mark.line != mark.line)
        where = f" that starts on line {context_mark.line + 1}" if elsewhere else ""
        # PyYAML splits some reasons in two: "expected a single document" + "but found another".
        reason = f"{context}, {reason}" if reason.startswith("but ") else f"{reason} ({context}{where})"
    if mark is None:
        return errors.Problem(file, None, None, None, f"YAML syntax error: {reason}")
    return errors.Problem(file, mark.line + 1, None, None, f"column {mark.column + 1}: YAML syntax error: {reason}")


# ---------------------------------------------------------------------------
# Public API


def load(path: str | Path, *, environ: Mapping[str, str] | None = None) -> spec.Config:
    """Read and check the job file at ``path``; raise ConfigError listing every problem."""
    file = str(path)
    absolute = Path(os.path.abspath(path))
    try:
        text = absolute.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise errors.ConfigError(
            [
                errors.Problem(
                    file, None, None, None, f"no job file at {absolute}; create one or pass -c FILE / set CORRAL_CONFIG"
                )
            ]
        ) from exc
    except IsADirectoryError as exc:
        raise errors.ConfigError(
            [
                errors.Problem(
                    file,
                    None,
                    None,
                    None,
                    f"{absolute} is a directory; pass the job file itself, like -c {absolute / DEFAULT_FILE}",
                )
            ]
        ) from exc
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(
            [
                errors.Problem(
                    file,
                    None,
                    None,
                    None,
                    f"not UTF-8 text (byte {exc.start} cannot be decoded); save the file as UTF-8",
                )
            ]
        ) from exc
    except OSError as exc:
        raise errors.ConfigError(
            [errors.Problem(file, None, None, None, f"cannot read {absolute}: {exc.strerror or exc}")]
        ) from exc
    return loads(text, path=path, environ=environ)


def loads(text: str, *, path: str | Path = DEFAULT_FILE, environ: Mapping[str, str] | None = None) -> spec.Config:
    """Check job-file ``text`` as if read from ``path`` (for messages and relative paths)."""
    environ = os.environ if environ is None else environ
    file = str(path)
    config_path = Path(os.path.abspath(path))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise errors.ConfigError([_syntax_problem(file, exc)]) from exc
    if root is None:
        raise errors.ConfigError(
            [errors.Problem(file, None, None, None, 'the job file is empty; it needs at least a "jobs:" section')]
        )
    doc = _Doc(file)
    tree = doc.build(root)
    if not isinstance(tree, dict):
        raise errors.ConfigError(
            [
                errors.Problem(
                    file,
                    root.start_mark.line + 1,
                    None,
                    None,
                    f"the top level is {_show(tree)}; it must be a mapping with keys like timezone and jobs",
                )
            ]
        )
    checker = _Checker(doc, config_path.parent, text)
    settings, jobs = checker.check(tree, environ, config_path)
    if checker.problems:
        ordered = sorted(checker.problems, key=lambda problem: problem.line or 0)
        raise errors.ConfigError(ordered)
    warnings = tuple(str(warning) for warning in sorted(checker.warnings, key=lambda problem: problem.line or 0))
    return spec.Config(settings=settings, jobs=jobs, warnings=warnings, text=text, notify=checker.notify)
