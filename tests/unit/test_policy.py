"""Overlap, min_gap, deadline, catch-up and retry decisions, with fixed instants."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pytest

from corral import policy
from corral.spec import CatchupPolicy, JobSpec, RetryPolicy

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


@dataclass
class R:
    id: int
    state: str
    scheduled_for: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


def job(**kw: object) -> JobSpec:
    base = JobSpec(name="market-sync", command=("/bin/true",), shell=False)
    return replace(base, **kw)  # type: ignore[arg-type]


RUNNING_41 = R(41, "running", T0 - 24 * H, started_at=T0 - 23 * H - timedelta(minutes=12))


def test_a_free_slot_starts() -> None:
    assert policy.admit(job(), slot=T0, now=T0, active=[], last_executed=None) == policy.Decision("pending")


def test_skip_names_the_run_that_is_still_running_and_for_how_long() -> None:
    d = policy.admit(job(overlap="skip"), slot=T0, now=T0, active=[RUNNING_41], last_executed=RUNNING_41)
    assert d.state == "skipped" and d.reason == "overlap"
    assert d.message == "previous run 41 of market-sync still running for 23h12m (overlap: skip)"


def test_queue_one_keeps_one_waiting_run_and_skips_the_rest() -> None:
    j = job(overlap="queue_one")
    first = policy.admit(j, slot=T0, now=T0, active=[RUNNING_41], last_executed=RUNNING_41)
    assert first.state == "queued"
    queued = R(42, "queued", T0)
    second = policy.admit(j, slot=T0 + H, now=T0 + H, active=[RUNNING_41, queued], last_executed=RUNNING_41)
    assert second.state == "skipped" and second.reason == "overlap"
    assert "run 42 is already queued" in (second.message or "")


def test_queue_all_queues_every_slot_in_order() -> None:
    j = job(overlap="queue_all")
    active = [RUNNING_41, R(42, "queued", T0), R(43, "queued", T0 + H)]
    d = policy.admit(j, slot=T0 + 2 * H, now=T0 + 2 * H, active=active, last_executed=RUNNING_41)
    assert d.state == "queued" and "behind 3 run(s)" in (d.message or "")


def test_replace_stops_the_running_run_and_waits_for_it() -> None:
    d = policy.admit(job(overlap="replace"), slot=T0, now=T0, active=[RUNNING_41], last_executed=RUNNING_41)
    assert d.state == "queued" and d.stop == (41,)


def test_allow_runs_side_by_side_up_to_max_concurrent() -> None:
    j = job(overlap="allow", max_concurrent=2)
    one = policy.admit(j, slot=T0, now=T0, active=[RUNNING_41], last_executed=RUNNING_41)
    assert one.state == "pending"
    two = [RUNNING_41, R(42, "running", T0, started_at=T0)]
    full = policy.admit(j, slot=T0 + H, now=T0 + H, active=two, last_executed=two[1])
    assert full.state == "skipped" and full.reason == "overlap"
    assert full.message == "2 run(s) of market-sync already in flight, max_concurrent is 2"


def test_a_pending_run_counts_as_in_flight() -> None:
    d = policy.admit(job(), slot=T0, now=T0, active=[R(50, "pending", T0)], last_executed=None)
    assert d.state == "skipped" and "run 50 of market-sync is about to start" in (d.message or "")


def test_paused_jobs_skip_with_a_hint_to_resume() -> None:
    d = policy.admit(job(), slot=T0, now=T0, active=[], last_executed=None, paused=True)
    assert d.reason == "paused" and "corral resume market-sync" in (d.message or "")


def test_min_gap_skips_a_slot_too_soon_after_the_previous_run_ended() -> None:
    # Seed 004: the run ended at 03:00 on day 2; a 6 h minimum gap.
    prev = R(40, "succeeded", T0 - 24 * H, started_at=T0 - 24 * H, ended_at=T0 - 22 * H)
    j = job(min_gap=timedelta(hours=23))
    d = policy.admit(j, slot=T0, now=T0, active=[], last_executed=prev)
    assert d.reason == "min_gap"
    assert d.message == "previous run 40 of market-sync ended 22h00m ago; min_gap is 23h00m"
    ok = policy.admit(job(min_gap=6 * H), slot=T0, now=T0, active=[], last_executed=prev)
    assert ok.state == "pending"


def test_a_queued_run_released_inside_min_gap_waits_for_it() -> None:
    prev = R(41, "succeeded", T0 - 26 * H, started_at=T0 - 26 * H, ended_at=T0)
    d = policy.release(job(overlap="queue_one", min_gap=6 * H), R(42, "queued", T0 - 2 * H), now=T0, last_executed=prev)
    assert d.state == "pending" and d.not_before == T0 + 6 * H


def test_a_queued_run_past_its_start_deadline_is_skipped() -> None:
    j = job(overlap="queue_one", start_deadline=H)
    d = policy.release(j, R(42, "queued", T0 - 2 * H), now=T0, last_executed=None)
    assert d.state == "skipped" and d.reason == "missed_deadline"
    assert d.message == "waited 2h00m in the queue; start_deadline is 1h00m"


def test_past_deadline_only_when_a_deadline_is_set() -> None:
    assert policy.past_deadline(job(), scheduled_for=T0 - 10 * H, now=T0) is None
    late = policy.past_deadline(job(start_deadline=timedelta(minutes=5)), scheduled_for=T0 - H, now=T0)
    assert late is not None and late.reason == "missed_deadline"


MISSED = [T0 + timedelta(hours=h) for h in range(6)]  # 01:00 .. 06:00, now = 07:30
NOW = T0 + timedelta(hours=6, minutes=30)


def test_catchup_none_records_every_missed_slot_as_skipped() -> None:
    plan = policy.plan_catchup(CatchupPolicy("none"), MISSED, now=NOW)
    assert plan.run == () and [s for s, _ in plan.skip] == MISSED
    assert all("catchup: none" in why for _, why in plan.skip)


def test_catchup_latest_runs_only_the_newest_missed_slot() -> None:
    plan = policy.plan_catchup(CatchupPolicy("latest", window=timedelta(days=1)), MISSED, now=NOW)
    assert plan.run == (MISSED[-1],) and len(plan.skip) == 5


def test_catchup_all_runs_what_is_inside_the_window() -> None:
    plan = policy.plan_catchup(CatchupPolicy("all", window=timedelta(hours=3, minutes=30)), MISSED, now=NOW)
    assert plan.run == tuple(MISSED[-3:])
    assert [s for s, _ in plan.skip] == MISSED[:3]
    assert all("older than the catch-up window 3h30m" in why for _, why in plan.skip)


RETRY = RetryPolicy(attempts=3, backoff=timedelta(seconds=10), factor=2, max_backoff=timedelta(seconds=30), jitter=0)


@pytest.mark.parametrize(
    ("state", "exit_code", "attempt", "expected"),
    [
        ("failed", 1, 1, True),
        ("failed", 1, 3, True),
        ("failed", 1, 4, False),  # three retries used up
        ("timed_out", None, 1, True),
        ("lost", None, 1, True),
        ("cancelled", None, 1, False),
        ("succeeded", 0, 1, False),
    ],
)
def test_retry_decisions(state: str, exit_code: int | None, attempt: int, expected: bool) -> None:
    assert policy.should_retry(RETRY, state=state, exit_code=exit_code, attempt=attempt) is expected


def test_only_listed_exit_codes_are_retried() -> None:
    p = replace(RETRY, exit_codes=(75,))
    assert policy.should_retry(p, state="failed", exit_code=75, attempt=1)
    assert not policy.should_retry(p, state="failed", exit_code=1, attempt=1)


def test_backoff_doubles_and_is_capped() -> None:
    assert [policy.retry_delay(RETRY, attempt=a).total_seconds() for a in (1, 2, 3, 4)] == [10, 20, 30, 30]


def test_jitter_spreads_the_delay_within_its_fraction() -> None:
    p = replace(RETRY, jitter=0.5)
    rng = random.Random(7)
    delays = {policy.retry_delay(p, attempt=1, rng=rng).total_seconds() for _ in range(50)}
    assert min(delays) >= 5 and max(delays) <= 15 and len(delays) > 10
