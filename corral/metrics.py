"""Prometheus metrics, rendered from the store on each scrape.

Everything except the scheduler loop lag comes from the store, so any process
serving ``/metrics`` (the dashboard of ``corral up`` or a separate ``corral
web``) reports the same numbers. The loop lag is measured by the engine of
this process and is absent where no engine runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from corral.spec import Config
from corral.store import Store
from corral.store import tables as t

CONTENT_TYPE = CONTENT_TYPE_LATEST
DURATION_BUCKETS: tuple[float, ...] = (10, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400)
"""Few buckets on purpose: a histogram line per bucket per job, and 1,000 jobs."""

_loop_lag: float | None = None


def observe_loop_lag(seconds: float) -> None:
    """Called by the engine: how late its last wake-up was."""
    global _loop_lag
    _loop_lag = max(0.0, seconds)


class _StoreCollector:
    def __init__(self, store: Store, cfg: Config | None, now: datetime) -> None:
        self.store = store
        self.cfg = cfg
        self.now = now

    def collect(self) -> Iterator[Metric]:
        snap = self.store.metrics_snapshot(DURATION_BUCKETS)
        finals = CounterMetricFamily("corral_runs", "Runs that reached a final state, by job and state.", labels=["job", "state"])
        in_flight = GaugeMetricFamily("corral_runs_in_flight", "Runs executing now, by job.", labels=["job"])
        queued = GaugeMetricFamily("corral_runs_queued", "Runs waiting to start (pending or queued), by job.", labels=["job"])
        running: dict[str, int] = {}
        waiting: dict[str, int] = {}
        for job, state, count in snap["by_state"]:
            if state in t.FINAL_STATES:
                finals.add_metric([job, state], count)
            elif state == t.RUNNING:
                running[job] = running.get(job, 0) + count
            else:
                waiting[job] = waiting.get(job, 0) + count
        jobs = sorted(self.cfg.jobs) if self.cfg is not None else sorted(set(running) | set(waiting))
        for job in sorted(set(jobs) | set(running) | set(waiting)):
            in_flight.add_metric([job], running.get(job, 0))
            queued.add_metric([job], waiting.get(job, 0))
        yield finals
        yield in_flight
        yield queued

        skipped = CounterMetricFamily(
            "corral_skipped_slots", "Slots recorded as skipped, by job and reason.", labels=["job", "reason"]
        )
        for job, reason, count in snap["skipped"]:
            skipped.add_metric([job, reason], count)
        yield skipped

        hist = HistogramMetricFamily(
            "corral_run_duration_seconds", "Duration of finished runs (succeeded, failed, timed out).", labels=["job"]
        )
        for job, count, total, cumulative in snap["durations"]:
            buckets: list[tuple[str, float]] = [(_le(b), c) for b, c in zip(DURATION_BUCKETS, cumulative)]
            buckets.append(("+Inf", count))
            hist.add_metric([job], buckets, sum_value=total)
        yield hist

        last = GaugeMetricFamily(
            "corral_last_success_timestamp_seconds", "When the job's last successful run ended (Unix time).", labels=["job"]
        )
        for job, ended in snap["last_success"]:
            if isinstance(ended, datetime):
                if ended.tzinfo is None:
                    ended = ended.replace(tzinfo=timezone.utc)
                last.add_metric([job], ended.timestamp())
        yield last

        sent = CounterMetricFamily(
            "corral_notifications", "Notification deliveries by channel and status.", labels=["channel", "status"]
        )
        for channel, status, count in snap["deliveries"]:
            sent.add_metric([channel, status], count)
        yield sent

        yield GaugeMetricFamily("corral_events_last_seq", "Sequence number of the newest published event.", value=snap["last_seq"])
        yield GaugeMetricFamily(
            "corral_events_unpublished", "Outbox rows the publisher has not numbered yet.", value=snap["unpublished"]
        )
        if _loop_lag is not None:
            yield GaugeMetricFamily(
                "corral_scheduler_loop_lag_seconds", "How late the engine's last wake-up was.", value=_loop_lag
            )


def _le(bound: float) -> str:
    return repr(float(bound))


def render(store: Store, cfg: Config | None, *, now: datetime) -> bytes:
    """The Prometheus text exposition of corral's state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store, cfg, now))  # type: ignore[arg-type]
    return generate_latest(registry)
