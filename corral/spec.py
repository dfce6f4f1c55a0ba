"""What a job file means, as plain frozen values.

``config`` turns YAML into these; ``policy``, ``scheduler``, ``worker`` and
``executor`` read them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only
    from corral.schedule import Schedule

Overlap = Literal["skip", "queue_one", "queue_all", "replace", "allow"]
OVERLAP_CHOICES: tuple[str, ...] = ("skip", "queue_one", "queue_all", "replace", "allow")
CatchupMode = Literal["none", "latest", "all"]
CATCHUP_CHOICES: tuple[str, ...] = ("none", "latest", "all")
RETRYABLE_STATES: tuple[str, ...] = ("failed", "timed_out", "lost")

DEFAULT_LOG_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_KILL_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` is how many times a failed run is tried again (0 = never).

    The delay before retry ``n`` (1-based) is ``backoff * factor**(n-1)``,
    capped at ``max_backoff``, then spread by +/- ``jitter`` (a fraction).
    ``exit_codes`` limits retries of ``failed`` runs to those codes (None = any).
    """

    attempts: int = 0
    backoff: timedelta = timedelta(seconds=10)
    factor: float = 2.0
    max_backoff: timedelta = timedelta(hours=1)
    jitter: float = 0.1
    exit_codes: tuple[int, ...] | None = None
    on: tuple[str, ...] = RETRYABLE_STATES


@dataclass(frozen=True)
class CatchupPolicy:
    """Which slots missed while corral was down still run.

    ``none``: none of them; ``latest``: only the newest one inside ``window``;
    ``all``: every one inside ``window``. The rest are recorded as skipped.
    """

    mode: CatchupMode = "none"
    window: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class DstPolicy:
    """What a wall-clock schedule does on DST transition days.

    ``gap`` (spring forward): ``run_after`` runs a slot that falls in the
    missing hour once, right after the gap (cron's behaviour); ``skip`` drops it.
    ``fold`` (fall back, a wall time happens twice): ``cron`` runs fixed-time
    jobs once and jobs with a wildcard/stepped hour on both passes (cronie);
    ``once`` always runs only the first pass; ``both`` always runs both.
    """

    gap: Literal["run_after", "skip"] = "run_after"
    fold: Literal["cron", "once", "both"] = "cron"


ParamType = Literal["string", "int", "bool", "choice"]
PARAM_TYPES: tuple[str, ...] = ("string", "int", "bool", "choice")


@dataclass(frozen=True)
class ParamSpec:
    """A typed parameter of a job (``params:``); see :mod:`corral.params`.

    ``default`` is None when the parameter must be given on every run."""

    name: str
    type: ParamType = "string"
    default: str | int | bool | None = None
    choices: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class StepSpec:
    """One step of a pipeline job (``steps:``); see :mod:`corral.pipeline`."""

    name: str
    command: tuple[str, ...]
    """argv, as for :attr:`JobSpec.command`."""
    shell: bool
    needs: tuple[str, ...] = ()
    timeout: timedelta | None = None
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    """When a failed or timed-out step is started again, and after what delay."""
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None
    continue_on_failure: bool = False
    """A failure of this step neither skips its dependants nor fails the run."""
    line: int | None = None


TriggerOn = Literal["success", "failure", "always"]
TRIGGER_ON: tuple[str, ...] = ("success", "failure", "always")


@dataclass(frozen=True)
class TriggerSpec:
    """``trigger: {after: JOB, on: ...}``: a run of this job is created when a
    run of ``after`` ends in a state ``on`` matches (see :mod:`corral.triggers`)."""

    after: str
    on: TriggerOn = "success"
    line: int | None = None


WaitKind = Literal["pid_file", "process", "path", "job_idle", "tcp"]
WAIT_KINDS: tuple[str, ...] = ("pid_file", "process", "path", "job_idle", "tcp")
DEFAULT_WAIT_TIMEOUT = timedelta(hours=1)
DEFAULT_WAIT_POLL = timedelta(seconds=5)


@dataclass(frozen=True)
class WaitCondition:
    """One item of ``wait_for:`` (see :mod:`corral.waitfor`). ``target`` is a
    resolved path for ``pid_file``/``path``, a command-line substring for
    ``process``, a job name for ``job_idle`` and ``host:port`` for ``tcp``."""

    kind: WaitKind
    target: str
    timeout: timedelta = DEFAULT_WAIT_TIMEOUT


@dataclass(frozen=True)
class MonitorSpec:
    """``monitor:`` of a monitor-only job (issue 6, item 4): corral does not run
    it, it watches pings to ``/ping/<id>`` against the job's schedule."""

    grace: timedelta
    id: str | None = None
    """The ping id given in the job file; None: the store makes one (a random
    UUID kept per job name, see ``Store.monitor_id``)."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: tuple[str, ...]
    """argv to execute. A ``run:`` shell string becomes ``("/bin/sh", "-c", string)``.
    Empty for a pipeline job (``steps``)."""
    shell: bool
    schedules: tuple["Schedule", ...] = ()
    """Empty means manual-only."""
    timezone: str = "UTC"
    cwd: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    overlap: Overlap = "skip"
    max_concurrent: int = 1
    min_gap: timedelta | None = None
    timeout: timedelta | None = None
    kill_grace: timedelta = DEFAULT_KILL_GRACE
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    catchup: CatchupPolicy = field(default_factory=CatchupPolicy)
    start_deadline: timedelta | None = None
    enabled: bool = True
    description: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    dst: DstPolicy = field(default_factory=DstPolicy)
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    line: int | None = None
    """Line of the job's key in the job file (for messages)."""
    source: str = ""
    """The job's own YAML text, as written."""
    steps: tuple[StepSpec, ...] = ()
    """Non-empty for a pipeline job; then ``command`` is empty."""
    parallelism: int = 1
    """How many steps of one run may execute at once."""
    params: tuple[ParamSpec, ...] = ()
    secret_env: tuple[str, ...] = ()
    """Names of ``env`` entries written as ``{secret: ...}``: their values are
    masked wherever corral shows them (dashboard, API, the job's YAML)."""
    triggers: tuple[TriggerSpec, ...] = ()
    """Jobs whose runs' ends start a run of this one (``trigger:``)."""
    wait_for: tuple[WaitCondition, ...] = ()
    """Conditions a pending run waits for before it starts (``wait_for:``)."""
    wait_poll: timedelta = DEFAULT_WAIT_POLL
    """How often unmet ``wait_for`` conditions are checked again."""
    expected_duration: timedelta | None = None
    """A run still going after this long is overrunning (``overrun`` alerts)."""
    monitor: MonitorSpec | None = None
    """Set for a monitor-only job: never run by corral, watched through pings."""

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The non-empty values of the secret env entries, longest first."""
        names = set(self.secret_env)
        values = {value for name, value in self.env if name in names and value}
        return tuple(sorted(values, key=lambda v: (-len(v), v)))

    @property
    def manual_only(self) -> bool:
        return not self.schedules or self.monitor is not None

    @property
    def is_pipeline(self) -> bool:
        return bool(self.steps)


ALERT_KINDS: tuple[str, ...] = ("failure", "recovery", "timeout", "lost", "skipped", "overrun", "missed")
DEFAULT_ALERT_ON: tuple[str, ...] = ("failure", "recovery", "timeout", "lost")
CHANNEL_TYPES: tuple[str, ...] = ("discord", "slack", "webhook", "email")
DEFAULT_OVERRUN_FACTOR = 2.0


@dataclass(frozen=True)
class Channel:
    """One entry of ``notify: {channels: ...}`` (see :mod:`corral.notify`)."""

    name: str
    type: str
    url: str = ""
    secret: str = ""
    """HMAC key of a ``webhook`` channel."""
    to: tuple[str, ...] = ()
    sender: str = "corral@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    rate_limit: int | None = None
    """At most this many messages per hour on this channel (None: no limit)."""


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    timezone: str = "UTC"

    def covers(self, now: datetime) -> bool:
        from zoneinfo import ZoneInfo

        local = now.astimezone(ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # e.g. 22:00-07:00 spans midnight


@dataclass(frozen=True)
class Rule:
    """When a job alerts and where (``notify: {default: ...}`` or a job's ``notify:``)."""

    channels: tuple[str, ...] = ()
    on: tuple[str, ...] = DEFAULT_ALERT_ON
    remind_every: timedelta | None = None
    quiet_hours: QuietHours | None = None
    overrun_factor: float = DEFAULT_OVERRUN_FACTOR
    """``overrun`` without ``expected_duration``: running past this many times the p95 of its history."""
    missed_after: timedelta | None = None
    """``missed``: alert when no run succeeded for this long."""


@dataclass(frozen=True)
class NotifySettings:
    """The ``notify:`` section: channels, the default rule, per-job rules."""

    channels: dict[str, Channel] = field(default_factory=dict)
    default: Rule = field(default_factory=Rule)
    rules: dict[str, Rule] = field(default_factory=dict)
    dashboard_url: str | None = None
    """Base URL for links to run pages in messages."""
    secret_values: tuple[str, ...] = ()
    """Values written as ``{secret: ...}`` or ``${VAR}``: masked wherever corral shows them."""

    def rule_for(self, job: str) -> Rule:
        return self.rules.get(job, self.default)


@dataclass(frozen=True)
class Settings:
    """Top-level settings of a job file, paths already resolved."""

    config_path: Path
    timezone: str = "UTC"
    log_dir: Path = Path(".corral/logs")
    store_url: str = ""
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    catchup_concurrency: int = 4
    """How many catch-up runs (across all jobs) may run at the same time."""
    max_running: int | None = None
    """Global cap on runs executing at once (None = no cap)."""
    drain: timedelta = timedelta(seconds=30)
    """On SIGTERM/Ctrl-C, how long running jobs get to finish before they are terminated."""
    web_host: str = "127.0.0.1"
    web_port: int = 8377


@dataclass(frozen=True)
class Config:
    settings: Settings
    jobs: dict[str, JobSpec]
    warnings: tuple[str, ...] = ()
    text: str = ""
    notify: NotifySettings = field(default_factory=NotifySettings)
