"""Seed 004: a 26-hour job on a daily 01:00 schedule, under every overlap policy."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from corral import forecast, schedule
from corral.spec import JobSpec

SEOUL_0100 = schedule.parse("0 1 * * *", timezone="Asia/Seoul")
START = datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=9)))  # just before day 1's 01:00 in Seoul
H = timedelta(hours=1)


def batch(**kw: object) -> JobSpec:
    base = JobSpec(name="batch-31-63", command=("./stages.sh",), shell=False, schedules=(SEOUL_0100,), timezone="Asia/Seoul")
    return replace(base, **kw)  # type: ignore[arg-type]


def outcomes(fc: forecast.Forecast) -> list[str]:
    return [s.outcome for s in fc.slots]


def test_skip_runs_every_second_day_and_says_so() -> None:
    fc = forecast.simulate(batch(overlap="skip"), start=START, days=6, duration=26 * H)
    assert outcomes(fc) == ["run", "skipped"] * 3
    assert all(s.reason == "overlap" for s in fc.skipped)
    assert fc.effective_cadence == 48 * H
    assert fc.nominal_interval == 24 * H
    assert any("every: 30h" in s for s in fc.suggestions)
    assert any("after_completion" in s for s in fc.suggestions)


def test_skip_messages_name_the_running_run_and_its_age() -> None:
    fc = forecast.simulate(batch(overlap="skip"), start=START, days=2, duration=26 * H)
    assert fc.skipped[0].message == "previous run 1 of batch-31-63 still running for 1d (overlap: skip)"


def test_queue_one_starts_each_run_when_the_previous_ends_and_drifts() -> None:
    fc = forecast.simulate(batch(overlap="queue_one"), start=START, days=4, duration=26 * H)
    starts = [s.starts_at for s in fc.slots if s.starts_at]
    gaps = {b - a for a, b in zip(starts, starts[1:])}  # type: ignore[operator]
    assert gaps == {26 * H}
    assert fc.effective_cadence == 26 * H


def test_queue_all_never_skips_but_the_backlog_grows() -> None:
    fc = forecast.simulate(batch(overlap="queue_all"), start=START, days=6, duration=26 * H)
    assert "skipped" not in outcomes(fc)
    delays = [s.starts_at - s.scheduled_for for s in fc.slots if s.starts_at]  # type: ignore[operator]
    assert delays == sorted(delays) and delays[-1] > delays[1]


def test_replace_kills_each_run_before_it_can_finish() -> None:
    fc = forecast.simulate(batch(overlap="replace"), start=START, days=4, duration=26 * H)
    assert outcomes(fc) == ["run"] * 4
    assert all(s.reason == "replaced" for s in fc.slots[:-1])


def test_allow_overlaps_two_copies() -> None:
    fc = forecast.simulate(batch(overlap="allow", max_concurrent=2), start=START, days=4, duration=26 * H)
    assert outcomes(fc) == ["run"] * 4
    assert fc.effective_cadence == 24 * H


def test_allow_with_one_slot_behaves_like_skip() -> None:
    fc = forecast.simulate(batch(overlap="allow", max_concurrent=1), start=START, days=4, duration=26 * H)
    assert outcomes(fc) == ["run", "skipped"] * 2


def test_min_gap_skips_slots_too_close_to_the_previous_end() -> None:
    # 20 h runs end at 21:00; a 6 h gap leaves the next 01:00 (4 h later) too soon.
    fc = forecast.simulate(batch(min_gap=6 * H), start=START, days=4, duration=20 * H)
    assert outcomes(fc) == ["run", "skipped"] * 2
    assert fc.skipped[0].reason == "min_gap"


def test_every_30h_fits_a_26h_run() -> None:
    every = schedule.parse({"every": "30h", "anchor": "2024-01-01T01:00"}, timezone="Asia/Seoul")
    fc = forecast.simulate(batch(schedules=(every,)), start=START, days=6, duration=26 * H)
    assert "skipped" not in outcomes(fc) and fc.effective_cadence == 30 * H
    assert fc.suggestions == []


def test_after_completion_runs_back_to_back_with_the_gap() -> None:
    after = schedule.parse({"after_completion": "6h"}, timezone="Asia/Seoul")
    fc = forecast.simulate(batch(schedules=(after,)), start=START, days=6, duration=26 * H)
    assert fc.effective_cadence == 32 * H and "skipped" not in outcomes(fc)


def test_a_short_job_fits_and_gets_no_suggestions() -> None:
    fc = forecast.simulate(batch(), start=START, days=3, duration=2 * H)
    assert outcomes(fc) == ["run"] * 3 and fc.suggestions == []


@pytest.mark.parametrize(("values", "expected"), [([], None), ([5.0], (5.0, 5.0)), (list(map(float, range(1, 101))), (50.0, 95.0))])
def test_percentiles(values: list[float], expected: tuple[float, float] | None) -> None:
    assert forecast.percentiles(values) == expected
