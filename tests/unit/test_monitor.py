"""Monitor-only jobs: pings keep them up; a missed ping makes them late, then down."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from corral import monitor, schedule

UTC = timezone.utc
DAILY_1AM_SEOUL = (schedule.parse("0 1 * * *", timezone="Asia/Seoul"),)  # 16:00 UTC the day before
GRACE = timedelta(minutes=30)
WATCHED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def _status(now: datetime, last_success: datetime | None = None, last_failure: monitor.Ping | None = None) -> monitor.Status:
    return monitor.status(DAILY_1AM_SEOUL, GRACE, watched_since=WATCHED, last_success=last_success, last_failure=last_failure, now=now)


def test_before_the_first_slot_it_is_new() -> None:
    st = _status(_at(1, 15))
    assert st.state == "new" and st.expected_at == _at(1, 16) and st.down_at == _at(1, 16, 30)


def test_a_missed_ping_is_late_at_the_slot_and_down_after_the_grace() -> None:
    assert _status(_at(1, 16)).state == "new"  # exactly at the slot: not late yet
    assert _status(_at(1, 16, 1)).state == "late"
    assert _status(_at(1, 16, 30)).state == "late"
    down = _status(_at(1, 16, 31))
    assert down.state == "down" and "grace 30m" in down.reason


def test_on_time_pings_keep_it_up_day_after_day() -> None:
    for day in range(1, 6):
        ping = _at(day, 16, 10)  # the job pings when done, 10 minutes after 01:00 Seoul
        st = _status(_at(day + 1, 15), last_success=ping)
        assert st.state == "up" and st.expected_at == _at(day + 1, 16)


def test_a_ping_before_a_slot_does_not_cover_that_slot() -> None:
    # The next ping is expected at the first slot strictly after the last one.
    st = _status(_at(1, 16, 10), last_success=_at(1, 15, 59))
    assert st.state == "late" and st.expected_at == _at(1, 16)
    assert _status(_at(2, 15), last_success=_at(1, 16, 0)).state == "up"


def test_a_failure_ping_is_down_at_once_and_a_later_success_clears_it() -> None:
    fail = monitor.parse_ping("3", _at(1, 16, 5))
    st = _status(_at(1, 16, 6), last_success=None, last_failure=fail)
    assert st.state == "down" and "exit code 3" in st.reason
    assert _status(_at(1, 16, 20), last_success=_at(1, 16, 15), last_failure=fail).state == "up"


def test_next_change_is_when_to_look_again() -> None:
    assert monitor.next_change(_status(_at(1, 15)), _at(1, 15)) == _at(1, 16)
    assert monitor.next_change(_status(_at(1, 16, 5)), _at(1, 16, 5)) == _at(1, 16, 30)
    assert monitor.next_change(_status(_at(1, 17)), _at(1, 17)) is None


@pytest.mark.parametrize(
    ("suffix", "kind", "code"),
    [("", "success", None), ("/0", "success", 0), ("start", "start", None), ("fail", "fail", None), ("/75", "fail", 75)],
)
def test_ping_urls_mean_success_start_or_failure(suffix: str, kind: str, code: int | None) -> None:
    ping = monitor.parse_ping(suffix, WATCHED)
    assert (ping.kind, ping.exit_code) == (kind, code)


def test_a_bad_ping_suffix_says_what_is_accepted() -> None:
    with pytest.raises(monitor.BadPing, match=r'"/256" is not a ping; use /ping/<uuid>'):
        monitor.parse_ping("256", WATCHED)
