"""Prometheus metrics, rendered from the store on each scrape.

Everything except the scheduler loop lag comes from the store, so any process
serving ``/metrics`` (the dashboard of ``corral up`` or a separate ``corral
web``) reports the same numbers. The loop lag is measured by the engine of
this process and is absent where no engine runs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from corral.spec import Config
from corral.store import Store
from corral.store import tables as t

CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"
"""prometheus_client's CONTENT_TYPE_LATEST, written out so `corral up` need not import it; a test checks they agree."""
DURATION_BUCKETS: tuple[float, ...] = (10, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400)
"""Few buckets on purpose: a histogram line per bucket per job, and 1,000 jobs."""

_loop_lag: float | None = None


def observe_loop_lag(seconds: float) -> None:
    """Called by the engine: how late its last wake-up was."""
    global _loop_lag
    _loop_lag = max(0.0, seconds)


def _escape(value: str) -> str:
    """A label value as the text format wants it (backslash, quote and newline escaped)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _value(number: float) -> str:
    """As prometheus_client prints it (``3.0``, ``1.7e+09``), with a fast path for counts."""
    if isinstance(number, int) and -(10**6) < number < 10**6:
        return f"{number}.0"
    # Imported here: `corral up` imports this module for the loop lag alone.
    from prometheus_client.utils import floatToGoString

    return floatToGoString(number)


class _Text:
    """The exposition written line by line.

    prometheus_client's generate_latest validates and re-escapes every label
    of every sample; with 1,000 jobs that was most of a scrape. The format is
    simple enough to write directly (``promtool check metrics`` checks it in
    the tests)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str) -> None:
        doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines.append(f"# HELP {name} {doc}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: str, value: float) -> None:
        self.lines.append(f"{name}{{{labels}}} {_value(value)}" if labels else f"{name} {_value(value)}")

    def body(self) -> bytes:
        self.lines.append("")
        return "\n".join(self.lines).encode()


def _write(out: _Text, snap: dict[str, Any], cfg: Config | None) -> None:
    out.family("corral_runs_total", "counter", "Runs that reached a final state, by job and state.")
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for job, state, count in snap["by_state"]:
        if state in t.FINAL_STATES:
            out.sample("corral_runs_total", f'job="{_escape(job)}",state="{_escape(state)}"', count)
        elif state == t.RUNNING:
            running[job] = running.get(job, 0) + count
        else:
            waiting[job] = waiting.get(job, 0) + count
    jobs = sorted(set(cfg.jobs if cfg is not None else ()) | set(running) | set(waiting))
    out.family("corral_runs_in_flight", "gauge", "Runs executing now, by job.")
    for job in jobs:
        out.sample("corral_runs_in_flight", f'job="{_escape(job)}"', running.get(job, 0))
    out.family("corral_runs_queued", "gauge", "Runs waiting to start (pending or queued), by job.")
    for job in jobs:
        out.sample("corral_runs_queued", f'job="{_escape(job)}"', waiting.get(job, 0))

    out.family("corral_skipped_slots_total", "counter", "Slots recorded as skipped, by job and reason.")
    for job, reason, count in snap["skipped"]:
        out.sample("corral_skipped_slots_total", f'job="{_escape(job)}",reason="{_escape(reason)}"', count)

    name = "corral_run_duration_seconds"
    out.family(name, "histogram", "Duration of finished runs (succeeded, failed, timed out).")
    bounds = [_le(b) for b in DURATION_BUCKETS]
    for job, count, total, cumulative in snap["durations"]:
        label = f'job="{_escape(job)}"'
        for bound, n in zip(bounds, cumulative):
            out.sample(f"{name}_bucket", f'{label},le="{bound}"', n)
        out.sample(f"{name}_bucket", f'{label},le="+Inf"', count)
        out.sample(f"{name}_count", label, count)
        out.sample(f"{name}_sum", label, total)

    name = "corral_last_success_timestamp_seconds"
    out.family(name, "gauge", "When the job's last successful run ended (Unix time).")
    for job, ended in snap["last_success"]:
        if isinstance(ended, datetime):
            if ended.tzinfo is None:
                ended = ended.replace(tzinfo=timezone.utc)
            out.sample(name, f'job="{_escape(job)}"', ended.timestamp())

    out.family("corral_notifications_total", "counter", "Notification deliveries by channel and status.")
    for channel, status, count in snap["deliveries"]:
        out.sample("corral_notifications_total", f'channel="{_escape(channel)}",status="{_escape(status)}"', count)

    out.family("corral_events_last_seq", "gauge", "Sequence number of the newest published event.")
    out.sample("corral_events_last_seq", "", snap["last_seq"])
    out.family("corral_events_unpublished", "gauge", "Outbox rows the publisher has not numbered yet.")
    out.sample("corral_events_unpublished", "", snap["unpublished"])
    if _loop_lag is not None:
        out.family("corral_scheduler_loop_lag_seconds", "gauge", "How late the engine's last wake-up was.")
        out.sample("corral_scheduler_loop_lag_seconds", "", _loop_lag)


def _le(bound: float) -> str:
    return repr(float(bound))


def render(store: Store, cfg: Config | None, *, now: datetime) -> bytes:
    """The Prometheus text exposition of corral's state."""
    out = _Text()
    _write(out, store.metrics_snapshot(DURATION_BUCKETS), cfg)
    return out.body()
