"""corral doctor's judgements, on plain values and a fixed now."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from corral import doctor

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)


def _node(**values: object) -> dict[str, object]:
    return dict(name="n1", pid=42, hostname="box", heartbeat_at=NOW - timedelta(seconds=30), config_error=None) | values


def test_no_running_corral_up_fails() -> None:
    [check] = doctor.heartbeats([], NOW)
    assert check.status == "fail" and "no `corral up` is running" in check.detail


def test_a_fresh_heartbeat_is_ok_and_a_stale_one_fails() -> None:
    assert [c.status for c in doctor.heartbeats([_node()], NOW)] == ["ok"]
    [stale] = doctor.heartbeats([_node(heartbeat_at=NOW - timedelta(minutes=10))], NOW)
    assert stale.status == "fail" and stale.detail.startswith("n1 (pid 42 on box): last heartbeat 10m")


def test_a_job_file_the_engine_could_not_reload_warns() -> None:
    [check] = doctor.heartbeats([_node(config_error="corral.yaml:3: bad\nmore")], NOW)
    assert check.status == "warn" and "(corral.yaml:3: bad)" in check.detail


def test_a_channel_with_failed_deliveries_fails_and_retries_warn() -> None:
    rows = [
        dict(channel="ops", status="failed", attempts=8, last_error="channel ops: HTTP 500", created_at=NOW - timedelta(hours=1)),
        dict(channel="mail", status="pending", attempts=2, last_error="SMTP: refused", created_at=NOW - timedelta(hours=1)),
        dict(channel="hook", status="sent", attempts=1, last_error=None, created_at=NOW - timedelta(hours=1)),
        dict(channel="hook", status="failed", attempts=8, last_error="old", created_at=NOW - timedelta(days=3)),
    ]
    checks = {c.name: c for c in doctor.channels(rows, ["ops", "mail", "hook"], NOW)}
    assert checks["channel ops"].status == "fail" and "last error: channel ops: HTTP 500" in checks["channel ops"].detail
    assert checks["channel mail"].status == "warn"
    assert checks["channel hook"].status == "ok" and checks["channel hook"].detail.startswith("1 sent")


def test_disk_space_thresholds() -> None:
    gb = 1024**3
    assert doctor.disk(Path("/logs"), 50 * gb, 100 * gb).status == "ok"
    assert doctor.disk(Path("/logs"), 5 * gb, 100 * gb).status == "warn"
    low = doctor.disk(Path("/logs"), 1 * gb, 100 * gb)
    assert low.status == "fail" and low.detail.startswith("/logs: 1GB free of 100GB (1%)")
