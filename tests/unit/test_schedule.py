"""corral.schedule: cron, every and after-completion schedules, pure time math.

DST cases use real 2026 transitions:

* America/New_York: gap 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC),
  fold 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).
* Europe/London: gap 2026-03-29 01:00 GMT -> 02:00 BST (01:00 UTC),
  fold 2026-10-25 02:00 BST -> 01:00 GMT (01:00 UTC).
* Australia/Sydney: fold 2026-04-05 03:00 AEDT -> 02:00 AEST (2026-04-04 16:00 UTC),
  gap 2026-10-04 02:00 AEST -> 03:00 AEDT (2026-10-03 16:00 UTC).
* Australia/Lord_Howe (30-minute DST): fold 2026-04-05 02:00 +11 -> 01:30 +1030
  (2026-04-04 15:00 UTC), gap 2026-10-04 02:00 +1030 -> 02:30 +11 (2026-10-03 15:30 UTC).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from corral import errors, schedule
from corral.spec import DstPolicy

Gap = Literal["run_after", "skip"]
Fold = Literal["cron", "once", "both"]
GAPS: tuple[Gap, ...] = ("run_after", "skip")
FOLDS: tuple[Fold, ...] = ("cron", "once", "both")
ALL_POLICIES = [DstPolicy(gap=g, fold=f) for g in GAPS for f in FOLDS]


def utc(text: str) -> datetime:
    """``"2026-03-08 07:00"`` (or with seconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(
    value: str | dict[str, object], after: str, n: int, *, tz: str = "UTC", dst: DstPolicy = schedule.DEFAULT_DST
) -> list[str]:
    """The next ``n`` fire times as ``YYYY-MM-DD HH:MM[:SS]`` UTC strings."""
    sched = schedule.parse(value, timezone=tz, dst=dst)
    return [_show(t) for t in schedule.next_times([sched], utc(after), n)]


def _show(moment: datetime) -> str:
    assert moment.tzinfo is UTC
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def error_of(value: object, **kwargs: object) -> str:
    with pytest.raises(errors.ScheduleError) as caught:
        schedule.parse(value, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def iterate_next_after(sched: schedule.Schedule, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    moment: datetime | None = after
    while len(out) < n and moment is not None:
        moment = sched.next_after(moment)
        if moment is not None:
            out.append(moment)
    return out


# --------------------------------------------------------------------------
# Cron basics


def test_seed_004s_daily_0100_in_seoul_fires_at_1600_utc_the_day_before() -> None:
    sched = schedule.parse("0 1 * * *", timezone="Asia/Seoul")
    assert sched.kind == "cron"
    assert sched.text == "0 1 * * *"
    assert fires("0 1 * * *", "2026-01-01 00:00", 3, tz="Asia/Seoul") == [
        "2026-01-01 16:00",
        "2026-01-02 16:00",
        "2026-01-03 16:00",
    ]
    assert sched.describe() == "every day at 01:00 (Asia/Seoul)"
    assert sched.interval_hint() == timedelta(days=1)


def test_kolkatas_half_hour_offset_puts_0100_at_1930_utc_the_day_before() -> None:
    assert fires("0 1 * * *", "2026-01-01 00:00", 2, tz="Asia/Kolkata") == ["2026-01-01 19:30", "2026-01-02 19:30"]


def test_next_times_are_strictly_after_a_moment_that_is_itself_a_fire_time() -> None:
    assert fires("0 * * * *", "2026-01-01 05:00", 2) == ["2026-01-01 06:00", "2026-01-01 07:00"]
    assert fires("0 1 * * *", "2026-01-01 16:00", 1, tz="Asia/Seoul") == ["2026-01-02 16:00"]
    sched = schedule.parse("0 1 * * *", timezone="Asia/Seoul")
    assert sched.next_after(utc("2026-01-01 16:00")) == utc("2026-01-02 16:00")


def test_microseconds_just_before_a_fire_still_find_that_fire() -> None:
    sched = schedule.parse("0 * * * *")
    assert sched.next_after(utc("2026-01-01 05:59:59.999999")) == utc("2026-01-01 06:00")
    assert sched.next_after(utc("2026-01-01 06:00:00.000001")) == utc("2026-01-01 07:00")


def test_any_aware_input_gives_the_same_utc_answer() -> None:
    sched = schedule.parse("0 1 * * *", timezone="Asia/Seoul")
    seoul = datetime(2026, 1, 2, 0, 0, tzinfo=ZoneInfo("Asia/Seoul"))  # 2026-01-01 15:00 UTC
    assert sched.next_after(seoul) == utc("2026-01-01 16:00")


def test_naive_datetimes_are_refused() -> None:
    sched = schedule.parse("0 * * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        sched.next_after(datetime(2026, 1, 1))


def test_steps_ranges_and_lists_pick_the_right_minutes() -> None:
    assert fires("*/15 * * * *", "2026-01-01 00:00", 4) == [
        "2026-01-01 00:15",
        "2026-01-01 00:30",
        "2026-01-01 00:45",
        "2026-01-01 01:00",
    ]
    assert fires("1-10/4 0 * * *", "2026-01-01 00:00", 4) == [
        "2026-01-01 00:01",
        "2026-01-01 00:05",
        "2026-01-01 00:09",
        "2026-01-02 00:01",
    ]
    assert fires("5,50 12 * * *", "2026-01-01 00:00", 3) == [
        "2026-01-01 12:05",
        "2026-01-01 12:50",
        "2026-01-02 12:05",
    ]


def test_day_and_month_names_are_case_insensitive_and_may_be_spelled_out() -> None:
    numeric = fires("30 9 * 1-3 1-5", "2026-01-01 00:00", 5)
    assert fires("30 9 * JAN-mar Mon-FRI", "2026-01-01 00:00", 5) == numeric
    assert fires("30 9 * january-march monday-friday", "2026-01-01 00:00", 5) == numeric
    # 2026-01-01 is a Thursday.
    assert numeric == [
        "2026-01-01 09:30",
        "2026-01-02 09:30",
        "2026-01-05 09:30",
        "2026-01-06 09:30",
        "2026-01-07 09:30",
    ]


def test_sunday_is_both_0_and_7() -> None:
    assert fires("0 0 * * 7", "2026-01-01 00:00", 2) == fires("0 0 * * sun", "2026-01-01 00:00", 2)
    assert fires("0 0 * * 0", "2026-01-01 00:00", 2) == ["2026-01-04 00:00", "2026-01-11 00:00"]


def test_a_restricted_day_of_month_and_day_of_week_fire_on_either_as_in_cron() -> None:
    # The 13th, or any Friday (2026-01-02 and 2026-01-09 are Fridays).
    assert fires("0 0 13 * 5", "2026-01-01 00:00", 3) == ["2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00"]


def test_last_day_last_weekday_last_friday_and_second_friday_work() -> None:
    assert fires("0 0 L * *", "2026-01-01 00:00", 2) == ["2026-01-31 00:00", "2026-02-28 00:00"]
    assert fires("0 0 LW * *", "2026-01-01 00:00", 2) == ["2026-01-30 00:00", "2026-02-27 00:00"]
    assert fires("0 0 * * 5L", "2026-01-01 00:00", 2) == ["2026-01-30 00:00", "2026-02-27 00:00"]
    assert fires("0 0 * * friL", "2026-01-01 00:00", 1) == ["2026-01-30 00:00"]
    assert fires("0 0 * * fri#2", "2026-01-01 00:00", 2) == ["2026-01-09 00:00", "2026-02-13 00:00"]


def test_february_29_is_possible_and_fires_in_leap_years() -> None:
    assert fires("0 0 29 2 *", "2026-01-01 00:00", 2) == ["2028-02-29 00:00", "2032-02-29 00:00"]


def test_six_fields_put_seconds_first() -> None:
    assert fires("30 0 1 * * *", "2026-01-01 00:00", 2) == ["2026-01-01 01:00:30", "2026-01-02 01:00:30"]
    assert fires("*/20 * * * * *", "2026-01-01 00:00", 3) == [
        "2026-01-01 00:00:20",
        "2026-01-01 00:00:40",
        "2026-01-01 00:01",
    ]
    assert schedule.parse("*/20 * * * * *").interval_hint() == timedelta(seconds=20)


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_fire_like_their_expansions(macro: str, expanded: str) -> None:
    assert fires(macro, "2026-01-01 00:00", 3) == fires(expanded, "2026-01-01 00:00", 3)
    assert schedule.parse(macro).text == macro


def test_hourly_is_not_fixed_time_but_daily_is() -> None:
    assert isinstance(hourly := schedule.parse("@hourly"), schedule.CronSchedule)
    assert isinstance(daily := schedule.parse("@daily"), schedule.CronSchedule)
    assert not hourly.fixed_time
    assert daily.fixed_time


def test_the_text_is_kept_as_written_and_names_become_numbers_for_cronsim() -> None:
    sched = schedule.parse("  30 9 * * Mon-Fri ")
    assert isinstance(sched, schedule.CronSchedule)
    assert sched.text == "30 9 * * Mon-Fri"
    assert sched.expression == "30 9 * * 1-5"


def test_schedules_are_hashable_values() -> None:
    assert schedule.parse("0 1 * * *") == schedule.parse("0 1 * * *")
    assert hash(schedule.parse("0 1 * * *", timezone="Asia/Seoul")) == hash(
        schedule.CronSchedule("0 1 * * *", "Asia/Seoul")
    )
    assert schedule.parse("0 1 * * *") != schedule.parse("0 1 * * *", timezone="Asia/Seoul")


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 0 32 * *", "day-of-month 32 is out of range 1-31"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("60 0 0 * * *", "second 60 is out of range 0-59"),
        ("0 0 * * funday", 'day-of-week "funday" is not a day name; use sun-sat or 0-7'),
        ("0 0 * foo *", 'month "foo" is not a month name; use jan-dec or 1-12'),
        ("x * * * *", 'minute "x" is not a number; use 0-59'),
        (
            "-5 * * * *",
            'minute "-5" is not valid; use a number 0-59, a range like 1-5, a list like 1,3 or a step like */15',
        ),
        (
            "0 0 * *",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got 4",
        ),
        (
            "0 0 1 1 * 2026 x",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got 7; "
            "Quartz's 7th (year) field is not supported",
        ),
        ("0 0 30 2 *", '"0 0 30 2 *" can never fire: February never has a day 30'),
        ("0 0 31 4,6 *", '"0 0 31 4,6 *" can never fire: April and June never have a day 31'),
        ("0 0 30,31 2 *", '"0 0 30,31 2 *" can never fire: February never has a day 30 or 31'),
        ("0 0 31 apr *", '"0 0 31 apr *" can never fire: April never has a day 31'),
        ("*/0 * * * *", 'minute step must be 1 or more, got "*/0"'),
        ("5/a * * * *", 'minute step in "5/a" must be a whole number, like */15'),
        (
            "*/90 * * * *",
            'minute step 90 is larger than the minute range 0-59, so "*/90" would only fire at minute 0; '
            "for every 90m write {every: 90m}",
        ),
        (
            "0 */30 * * *",
            'hour step 30 is larger than the hour range 0-23, so "*/30" would only fire at hour 0; '
            "for every 30h write {every: 30h}",
        ),
        (
            "0 0 * * fri-mon",
            'day-of-week range "fri-mon" goes backwards; ranges do not wrap around, write "fri-sat,sun-mon"',
        ),
        ("0 22-2 * * *", 'hour range "22-2" goes backwards; ranges do not wrap around, write "22-23,0-2"'),
        ("0 0 * dec-feb *", 'month range "dec-feb" goes backwards; ranges do not wrap around, write "dec,jan-feb"'),
        ("1,,2 * * * *", 'minute "1,,2" has an empty list item; separate values with single commas, like 1,15'),
        ("H * * * *", 'Jenkins "H" is not supported in the minute field; write a fixed minute (0-59) instead'),
        ("H/15 * * * *", 'Jenkins "H/15" is not supported in the minute field; write */15 instead'),
        ("0 H(0-5) * * *", 'Jenkins "H(0-5)" is not supported in the hour field; write a fixed hour (0-23) instead'),
        ("0 0 ? * mon", '"?" is Quartz syntax, not cron; write * in the day-of-month field instead'),
        ("0 0 1 * ?", '"?" is Quartz syntax, not cron; write * in the day-of-week field instead'),
        (
            "0 0 15W * *",
            'day-of-month "15W" (nearest weekday) is not supported; only LW (last weekday of the month) is',
        ),
        ("0 0 L-2 * *", 'day-of-month "L-2" is not supported; use L (last day) or LW (last weekday of the month)'),
        ("0 0 * * L", 'day-of-week "L" needs a day before it, like 5L or friL (last Friday)'),
        ("0 0 * * 1#6", 'day-of-week "1#6": the number after # is the week of the month and must be 1-5'),
        (
            "@reboot",
            "@reboot is not supported; corral runs jobs on a clock schedule, "
            "so start this one from your init system (systemd, rc.local) or run it by hand",
        ),
        (
            "@daly",
            'unknown macro "@daly"; did you mean "@daily"? '
            "use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually",
        ),
        (
            "",
            'empty schedule; write a cron expression like "0 1 * * *", or {every: 30h} or {after_completion: 6h}',
        ),
        ({"every": "0s"}, '"every" must be a positive duration like 30h, got "0s"'),
        ({"every": "soon"}, '"every" must be a positive duration like 30h, got "soon"'),
        ({"every": -5}, '"every" must be a positive duration like 30h, got "-5"'),
        ({"after_completion": "-1h"}, '"after_completion" must be a positive duration like 6h, got "-1h"'),
        ({"evry": "30h"}, 'unknown schedule key "evry"; did you mean "every"?'),
        ({"after": "6h"}, 'unknown schedule key "after"; did you mean "after_completion"?'),
        (
            {"cron": "0 1 * * *"},
            'unknown schedule key "cron"; use "every" (with an optional "anchor") or "after_completion"',
        ),
        (
            {"every": "30h", "after_completion": "6h"},
            'a schedule has "every" or "after_completion", not both; write two schedules',
        ),
        ({"anchor": "2026-01-01"}, '"anchor" needs "every", like {every: 30h, anchor: 2026-01-01T01:00}'),
        (
            {"after_completion": "6h", "anchor": "2026-01-01"},
            '"anchor" only goes with "every", not with "after_completion"',
        ),
        (
            {"every": "30h", "anchor": "yesterday"},
            'anchor "yesterday" is not a date and time; write it like 2026-01-01T01:00',
        ),
        ({}, "empty schedule mapping; write {every: 30h} or {after_completion: 6h}"),
        (42, 'a schedule is a cron string like "0 1 * * *" or a mapping like {every: 30h}, got a number'),
        (["0 * * * *"], 'a schedule is a cron string like "0 1 * * *" or a mapping like {every: 30h}, got a list'),
    ],
)
def test_a_bad_schedule_gets_one_precise_message(value: object, message: str) -> None:
    assert error_of(value) == message


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        ("Asia/Seol", 'unknown timezone "Asia/Seol"; use an IANA name like Asia/Seoul'),
        ("utc", 'unknown timezone "utc"; use an IANA name like UTC'),
        ("america/new_york", 'unknown timezone "america/new_york"; use an IANA name like America/New_York'),
        ("Mars/Olympus", 'unknown timezone "Mars/Olympus"; use an IANA name like Europe/London'),
        ("", 'unknown timezone ""; use an IANA name like Europe/London'),
    ],
)
def test_an_unknown_timezone_suggests_the_closest_iana_name(tz: str, message: str) -> None:
    assert error_of("0 1 * * *", timezone=tz) == message
    assert error_of({"every": "30h"}, timezone=tz) == message


def test_an_anchor_inside_a_dst_gap_is_refused() -> None:
    assert error_of({"every": "1h", "anchor": "2026-03-08T02:30"}, timezone="America/New_York") == (
        "anchor 2026-03-08T02:30 does not exist in America/New_York: "
        "the clocks skip it for daylight saving time; pick a time outside the gap"
    )


def test_duration_errors_surface_as_schedule_errors() -> None:
    with pytest.raises(errors.ScheduleError) as caught:
        schedule.parse({"every": "abc"})
    assert isinstance(caught.value.__cause__, errors.DurationError)


# --------------------------------------------------------------------------
# every


def test_every_30h_fires_at_the_anchor_plus_multiples_of_30h() -> None:
    value = {"every": "30h", "anchor": "2026-01-01T01:00"}
    # Naive anchor: 01:00 Asia/Seoul = 2025-12-31 16:00 UTC.
    assert fires(value, "2025-12-01 00:00", 4, tz="Asia/Seoul") == [
        "2025-12-31 16:00",
        "2026-01-01 22:00",
        "2026-01-03 04:00",
        "2026-01-04 10:00",
    ]
    sched = schedule.parse(value, timezone="Asia/Seoul")
    assert sched.kind == "every"
    assert sched.text == "every 30h from 2026-01-01T01:00"
    assert sched.describe() == "every 30 hours, counted from 2026-01-01 01:00 Asia/Seoul"
    assert sched.interval_hint() == timedelta(hours=30)


def test_every_is_strictly_after_a_fire_time_and_nothing_fires_before_the_anchor() -> None:
    value = {"every": "30h", "anchor": "2026-01-01T01:00"}
    sched = schedule.parse(value, timezone="Asia/Seoul")
    assert sched.next_after(utc("2025-12-31 16:00")) == utc("2026-01-01 22:00")
    assert sched.next_after(utc("2025-12-31 15:59:59")) == utc("2025-12-31 16:00")
    assert sched.next_after(utc("2020-01-01 00:00")) == utc("2025-12-31 16:00")


def test_an_aware_anchor_is_taken_as_given() -> None:
    value = {"every": "30h", "anchor": "2026-01-01T01:00+00:00"}
    assert fires(value, "2026-01-01 00:00", 2, tz="Asia/Seoul") == ["2026-01-01 01:00", "2026-01-02 07:00"]
    aware = {"every": "1d", "anchor": datetime(2026, 1, 1, 1, 0, tzinfo=ZoneInfo("Asia/Seoul"))}
    assert fires(aware, "2026-01-01 00:00", 1) == ["2026-01-01 16:00"]


def test_without_an_anchor_every_counts_from_2000_01_01_midnight_in_the_job_timezone() -> None:
    assert fires({"every": "7h"}, "2000-01-01 00:00", 2) == ["2000-01-01 07:00", "2000-01-01 14:00"]
    # Midnight in Seoul is 15:00 UTC the day before.
    assert fires({"every": "1d"}, "2026-01-01 00:00", 1, tz="Asia/Seoul") == ["2026-01-01 15:00"]
    assert schedule.parse({"every": "90m"}).describe() == "every 90 minutes, counted from 2000-01-01 00:00 UTC"


def test_every_keeps_absolute_spacing_across_a_dst_change() -> None:
    value = {"every": "1h", "anchor": "2026-03-08T00:00"}
    assert fires(value, "2026-03-08 05:00", 4, tz="America/New_York") == [
        "2026-03-08 06:00",
        "2026-03-08 07:00",
        "2026-03-08 08:00",
        "2026-03-08 09:00",
    ]


def test_every_and_after_completion_texts_parse_back_to_the_same_schedule() -> None:
    every = schedule.parse({"every": "30h", "anchor": "2026-01-01T01:00"}, timezone="Asia/Seoul")
    assert schedule.parse(every.text, timezone="Asia/Seoul") == every
    after = schedule.parse({"after_completion": "6h"})
    assert schedule.parse(after.text) == after


def test_every_accepts_numbers_of_seconds_and_yaml_datetimes() -> None:
    sched = schedule.parse({"every": 3600, "anchor": datetime(2026, 1, 1, 0, 30)})
    assert isinstance(sched, schedule.EverySchedule)
    assert sched.every == timedelta(hours=1)
    assert sched.next_after(utc("2026-01-01 00:00")) == utc("2026-01-01 00:30")
    assert sched.text == "every 3600 from 2026-01-01T00:30:00"


# --------------------------------------------------------------------------
# after_completion


def test_after_completion_fires_a_gap_after_the_last_run_ended() -> None:
    sched = schedule.parse({"after_completion": "6h"})
    assert sched.kind == "after_completion"
    assert sched.text == "6h after completion"
    assert sched.next_after(utc("2026-01-01 00:00"), last_end=utc("2026-01-01 03:00")) == utc("2026-01-01 09:00")
    assert sched.describe() == "6 hours after the previous run ends"
    assert sched.interval_hint() is None


def test_after_completion_returns_an_overdue_time_so_the_caller_sees_it_is_due() -> None:
    sched = schedule.parse({"after_completion": "6h"})
    assert sched.next_after(utc("2026-01-02 00:00"), last_end=utc("2026-01-01 03:00")) == utc("2026-01-01 09:00")


def test_after_completion_has_no_fire_before_any_run_ended() -> None:
    sched = schedule.parse({"after_completion": "6h"})
    assert sched.next_after(utc("2026-01-01 00:00")) is None
    assert schedule.next_times([sched], utc("2026-01-01 00:00"), 3) == []


def test_after_completion_describes_single_units_in_the_singular() -> None:
    assert schedule.parse({"after_completion": "1h"}).describe() == "1 hour after the previous run ends"
    assert schedule.parse({"after_completion": "90m"}).describe() == "90 minutes after the previous run ends"


# --------------------------------------------------------------------------
# Lists of schedules


def test_a_list_of_schedules_merges_without_duplicates() -> None:
    both = [schedule.parse("0 * * * *"), schedule.parse("*/30 * * * *")]
    times = schedule.next_times(both, utc("2026-01-01 00:00"), 4)
    assert [_show(t) for t in times] == [
        "2026-01-01 00:30",
        "2026-01-01 01:00",
        "2026-01-01 01:30",
        "2026-01-01 02:00",
    ]


def test_next_fire_is_the_earliest_over_the_list() -> None:
    scheds = [
        schedule.parse("0 1 * * *", timezone="Asia/Seoul"),
        schedule.parse({"every": "30h", "anchor": "2026-01-01T01:00"}, timezone="Asia/Seoul"),
        schedule.parse({"after_completion": "6h"}),
    ]
    after = utc("2026-01-01 00:00")
    assert schedule.next_fire(scheds, after) == utc("2026-01-01 16:00")
    assert schedule.next_fire(scheds, after, last_end=utc("2025-12-31 20:00")) == utc("2026-01-01 02:00")
    assert schedule.next_fire([], after) is None


def test_next_times_mixes_kinds_and_after_completion_adds_its_one_known_time() -> None:
    scheds = [
        schedule.parse("0 1 * * *", timezone="Asia/Seoul"),
        schedule.parse({"every": "30h", "anchor": "2026-01-01T01:00"}, timezone="Asia/Seoul"),
        schedule.parse({"after_completion": "6h"}),
    ]
    times = schedule.next_times(scheds, utc("2026-01-01 00:00"), 5, last_end=utc("2026-01-01 10:00"))
    assert [_show(t) for t in times] == [
        "2026-01-01 16:00",  # after completion (10:00 + 6h) and the Seoul 01:00 run, once
        "2026-01-01 22:00",  # every 30h
        "2026-01-02 16:00",
        "2026-01-03 04:00",
        "2026-01-03 16:00",
    ]
    assert schedule.next_times(scheds, utc("2026-01-01 00:00"), 0) == []


def test_next_times_agrees_with_next_fire_when_after_completion_is_overdue() -> None:
    scheds = [schedule.parse("0 * * * *"), schedule.parse({"after_completion": "1h"})]
    after, last_end = utc("2026-01-01 05:30"), utc("2026-01-01 03:00")
    times = schedule.next_times(scheds, after, 2, last_end=last_end)
    assert times == [utc("2026-01-01 04:00"), utc("2026-01-01 06:00")]
    assert times[0] == schedule.next_fire(scheds, after, last_end=last_end)


def test_describe_all_says_manual_only_for_no_schedules() -> None:
    assert schedule.describe_all([]) == "manual only"
    scheds = [schedule.parse("0 1 * * *", timezone="Asia/Seoul"), schedule.parse({"after_completion": "6h"})]
    assert schedule.describe_all(scheds) == "every day at 01:00 (Asia/Seoul); 6 hours after the previous run ends"


def test_interval_of_is_the_smallest_hint_over_the_list() -> None:
    daily = schedule.parse("0 1 * * *", timezone="Asia/Seoul")
    every = schedule.parse({"every": "30h"})
    after = schedule.parse({"after_completion": "6h"})
    assert schedule.interval_of([daily, every, after]) == timedelta(days=1)
    assert schedule.interval_of([every, after]) == timedelta(hours=30)
    assert schedule.interval_of([after]) is None
    assert schedule.interval_of([]) is None


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 9-17 * * *", timedelta(hours=1)),
        ("30 9 * * 1-5", timedelta(days=1)),
        ("0 0 * * 0", timedelta(days=7)),
        ("0 0 1 * *", timedelta(days=28)),
        ("0 0 1 1 *", timedelta(days=365)),
        ("0 8,20 * * *", timedelta(hours=12)),
    ],
)
def test_a_cron_interval_hint_is_its_smallest_gap_between_fires(expr: str, hint: timedelta) -> None:
    assert schedule.parse(expr, timezone="America/New_York", dst=DstPolicy(fold="both")).interval_hint() == hint


# --------------------------------------------------------------------------
# slots_between


def test_slots_between_excludes_the_start_and_includes_the_end() -> None:
    slots, more = schedule.slots_between(
        [schedule.parse("0 * * * *")], utc("2026-01-01 00:00"), utc("2026-01-01 03:00")
    )
    assert [_show(t) for t in slots] == ["2026-01-01 01:00", "2026-01-01 02:00", "2026-01-01 03:00"]
    assert more == 0


def test_slots_between_stops_at_the_limit_and_counts_the_rest_exactly() -> None:
    start, end = utc("2026-01-01 00:00"), utc("2027-01-01 00:00")
    slots, more = schedule.slots_between([schedule.parse("* * * * *", timezone="America/New_York")], start, end, 5)
    assert [_show(t) for t in slots][:2] == ["2026-01-01 00:01", "2026-01-01 00:02"]
    assert len(slots) == 5
    # A year of minutes; the lost spring hour comes back on both passes in the fall.
    assert more == 365 * 24 * 60 - 5


def test_slots_between_counts_every_schedules_exactly() -> None:
    sched = schedule.parse({"every": "30h", "anchor": "2026-01-01T00:00"})
    slots, more = schedule.slots_between([sched], utc("2026-01-01 00:00"), utc("2026-01-31 00:00"), limit=3)
    assert [_show(t) for t in slots] == ["2026-01-02 06:00", "2026-01-03 12:00", "2026-01-04 18:00"]
    assert more == 24 - 3  # fires at k*30h for k = 1..24 in (Jan 1, Jan 31]


def test_slots_between_of_several_schedules_counts_shared_times_once() -> None:
    scheds = [schedule.parse("0 * * * *"), schedule.parse("*/30 * * * *")]
    slots, more = schedule.slots_between(scheds, utc("2026-01-01 00:00"), utc("2026-01-02 00:00"), limit=10)
    assert len(slots) == 10
    assert more == 48 - 10


def test_slots_between_ignores_after_completion_and_empty_spans() -> None:
    after = schedule.parse({"after_completion": "1h"})
    hourly = schedule.parse("0 * * * *")
    assert schedule.slots_between([after], utc("2026-01-01 00:00"), utc("2026-01-02 00:00")) == ([], 0)
    assert schedule.slots_between([hourly], utc("2026-01-02 00:00"), utc("2026-01-01 00:00")) == ([], 0)
    slots, _ = schedule.slots_between([hourly, after], utc("2026-01-01 00:00"), utc("2026-01-01 02:00"))
    assert [_show(t) for t in slots] == ["2026-01-01 01:00", "2026-01-01 02:00"]


@pytest.mark.parametrize("dst", ALL_POLICIES, ids=lambda p: f"{p.gap}-{p.fold}")
@pytest.mark.parametrize("expr", ["30 2 * * *", "30 1 * * *", "*/20 * * * *", "0 * * * *", "0,30 2,3 * * *"])
def test_counting_beyond_the_limit_matches_listing_every_slot(expr: str, dst: DstPolicy) -> None:
    sched = schedule.parse(expr, timezone="America/New_York", dst=dst)
    for start, end in [
        (utc("2026-03-07 12:00"), utc("2026-03-09 12:00")),
        (utc("2026-10-31 12:00"), utc("2026-11-02 12:00")),
        (utc("2026-11-01 05:45"), utc("2026-11-01 06:40")),  # starts inside the first pass
    ]:
        listed, rest = schedule.slots_between([sched], start, end, limit=100_000)
        assert rest == 0
        assert schedule.slots_between([sched], start, end, limit=0) == ([], len(listed))


# --------------------------------------------------------------------------
# DST: America/New_York, every policy combination


@pytest.mark.parametrize("fold", FOLDS)
def test_a_fixed_time_job_in_the_spring_gap_runs_once_right_after_it(fold: Fold) -> None:
    # 02:30 does not exist on 2026-03-08; it runs at 03:00 EDT = 07:00 UTC.
    got = fires("30 2 * * *", "2026-03-07 12:00", 3, tz="America/New_York", dst=DstPolicy("run_after", fold))
    assert got == ["2026-03-08 07:00", "2026-03-09 06:30", "2026-03-10 06:30"]


@pytest.mark.parametrize("fold", FOLDS)
def test_with_gap_skip_a_fixed_time_job_in_the_spring_gap_does_not_run_that_day(fold: Fold) -> None:
    got = fires("30 2 * * *", "2026-03-07 12:00", 2, tz="America/New_York", dst=DstPolicy("skip", fold))
    assert got == ["2026-03-09 06:30", "2026-03-10 06:30"]


@pytest.mark.parametrize("dst", ALL_POLICIES, ids=lambda p: f"{p.gap}-{p.fold}")
def test_a_wildcard_hour_job_simply_has_no_fires_inside_the_spring_gap(dst: DstPolicy) -> None:
    got = fires("*/30 * * * *", "2026-03-08 05:45", 4, tz="America/New_York", dst=dst)
    # 01:00 EST, 01:30 EST, then straight to 03:00 EDT.
    assert got == ["2026-03-08 06:00", "2026-03-08 06:30", "2026-03-08 07:00", "2026-03-08 07:30"]


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("fold", ["cron", "once"])
def test_a_fixed_time_job_in_the_fall_fold_runs_once_on_the_first_pass(gap: Gap, fold: Fold) -> None:
    got = fires("30 1 * * *", "2026-10-31 12:00", 2, tz="America/New_York", dst=DstPolicy(gap, fold))
    assert got == ["2026-11-01 05:30", "2026-11-02 06:30"]  # 01:30 EDT, then 01:30 EST next day


@pytest.mark.parametrize("gap", GAPS)
def test_with_fold_both_a_fixed_time_job_runs_on_both_passes_an_hour_apart(gap: Gap) -> None:
    got = fires("30 1 * * *", "2026-10-31 12:00", 3, tz="America/New_York", dst=DstPolicy(gap, "both"))
    assert got == ["2026-11-01 05:30", "2026-11-01 06:30", "2026-11-02 06:30"]


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("fold", ["cron", "both"])
def test_a_wildcard_hour_job_runs_on_both_passes_of_the_fall_fold(gap: Gap, fold: Fold) -> None:
    got = fires("*/30 * * * *", "2026-11-01 04:50", 6, tz="America/New_York", dst=DstPolicy(gap, fold))
    assert got == [
        "2026-11-01 05:00",  # 01:00 EDT
        "2026-11-01 05:30",  # 01:30 EDT
        "2026-11-01 06:00",  # 01:00 EST
        "2026-11-01 06:30",  # 01:30 EST
        "2026-11-01 07:00",  # 02:00 EST
        "2026-11-01 07:30",
    ]


@pytest.mark.parametrize("gap", GAPS)
def test_with_fold_once_even_an_hourly_job_runs_only_the_first_pass(gap: Gap) -> None:
    got = fires("0 * * * *", "2026-11-01 04:30", 3, tz="America/New_York", dst=DstPolicy(gap, "once"))
    assert got == ["2026-11-01 05:00", "2026-11-01 07:00", "2026-11-01 08:00"]  # 01:00 EDT, 02:00 EST, 03:00 EST


def test_several_gap_slots_and_the_slot_right_after_the_gap_collapse_into_one_run() -> None:
    got = fires("0,30 2,3 * * *", "2026-03-08 05:00", 3, tz="America/New_York")
    # 02:00, 02:30 and 03:00 all become one run at 03:00 EDT; then 03:30 EDT.
    assert got == ["2026-03-08 07:00", "2026-03-08 07:30", "2026-03-09 06:00"]


def test_a_six_field_fixed_time_job_follows_the_same_dst_rules() -> None:
    # cronsim skips 6-field jobs in the gap and runs them twice in the fold; corral does not.
    assert fires("0 30 2 * * *", "2026-03-07 12:00", 1, tz="America/New_York") == ["2026-03-08 07:00"]
    assert fires("0 30 1 * * *", "2026-10-31 12:00", 2, tz="America/New_York") == [
        "2026-11-01 05:30",
        "2026-11-02 06:30",
    ]


def test_asking_during_the_first_pass_still_finds_the_second_pass() -> None:
    hourly = schedule.parse("0 * * * *", timezone="America/New_York")
    # 05:30 UTC is 01:30 EDT; the next fire is 01:00 EST, whose wall time is earlier.
    assert hourly.next_after(utc("2026-11-01 05:30")) == utc("2026-11-01 06:00")
    both = schedule.parse("30 1 * * *", timezone="America/New_York", dst=DstPolicy(fold="both"))
    assert both.next_after(utc("2026-11-01 05:30")) == utc("2026-11-01 06:30")
    assert both.next_after(utc("2026-11-01 05:59:59")) == utc("2026-11-01 06:30")


def test_asking_from_exactly_the_end_of_the_gap_does_not_repeat_the_moved_run() -> None:
    sched = schedule.parse("30 2 * * *", timezone="America/New_York")
    assert sched.next_after(utc("2026-03-08 06:59:59")) == utc("2026-03-08 07:00")
    assert sched.next_after(utc("2026-03-08 07:00")) == utc("2026-03-09 06:30")


@pytest.mark.parametrize("dst", ALL_POLICIES, ids=lambda p: f"{p.gap}-{p.fold}")
@pytest.mark.parametrize(
    ("tz", "expr", "start"),
    [
        ("America/New_York", "30 1 * * *", "2026-10-31 00:00"),
        ("America/New_York", "*/20 * * * *", "2026-11-01 04:00"),
        ("America/New_York", "0,30 2,3 * * *", "2026-03-08 00:00"),
        ("America/New_York", "0 30 1 * * *", "2026-10-31 00:00"),
        ("Australia/Sydney", "*/30 2 * * *", "2026-04-04 14:00"),
        ("Australia/Sydney", "0 2,3 * * *", "2026-10-03 14:00"),
        ("Australia/Lord_Howe", "*/15 * * * *", "2026-04-04 14:00"),
        ("Australia/Lord_Howe", "15,45 1,2 * * *", "2026-10-03 14:00"),
    ],
)
def test_iterating_next_after_never_returns_a_time_twice(tz: str, expr: str, start: str, dst: DstPolicy) -> None:
    sched = schedule.parse(expr, timezone=tz, dst=dst)
    assert isinstance(sched, schedule.CronSchedule)
    stepped = iterate_next_after(sched, utc(start), 30)
    assert all(a < b for a, b in itertools.pairwise(stepped))
    assert stepped == list(itertools.islice(sched.iter_after(utc(start)), 30))


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/London", "Australia/Sydney"])
@pytest.mark.parametrize(
    "expr", ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/15 * * * *", "0,30 1,2,3 * * *", "15 */2 * * *", "* 2 * * *"]
)
def test_the_default_policy_matches_cronsims_debian_cron_rules_for_five_fields(tz: str, expr: str) -> None:
    zone = ZoneInfo(tz)
    sched = schedule.parse(expr, timezone=tz)
    for start in (
        "2026-03-07 00:00",
        "2026-03-28 00:00",
        "2026-04-04 00:00",
        "2026-10-03 00:00",
        "2026-10-24 00:00",
        "2026-10-31 00:00",
    ):
        theirs = [t.astimezone(UTC) for t in itertools.islice(CronSim(expr, utc(start).astimezone(zone)), 40)]
        assert list(itertools.islice(sched.iter_after(utc(start)), 40)) == theirs, start


# --------------------------------------------------------------------------
# DST: Europe/London, Australia/Sydney, Australia/Lord_Howe


def test_london_fixed_time_jobs_follow_the_same_rules() -> None:
    # Gap 01:00 GMT -> 02:00 BST at 01:00 UTC; fold 02:00 BST -> 01:00 GMT at 01:00 UTC.
    assert fires("30 1 * * *", "2026-03-28 12:00", 2, tz="Europe/London") == ["2026-03-29 01:00", "2026-03-30 00:30"]
    assert fires("30 1 * * *", "2026-03-28 12:00", 1, tz="Europe/London", dst=DstPolicy(gap="skip")) == [
        "2026-03-30 00:30"
    ]
    assert fires("30 1 * * *", "2026-10-24 12:00", 2, tz="Europe/London") == ["2026-10-25 00:30", "2026-10-26 01:30"]
    assert fires("30 1 * * *", "2026-10-24 12:00", 2, tz="Europe/London", dst=DstPolicy(fold="both")) == [
        "2026-10-25 00:30",
        "2026-10-25 01:30",
    ]


@pytest.mark.parametrize("fold", FOLDS)
@pytest.mark.parametrize(("gap", "expected"), [("run_after", "2026-10-03 16:00"), ("skip", "2026-10-04 15:30")])
def test_sydney_spring_gap_in_october_moves_or_skips_a_fixed_time_job(gap: Gap, fold: Fold, expected: str) -> None:
    # 02:30 does not exist on 2026-10-04 (02:00 AEST -> 03:00 AEDT at 16:00 UTC the day before).
    got = fires("30 2 * * *", "2026-10-03 12:00", 1, tz="Australia/Sydney", dst=DstPolicy(gap, fold))
    assert got == [expected]


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize(
    ("fold", "expected"),
    [
        ("cron", ["2026-04-04 15:30", "2026-04-05 16:30"]),
        ("once", ["2026-04-04 15:30", "2026-04-05 16:30"]),
        ("both", ["2026-04-04 15:30", "2026-04-04 16:30"]),
    ],
)
def test_sydney_autumn_fold_in_april_runs_a_fixed_time_job_per_policy(
    gap: Gap, fold: Fold, expected: list[str]
) -> None:
    # 02:30 happens twice on 2026-04-05: 02:30 AEDT (15:30 UTC) and 02:30 AEST (16:30 UTC).
    got = fires("30 2 * * *", "2026-04-04 12:00", 2, tz="Australia/Sydney", dst=DstPolicy(gap, fold))
    assert got == expected


@pytest.mark.parametrize("dst", ALL_POLICIES, ids=lambda p: f"{p.gap}-{p.fold}")
def test_sydney_wildcard_jobs_skip_the_gap_and_repeat_the_fold_unless_fold_is_once(dst: DstPolicy) -> None:
    gap = fires("0 * * * *", "2026-10-03 14:30", 3, tz="Australia/Sydney", dst=dst)
    assert gap == ["2026-10-03 15:00", "2026-10-03 16:00", "2026-10-03 17:00"]  # 01:00 AEST, 03:00, 04:00 AEDT
    fold = fires("0 * * * *", "2026-04-04 14:30", 3, tz="Australia/Sydney", dst=dst)
    if dst.fold == "once":
        assert fold == ["2026-04-04 15:00", "2026-04-04 17:00", "2026-04-04 18:00"]
    else:
        assert fold == ["2026-04-04 15:00", "2026-04-04 16:00", "2026-04-04 17:00"]  # 02:00 AEDT, 02:00 AEST, 03:00


def test_lord_howes_half_hour_gap_moves_a_fixed_time_job_to_0230() -> None:
    # 02:15 does not exist on 2026-10-04 (02:00 +1030 -> 02:30 +11 at 15:30 UTC the day before).
    assert fires("15 2 * * *", "2026-10-03 12:00", 2, tz="Australia/Lord_Howe") == [
        "2026-10-03 15:30",
        "2026-10-04 15:15",
    ]
    skip = DstPolicy(gap="skip")
    assert fires("15 2 * * *", "2026-10-03 12:00", 1, tz="Australia/Lord_Howe", dst=skip) == ["2026-10-04 15:15"]


def test_lord_howes_half_hour_fold_repeats_only_0130_to_0200() -> None:
    every_15 = fires("*/15 * * * *", "2026-04-04 14:10", 7, tz="Australia/Lord_Howe")
    assert every_15 == [
        "2026-04-04 14:15",  # 01:15 +11
        "2026-04-04 14:30",  # 01:30 +11
        "2026-04-04 14:45",  # 01:45 +11
        "2026-04-04 15:00",  # 01:30 +1030
        "2026-04-04 15:15",  # 01:45 +1030
        "2026-04-04 15:30",  # 02:00 +1030
        "2026-04-04 15:45",
    ]
    both = DstPolicy(fold="both")
    assert fires("45 1 * * *", "2026-04-04 12:00", 2, tz="Australia/Lord_Howe") == [
        "2026-04-04 14:45",
        "2026-04-05 15:15",
    ]
    assert fires("45 1 * * *", "2026-04-04 12:00", 2, tz="Australia/Lord_Howe", dst=both) == [
        "2026-04-04 14:45",
        "2026-04-04 15:15",
    ]


def test_a_wildcard_minute_job_resumes_at_0200_right_after_the_lord_howe_fold() -> None:
    # cronsim 2.8 jumps to 02:30 here; 02:00-02:29 +1030 are real, unrepeated times.
    assert fires("* 2 * * *", "2026-04-04 15:00", 2, tz="Australia/Lord_Howe") == [
        "2026-04-04 15:30",
        "2026-04-04 15:31",
    ]


def test_zones_without_dst_never_shift() -> None:
    for tz in ("Asia/Seoul", "Asia/Kolkata"):
        sched = schedule.parse("30 2 * * *", timezone=tz, dst=DstPolicy("skip", "both"))
        times = schedule.next_times([sched], utc("2026-01-01 00:00"), 365)
        assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(times))


def test_a_schedule_that_can_only_fire_inside_a_gap_is_refused_with_gap_skip() -> None:
    # Since 2007 New York springs forward at 02:00 on the second Sunday of March.
    expr = "30 2 * 3 0#2"
    assert error_of(expr, timezone="America/New_York", dst=DstPolicy(gap="skip")) == (
        '"30 2 * 3 0#2" can never fire in America/New_York: every slot falls in a daylight-saving gap '
        "and the dst gap policy is skip; use run_after or pick another time"
    )
    assert fires(expr, "2026-01-01 00:00", 1, tz="America/New_York") == ["2026-03-08 07:00"]


# --------------------------------------------------------------------------
# DST events


@pytest.mark.parametrize(
    ("expr", "dst", "effect"),
    [
        ("30 2 * * *", DstPolicy(), "the 02:30 run moves to 03:00 (right after the gap)"),
        ("30 2 * * *", DstPolicy(gap="skip"), "the 02:30 run is skipped (02:30 does not exist that day)"),
        ("0,30 2 * * *", DstPolicy(), "the 02:00 and 02:30 runs happen once, at 03:00 (right after the gap)"),
        ("*/15 * * * *", DstPolicy(), "the 4 runs from 02:00 to 02:45 are skipped (those times do not exist that day)"),
        ("0 * * * *", DstPolicy(), "the 02:00 run is skipped (02:00 does not exist that day)"),
        ("0 12 * * *", DstPolicy(), "not affected"),
    ],
)
def test_the_next_dst_event_in_new_york_is_the_march_gap(expr: str, dst: DstPolicy, effect: str) -> None:
    sched = schedule.parse(expr, timezone="America/New_York", dst=dst)
    event = schedule.next_dst_event(sched, utc("2026-01-01 00:00"))
    assert event == schedule.DstEvent(
        at=utc("2026-03-08 07:00"), kind="gap", wall_from="02:00", wall_to="03:00", effect=effect
    )


@pytest.mark.parametrize(
    ("expr", "dst", "effect"),
    [
        ("30 1 * * *", DstPolicy(), "runs once at 01:30 (first pass only)"),
        ("30 1 * * *", DstPolicy(fold="both"), "runs at 01:30 on both passes of 01:00-02:00"),
        ("0 * * * *", DstPolicy(), "runs at 01:00 on both passes of 01:00-02:00"),
        ("*/15 * * * *", DstPolicy(), "runs on both passes of 01:00-02:00"),
        (
            "*/15 * * * *",
            DstPolicy(fold="once"),
            "runs once at each of the 4 times from 01:00 to 01:45 (first pass only)",
        ),
        ("0 3 * * *", DstPolicy(fold="both"), "not affected"),
    ],
)
def test_the_next_dst_event_in_new_york_after_summer_is_the_november_fold(
    expr: str, dst: DstPolicy, effect: str
) -> None:
    sched = schedule.parse(expr, timezone="America/New_York", dst=dst)
    event = schedule.next_dst_event(sched, utc("2026-06-01 00:00"))
    assert event == schedule.DstEvent(
        at=utc("2026-11-01 06:00"), kind="fold", wall_from="02:00", wall_to="01:00", effect=effect
    )


def test_sydneys_next_dst_events_are_the_april_fold_then_the_october_gap() -> None:
    sched = schedule.parse("30 2 * * *", timezone="Australia/Sydney")
    fold = schedule.next_dst_event(sched, utc("2026-01-01 00:00"))
    assert fold == schedule.DstEvent(
        at=utc("2026-04-04 16:00"),
        kind="fold",
        wall_from="03:00",
        wall_to="02:00",
        effect="runs once at 02:30 (first pass only)",
    )
    gap = schedule.next_dst_event(sched, fold.at)
    assert gap == schedule.DstEvent(
        at=utc("2026-10-03 16:00"),
        kind="gap",
        wall_from="02:00",
        wall_to="03:00",
        effect="the 02:30 run moves to 03:00 (right after the gap)",
    )


def test_london_and_lord_howe_dst_events_name_their_wall_times() -> None:
    london = schedule.next_dst_event(schedule.parse("30 1 * * *", timezone="Europe/London"), utc("2026-01-01 00:00"))
    assert london is not None
    assert (london.at, london.kind, london.wall_from, london.wall_to) == (
        utc("2026-03-29 01:00"),
        "gap",
        "01:00",
        "02:00",
    )
    howe = schedule.next_dst_event(
        schedule.parse("15 2 * * *", timezone="Australia/Lord_Howe"), utc("2026-06-01 00:00")
    )
    assert howe == schedule.DstEvent(
        at=utc("2026-10-03 15:30"),
        kind="gap",
        wall_from="02:00",
        wall_to="02:30",
        effect="the 02:15 run moves to 02:30 (right after the gap)",
    )


def test_there_is_no_dst_event_without_dst_or_for_absolute_time_schedules() -> None:
    after = utc("2026-01-01 00:00")
    assert schedule.next_dst_event(schedule.parse("0 1 * * *", timezone="Asia/Seoul"), after) is None
    assert schedule.next_dst_event(schedule.parse("0 1 * * *", timezone="Asia/Kolkata"), after) is None
    assert schedule.next_dst_event(schedule.parse("0 1 * * *"), after) is None
    assert schedule.next_dst_event(schedule.parse({"every": "1h"}, timezone="America/New_York"), after) is None
    assert schedule.next_dst_event(schedule.parse({"after_completion": "1h"}), after) is None


def test_a_dst_event_beyond_the_horizon_is_not_reported() -> None:
    sched = schedule.parse("30 2 * * *", timezone="America/New_York")
    assert schedule.next_dst_event(sched, utc("2026-01-01 00:00"), horizon=timedelta(days=30)) is None


# --------------------------------------------------------------------------
# Descriptions


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("0 1 * * *", "every day at 01:00"),
        ("30 9 * * 1-5", "every weekday at 09:30"),
        ("30 9 * * sat,sun", "every weekend day at 09:30"),
        ("0 9 * * mon,thu", "every Monday and Thursday at 09:00"),
        ("0 9,17 * * *", "every day at 09:00 and 17:00"),
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("0 * * * *", "at minute 0 of every hour"),
        ("@hourly", "at minute 0 of every hour"),
        ("0 */2 * * *", "every 2 hours at minute 0"),
        ("*/5 * * * 1-5", "every 5 minutes on weekdays"),
        ("*/5 * * * sun", "every 5 minutes on Sundays"),
        ("0 0 1 * *", "on the 1st of every month at 00:00"),
        ("0 0 1,15 * *", "on the 1st and the 15th of every month at 00:00"),
        ("0 0 L * *", "on the last day of every month at 00:00"),
        ("0 0 * * 5L", "on the last Friday of every month at 00:00"),
        ("0 0 * * fri#2", "on the second Friday of every month at 00:00"),
        ("0 0 1 1 *", "on the 1st of January at 00:00"),
        ("0 12 * jan,jul *", "every day in January and July at 12:00"),
        ("30 0 1 * * *", "every day at 01:00:30"),
        ("*/10 * * * * *", "every 10 seconds"),
        # Shapes without a short phrase fall back to cronsim's own wording.
        ("0 9-17 * * mon-fri", "at minute 0 past every hour from 9 through 17 on Monday through Friday"),
        ("0 0 1,15 * 1", "at 00:00 on the first and the 15th day of month and on Monday"),
    ],
)
def test_a_cron_schedule_describes_itself_in_plain_english(expr: str, words: str) -> None:
    assert schedule.parse(expr).describe() == words


def test_a_cron_description_names_the_timezone_unless_it_is_utc() -> None:
    assert (
        schedule.parse("30 9 * * 1-5", timezone="Europe/London").describe() == "every weekday at 09:30 (Europe/London)"
    )


@pytest.mark.parametrize(
    ("every", "words"),
    [
        ("30h", "every 30 hours"),
        ("1h", "every hour"),
        ("48h", "every 2 days"),
        ("2w", "every 2 weeks"),
        ("90s", "every 90 seconds"),
        ("1.5s", "every 1.5s"),
    ],
)
def test_every_describes_its_period_in_the_largest_whole_unit(every: str, words: str) -> None:
    assert schedule.parse({"every": every}).describe() == f"{words}, counted from 2000-01-01 00:00 UTC"
