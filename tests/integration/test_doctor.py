"""corral doctor against a real job file and SQLite store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from corral import doctor
from corral.cli import main
from corral.store import open_store

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)
JOBS = 'notify:\n  channels: {ops: {type: slack, url: "http://127.0.0.1:9/x"}}\njobs:\n  a: {run: "true"}\n'


def test_it_reports_a_dead_engine_and_a_failing_channel(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOBS)
    store = open_store(f"sqlite:///{tmp_path / '.corral' / 'corral.db'}")
    store.register_node("n1", config_path=str(path), now=NOW - timedelta(hours=2))
    store.record_alerts([], [dict(channel="ops", job="a", run_id=None, kind="failure", event_seq=None, status="pending", payload="{}")],
                        consumer=None, seq=0, now=NOW - timedelta(hours=1))
    row = store.list_deliveries()[0]
    store.update_delivery(row["id"], status="failed", attempts=8, last_error="channel ops: HTTP 404")
    store.close()
    checks = {c.name: c for c in doctor.run_checks(path, None, environ={}, now=NOW)}
    assert checks["job file"].status == "ok" and checks["store"].status == "ok" and checks["schema"].status == "ok"
    assert checks["corral up"].status == "fail" and "last heartbeat 2h" in checks["corral up"].detail
    assert checks["channel ops"].status == "fail" and "HTTP 404" in checks["channel ops"].detail
    assert checks["log disk"].status in ("ok", "warn")


def test_the_command_exits_1_when_a_check_fails(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOBS)
    result = CliRunner().invoke(main, ["doctor", "-c", str(path)])
    assert result.exit_code == 1
    assert "fail  store" in result.output and "corral up` creates it" in result.output
