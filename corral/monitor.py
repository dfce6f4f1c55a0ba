"""Monitor-only jobs: the pure core of heartbeat pings (issue 6, item 4).

A monitor watches a job corral does not run (a legacy crontab line that calls
``/ping/<uuid>``). It has a schedule, a time zone and a grace time, and is

- ``new`` before its first ping, while its first slot is not due;
- ``up`` while the slot after its last successful ping is not due yet;
- ``late`` from that slot until ``grace`` after it (the run may just be slow);
- ``down`` after that, or at once when the last ping said it failed.

As in healthchecks' ``hc/api/models.py``, the reference point is the last
success (or when corral started watching), and the next expected ping is the
first slot strictly after it: a job pings when it is done, after its slot, and
``grace`` covers how long it runs. Everything here takes ``now``; nothing
reads the clock.

Around this core: the job-file key ``monitor: {grace: 10m, id: <uuid>}``
(corral/config.py), the store's ``monitors`` and ``pings`` tables, the
``/ping/<uuid>`` routes (corral/web/pings.py), :class:`Watcher` (the engine's
check each loop, which writes state changes through the events outbox) and
``corral wrap`` (corral/wrap.py). See docs/alerts.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from corral import errors

if TYPE_CHECKING:  # pragma: no cover - typing only
    from collections.abc import Mapping

    from corral.schedule import Schedule
    from corral.spec import JobSpec
    from corral.store import Store

State = Literal["new", "up", "late", "down"]
PingKind = Literal["success", "start", "fail"]


class BadPing(errors.CorralError):
    """A ping URL that is not /ping/<uuid>, /start, /fail or /<exit code>."""


@dataclass(frozen=True)
class Ping:
    at: datetime
    kind: PingKind = "success"
    exit_code: int | None = None


@dataclass(frozen=True)
class Status:
    state: State
    expected_at: datetime | None
    """When the next ping is due (None: the schedule never fires again)."""
    down_at: datetime | None
    """When the monitor goes down without a ping: ``expected_at + grace``."""
    reason: str


def parse_ping(suffix: str, at: datetime) -> Ping:
    """The ping a URL suffix means: ``""`` (a plain ping) and ``"0"`` are a
    success, ``"start"`` a start, ``"fail"`` and any other exit code a failure."""
    word = suffix.strip("/")
    if word in ("", "0"):
        return Ping(at=at, kind="success", exit_code=0 if word == "0" else None)
    if word == "start":
        return Ping(at=at, kind="start")
    if word == "fail":
        return Ping(at=at, kind="fail")
    if word.isdigit() and 1 <= int(word) <= 255:
        return Ping(at=at, kind="fail", exit_code=int(word))
    raise BadPing(f'"/{word}" is not a ping; use /ping/<uuid>, /ping/<uuid>/start, /ping/<uuid>/fail or /ping/<uuid>/<exit code 0-255>')


def status(
    schedules: tuple[Schedule, ...],
    grace: timedelta,
    *,
    watched_since: datetime,
    last_success: datetime | None,
    last_failure: Ping | None,
    now: datetime,
) -> Status:
    """Where a monitor stands at ``now``.

    ``last_failure`` counts only when it is newer than ``last_success``: a
    failed run is down at once, whatever the schedule says."""
    if last_failure is not None and (last_success is None or last_failure.at > last_success):
        code = f" (exit code {last_failure.exit_code})" if last_failure.exit_code is not None else ""
        return Status("down", None, None, f"the last ping at {last_failure.at:%Y-%m-%d %H:%M}Z reported a failure{code}")
    reference = last_success or watched_since
    slots = [s.next_after(reference) for s in schedules]
    due = [slot for slot in slots if slot is not None]
    if not due:
        return Status("up" if last_success else "new", None, None, "the schedule does not fire again")
    expected = min(due)
    down_at = expected + grace
    if now <= expected:
        state: State = "up" if last_success else "new"
        return Status(state, expected, down_at, f"next ping expected by {expected:%Y-%m-%d %H:%M}Z")
    if now <= down_at:
        return Status("late", expected, down_at, f"the ping due at {expected:%Y-%m-%d %H:%M}Z has not come; down at {down_at:%H:%M}Z")
    return Status("down", expected, down_at, f"no ping since the one due at {expected:%Y-%m-%d %H:%M}Z (grace {_fmt(grace)})")


def next_change(st: Status, now: datetime) -> datetime | None:
    """When ``status`` changes next without a ping: the loop sleeps until then."""
    if st.state in ("new", "up"):
        return st.expected_at
    if st.state == "late":
        return st.down_at
    return None


def _fmt(delta: timedelta) -> str:
    from corral import durations

    return durations.format(delta)


def row_status(job: JobSpec, row: Mapping[str, object], now: datetime) -> Status:
    """:func:`status` of a monitor-only job from its store row."""
    assert job.monitor is not None
    failure = None
    if row.get("last_failure_at") is not None:
        failure = Ping(at=row["last_failure_at"], kind="fail", exit_code=row.get("last_exit_code"))  # type: ignore[arg-type]
    return status(
        job.schedules,
        job.monitor.grace,
        watched_since=row["watched_since"],  # type: ignore[arg-type]
        last_success=row.get("last_success_at"),  # type: ignore[arg-type]
        last_failure=failure,
        now=now,
    )


class Watcher:
    """The engine's view of its monitor-only jobs: :meth:`check` compares each
    monitor's stored state with :func:`status` at ``now`` and records the
    changes (one read of the ``monitors`` table; nothing when there are no
    monitors). :attr:`next_check` is when a state changes next without a ping,
    so the engine wakes up for it."""

    def __init__(self, store: Store, jobs: Mapping[str, JobSpec]) -> None:
        self.store = store
        self.set_jobs(jobs)

    def set_jobs(self, jobs: Mapping[str, JobSpec]) -> None:
        self.jobs = {name: job for name, job in jobs.items() if job.monitor is not None and job.enabled}
        self._synced = False
        self.next_check: datetime | None = None

    def ping_ids(self, now: datetime) -> dict[str, str]:
        """Ping ids by job (made and stored the first time)."""
        ids = self.store.sync_monitors({n: j.monitor.id for n, j in self.jobs.items() if j.monitor}, now=now)
        self._synced = True
        return ids

    def check(self, now: datetime) -> list[dict[str, str]]:
        if not self.jobs:
            return []
        if not self._synced:
            self.ping_ids(now)
        rows = self.store.monitors()
        changes: list[dict[str, str]] = []
        wake: list[datetime] = []
        for name, job in self.jobs.items():
            row = rows.get(name)
            if row is None:
                continue
            st = row_status(job, row, now)
            if st.state != row["state"]:
                reason = "ping" if st.state == "up" or (st.state == "down" and st.expected_at is None) else "no_ping"
                changes.append({"job": name, "old": str(row["state"]), "new": st.state, "reason": reason, "message": st.reason})
            upcoming = next_change(st, now)
            if upcoming is not None:
                # The change comes just after ``upcoming`` (late is "past the slot").
                wake.append(max(upcoming, now) + timedelta(milliseconds=1))
        if changes:
            self.store.set_monitor_states(changes, now=now)
        self.next_check = min(wake) if wake else None
        return changes
