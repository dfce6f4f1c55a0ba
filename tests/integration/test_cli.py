"""Every CLI command against a real job file and a real SQLite store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral import cli
from corral.store import open_store
from corral.store import tables as t

JOBS = """
timezone: America/New_York
jobs:
  nightly:
    description: the long batch
    run: "echo nightly"
    schedule: "30 2 * * *"
  hourly:
    run: ["echo", "hi"]
    schedule: "0 * * * *"
    timezone: Asia/Seoul
  batch:
    run: "echo batch"
    schedule: "0 1 * * *"
    timezone: Asia/Seoul
  by-hand:
    run: "echo manual"
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "corral.yaml"
    path.write_text(JOBS)
    return path


def corral(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_a_good_file(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "validate", "-c", str(job_file))
    assert code == 0 and "4 job(s), no errors" in out


def test_validate_lists_every_problem_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('jobs:\n  a:\n    run: x\n    schedule: "0 25 * * *"\n    overlap: skipp\n')
    code, _, err = corral(capsys, "validate", "-c", str(bad))
    assert code == 1
    assert 'bad.yaml:4: job "a": schedule: "0 25 * * *": hour 25 is out of range 0-23' in err
    assert 'bad.yaml:5: job "a": overlap: "skipp" is not one of' in err


def test_a_missing_job_file_says_how_to_point_at_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "jobs", "-c", str(tmp_path / "nope.yaml"))
    assert code == 1 and "CORRAL_CONFIG" in err


def test_next_prints_fire_times_in_the_job_timezone_and_utc(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "next", "batch", "-n", "2", "--from", "2026-01-01T00:00:00Z", "-c", str(job_file))
    assert code == 0
    assert "every day at 01:00 (Asia/Seoul)" in out
    assert "2026-01-02 01:00:00 KST" in out and "2026-01-01 16:00:00 UTC" in out


def test_next_json_is_strictly_after_from(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(
        capsys, "next", "batch", "-n", "3", "--from", "2026-01-01T16:00:00Z", "--json", "-c", str(job_file)
    )
    data = json.loads(out)
    assert code == 0 and data["job"] == "batch" and data["timezone"] == "Asia/Seoul"
    assert data["next"] == ["2026-01-03T01:00:00+09:00", "2026-01-04T01:00:00+09:00", "2026-01-05T01:00:00+09:00"]


def test_next_explains_the_coming_dst_change(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(
        capsys, "next", "nightly", "-n", "3", "--from", "2026-03-06T12:00:00Z", "--json", "-c", str(job_file)
    )
    data = json.loads(out)
    # 02:30 does not exist on 2026-03-08 in New York: the run moves to 03:00 EDT.
    assert "2026-03-08T03:00:00-04:00" in data["next"]
    assert data["dst"][0]["kind"] == "gap" and "03:00" in data["dst"][0]["effect"]


def test_unknown_jobs_get_a_did_you_mean(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "next", "nightli", "-c", str(job_file))
    assert code == 1 and 'did you mean "nightly"' in err


def test_bad_from_instant_is_explained(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "next", "batch", "--from", "2026-01-01T00:00", "-c", str(job_file))
    assert code == 2 and "no UTC offset" in err


def test_trigger_records_a_manual_run_for_corral_up(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = corral(capsys, "trigger", "by-hand", "--json", "-c", str(job_file))
    run = json.loads(out)
    assert code == 0 and run["job"] == "by-hand" and run["state"] == "pending" and run["trigger"] == "manual"
    assert err == ""  # the "no corral up is running" note is for people, not for --json
    code, out, _ = corral(capsys, "runs", "--json", "-c", str(job_file))
    runs = json.loads(out)
    required = {"id", "job", "state", "reason", "message", "scheduled_for", "started_at", "ended_at", "exit_code", "attempt"}
    assert required <= set(runs[0]) and runs[0]["id"] == run["id"]


def test_cancel_ends_a_waiting_run(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = corral(capsys, "trigger", "by-hand", "--json", "-c", str(job_file))
    rid = str(json.loads(out)["id"])
    code, out, _ = corral(capsys, "cancel", rid, "-c", str(job_file))
    assert code == 0 and "cancelled" in out
    code, _, err = corral(capsys, "cancel", rid, "-c", str(job_file))
    assert code == 1 and "already ended (cancelled)" in err


def test_pause_and_resume_show_in_jobs(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert corral(capsys, "pause", "hourly", "-c", str(job_file))[0] == 0
    _, out, _ = corral(capsys, "jobs", "--json", "-c", str(job_file))
    assert {j["job"]: j["paused"] for j in json.loads(out)["jobs"]}["hourly"] is True
    assert corral(capsys, "resume", "hourly", "-c", str(job_file))[0] == 0
    _, out, _ = corral(capsys, "jobs", "--json", "-c", str(job_file))
    assert {j["job"]: j["paused"] for j in json.loads(out)["jobs"]}["hourly"] is False


def test_jobs_table_shows_schedules_in_words(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(capsys, "jobs", "-c", str(job_file))
    assert code == 0 and "manual only" in out and "every day at 01:00" in out


def _finished_run(job_file: Path, job: str, hours: float, state: str = t.SUCCEEDED) -> int:
    store = open_store(f"sqlite:///{job_file.parent / '.corral' / 'corral.db'}")
    start = datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    rid = store.create_run(job=job, state="pending", trigger="manual", scheduled_for=start, now=start)
    assert rid is not None
    store.claim(rid, node="n", now=start)
    log = job_file.parent / "run.log"
    log.write_text("line one\n<script>alert(1)</script>\n")
    store.transition(
        rid, state, now=start, ended_at=start + timedelta(hours=hours), exit_code=0 if state == t.SUCCEEDED else 2,
        log_path=str(log),
    )
    store.close()
    return rid


def test_show_and_logs_of_a_finished_run(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rid = _finished_run(job_file, "batch", 26)
    code, out, _ = corral(capsys, "show", str(rid), "--json", "-c", str(job_file))
    data = json.loads(out)
    assert code == 0 and data["state"] == "succeeded" and data["duration"] == 26 * 3600
    code, out, _ = corral(capsys, "show", str(rid), "-c", str(job_file))
    assert "1d2h" in out
    code, out, _ = corral(capsys, "logs", str(rid), "-c", str(job_file))
    assert code == 0 and out == "line one\n<script>alert(1)</script>\n"


def test_unknown_runs_are_clear_errors(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "show", "4242", "-c", str(job_file))
    assert code == 1 and "no run 4242" in err
    code, _, err = corral(capsys, "logs", "x1", "-c", str(job_file))
    assert code == 1 and "not a run id" in err


def test_forecast_of_seed_004_says_every_second_slot_is_skipped(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = corral(
        capsys, "forecast", "batch", "--duration", "26h", "--days", "6", "--from", "2026-01-01T00:00:00Z",
        "--json", "-c", str(job_file),
    )
    data = json.loads(out)
    assert code == 0
    assert [s["outcome"] for s in data["slots"]] == ["run", "skipped"] * 3
    assert data["effective_cadence_seconds"] == 48 * 3600
    assert any("every: 30h" in s for s in data["suggestions"])
    code, out, _ = corral(capsys, "forecast", "batch", "--duration", "26h", "--days", "4", "-c", str(job_file))
    assert "effective cadence: every 2d" in out and "skipped" in out


def test_forecast_without_history_asks_for_a_duration(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "forecast", "batch", "-c", str(job_file))
    assert code == 1 and "--duration" in err


def test_forecast_learns_p50_and_p95_from_history(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        _finished_run(job_file, "batch", 26)
    code, out, _ = corral(capsys, "forecast", "batch", "--days", "4", "--json", "-c", str(job_file))
    data = json.loads(out)
    assert code == 0 and set(data["cases"]) == {"p50", "p95"} and data["duration_seconds"] == 26 * 3600


def test_validate_warns_when_p95_exceeds_the_interval(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        _finished_run(job_file, "batch", 26)
    code, out, err = corral(capsys, "validate", "-c", str(job_file))
    assert code == 0
    assert 'job "batch": its p95 duration 1d2h is longer than its schedule interval 1d' in err
