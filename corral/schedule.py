"""When a job fires: cron expressions, fixed intervals and "N after completion".

Pure time math. Nothing here reads the clock or does I/O (beyond the
timezone database that :mod:`zoneinfo` loads): every function takes the
moment it reasons about. Datetimes going in must be timezone-aware; datetimes
coming out are aware and in UTC.

Three kinds of schedule:

``cron``
    ``"0 1 * * *"`` (minute hour day-of-month month day-of-week), the same
    with a leading seconds field (``"30 0 1 * * *"``), or a macro (``@daily``).
    Evaluated on the job's wall clock in its timezone. cronsim does the
    calendar walk on naive wall-clock times; this module turns each wall-clock
    slot into UTC instants according to the job's :class:`~corral.spec.DstPolicy`.
``every``
    ``{"every": "30h", "anchor": "2026-01-01T01:00"}`` fires at
    ``anchor + k * every`` (k = 0, 1, 2, ...) in absolute time, so DST never
    changes the spacing.
``after_completion``
    ``{"after_completion": "6h"}`` fires a fixed time after the previous run
    ended; it has no fire time until a run has ended.

DST rules for cron schedules, per :class:`~corral.spec.DstPolicy`. A cron job
is *fixed-time* when neither its minute nor its hour field starts with ``*``,
the test cronie and Debian cron use (their ``MIN_STAR``/``HR_STAR`` flags):
``0 1 * * *`` and ``0 1-3 * * *`` are fixed-time; ``0 * * * *``,
``*/15 * * * *``, ``* 2 * * *``, ``30 */2 * * *`` and ``@hourly`` are not.
Six-field expressions follow the same rules (the seconds field does not count).

* Spring-forward gap, ``gap="run_after"`` (default): a fixed-time slot whose
  wall time does not exist runs once at the instant the gap ends (02:30 on a
  02:00->03:00 day runs at 03:00). Several such slots, and a regular slot at
  that instant, collapse into one run. A job that is not fixed-time has no
  fires inside the gap, as in cron.
* ``gap="skip"``: slots whose wall time does not exist are dropped.
* Fall-back fold, ``fold="cron"`` (default): fixed-time jobs run on the first
  pass only; other jobs run on both passes.
* ``fold="once"``: first pass only, for every job.
* ``fold="both"``: both passes, for every job (two instants one fold apart).
"""

from __future__ import annotations

import bisect
import difflib
import functools
import heapq
import itertools
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal, Protocol

from cronsim import CronSim, CronSimError

from corral import durations, errors
from corral.spec import DstPolicy

SLOT_COUNT_CAP = 100_000
""":func:`slots_between` counts the slots of several merged schedules beyond
its limit one by one (about 10 microseconds each), and stops at this many."""

DEFAULT_ANCHOR = datetime(2000, 1, 1)
"""Where ``every`` schedules count from when no anchor is given (job timezone)."""

DEFAULT_DST = DstPolicy()
"""cronie's rules: run a skipped fixed time after the gap; fixed times once in a fold."""

_GIVE_UP = timedelta(days=366 * 50)
"""A cron schedule that produces no fire for this long is treated as finished."""

_HINT_REFERENCE = datetime(2001, 1, 1)  # a Monday; wall-clock, DST-free
_HINT_WINDOW = timedelta(days=14)
_HINT_MIN_FIRES = 13  # a year of a monthly job, so February counts
_HINT_MAX_FIRES = 5000

# With gap: skip a schedule may only ever hit non-existent times (02:30 on the
# second Sunday of March in New York). Rules change, so look from a recent date.
_GAP_CHECK_FROM = datetime(2025, 1, 1, tzinfo=UTC)

# Longest fall-back fold to look back over (real ones are 30 min to 2 h).
_MAX_FOLD = timedelta(hours=3)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DICT_KEYS = ("every", "anchor", "after_completion")
_FIELDS_HINT = "minute hour day-of-month month day-of-week"

_MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_NTH_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


# --------------------------------------------------------------------------
# The protocol


class Schedule(Protocol):
    """One way a job fires. Implementations are frozen, hashable values."""

    @property
    def kind(self) -> str:
        """``"cron"``, ``"every"`` or ``"after_completion"``."""
        ...

    @property
    def text(self) -> str:
        """The schedule as the user wrote it, for display."""
        ...

    def next_after(self, after: datetime, last_end: datetime | None = None) -> datetime | None:
        """The first fire time strictly after ``after``, in UTC.

        ``after_completion`` schedules return ``last_end + gap`` even when
        that is not after ``after`` (the caller treats it as already due), and
        None when ``last_end`` is None.
        """
        ...

    def describe(self) -> str:
        """Plain English, e.g. ``every day at 01:00 (Asia/Seoul)``."""
        ...

    def interval_hint(self) -> timedelta | None:
        """The typical gap between fires, or None when it depends on run times."""
        ...


# --------------------------------------------------------------------------
# Small helpers


def _utc(moment: datetime, name: str = "after") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


@lru_cache(maxsize=1)
def _timezone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name``, or a ScheduleError that suggests the closest name."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    names = _timezone_names()
    exact = names.get(str(name).lower())
    close = difflib.get_close_matches(str(name).lower(), list(names), n=1, cutoff=0.6)
    example = exact or (names[close[0]] if close else "Europe/London")
    raise errors.ScheduleError(f'unknown timezone "{name}"; use an IANA name like {example}')


def _wall(moment: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``moment`` in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _offset(zone: zoneinfo.ZoneInfo, moment: datetime) -> timedelta:
    off = moment.astimezone(zone).utcoffset()
    return off if off is not None else timedelta(0)


def _transition_between(zone: zoneinfo.ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose UTC offset differs from lo's.

    The caller guarantees the offsets at ``lo`` and ``hi`` differ. Transitions
    in the tz database fall on whole seconds, so a bisection on seconds is exact.
    """
    before = _offset(zone, lo)
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(zone, lo + timedelta(seconds=mid)) == before:
            lo_s = mid
        else:
            hi_s = mid
    return lo + timedelta(seconds=hi_s)


def _transitions(
    zone: zoneinfo.ZoneInfo, start: datetime, end: datetime, step: timedelta = timedelta(hours=6)
) -> Iterator[datetime]:
    """UTC instants in (start, end] where the zone's UTC offset changes."""
    lo = start
    while lo < end:
        hi = min(lo + step, end)
        if _offset(zone, lo) != _offset(zone, hi):
            found = _transition_between(zone, lo, hi)
            yield found
            lo = found
        else:
            lo = hi


def _hhmm(wall: datetime) -> str:
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")


def _join(items: Sequence[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _duration_words(delta: timedelta, *, every: bool = False) -> str:
    """``30 hours``, ``2 days``, ``90 minutes``; with ``every``: ``every hour``."""
    micro = delta // timedelta(microseconds=1)
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if micro % (size * 1_000_000) == 0:
            count = micro // (size * 1_000_000)
            if count == 1:
                return f"every {unit}" if every else f"1 {unit}"
            words = f"{count} {unit}s"
            return f"every {words}" if every else words
    text = durations.format(delta)
    return f"every {text}" if every else text


def _parse_duration(raw: object, key: str, example: str) -> timedelta:
    message = f'"{key}" must be a positive duration like {example}, got "{raw}"'
    if isinstance(raw, timedelta):
        delta = raw
    elif isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        try:
            delta = durations.parse(raw)
        except errors.DurationError as exc:
            raise errors.ScheduleError(message) from exc
    else:
        raise errors.ScheduleError(message)
    if delta <= timedelta(0):
        raise errors.ScheduleError(message)
    return delta


# --------------------------------------------------------------------------
# Cron field validation


@dataclass(frozen=True, eq=False)  # compared by identity: units are module constants
class _Unit:
    name: str
    lo: int
    hi: int
    names: Mapping[str, int]
    names_hint: str = ""
    duration_unit: str = ""


def _name_table(names: Sequence[str], first: int) -> dict[str, int]:
    table: dict[str, int] = {}
    for i, full in enumerate(names):
        table[full.lower()] = first + i
        table[full[:3].lower()] = first + i
    return table


_SECOND = _Unit("second", 0, 59, {}, duration_unit="s")
_MINUTE = _Unit("minute", 0, 59, {}, duration_unit="m")
_HOUR = _Unit("hour", 0, 23, {}, duration_unit="h")
_DOM = _Unit("day-of-month", 1, 31, {}, duration_unit="d")
_MONTH = _Unit("month", 1, 12, _name_table(_MONTH_NAMES, 1), "use jan-dec or 1-12")
_DOW = _Unit("day-of-week", 0, 7, _name_table(_DAY_NAMES, 0), "use sun-sat or 0-7")

# Extra day selectors, as cronsim understands them.
_LAST_DAY = ("L", 0, 0)
_LAST_WEEKDAY = ("LW", 0, 0)


@dataclass(frozen=True)
class _Field:
    text: str
    """Normalised for cronsim: names replaced by numbers."""
    star: bool
    """The field starts with ``*`` (matters to cron's DST and day rules)."""
    step: int | None
    """n when the whole field is ``*/n``; 1 for a bare ``*``."""
    values: frozenset[int]
    """Plain values selected (day-of-week 7 folded onto 0)."""
    special: frozenset[tuple[str, int, int]]
    """("L", 0, 0), ("LW", 0, 0), ("last", dow, 0) or ("nth", dow, n)."""


def _is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts superscripts and other scripts)."""
    return re.fullmatch(r"[0-9]+", text) is not None


def _field_error(unit: _Unit, text: str) -> errors.ScheduleError:
    return errors.ScheduleError(
        f'{unit.name} "{text}" is not valid; use a number {unit.lo}-{unit.hi}, a range like 1-5, '
        f"a list like 1,3 or a step like */15"
    )


def _value(unit: _Unit, token: str, term: str) -> int:
    low = token.lower()
    if _is_number(token):
        number = int(token)
        if not unit.lo <= number <= unit.hi:
            raise errors.ScheduleError(f"{unit.name} {number} is out of range {unit.lo}-{unit.hi}")
        return number
    if low in unit.names:
        return unit.names[low]
    if unit.names and low.isalpha():
        noun = "month name" if unit is _MONTH else "day name"
        raise errors.ScheduleError(f'{unit.name} "{token}" is not a {noun}; {unit.names_hint}')
    if token == "" or not re.fullmatch(r"[A-Za-z0-9]+", token):
        raise _field_error(unit, term)
    raise errors.ScheduleError(f'{unit.name} "{token}" is not a number; use {unit.lo}-{unit.hi}')


def _wrap_hint(unit: _Unit, start_text: str, end_text: str, start: int, end: int) -> str:
    """Split a backwards range like fri-mon into fri-sat,sun-mon."""
    top = 6 if unit is _DOW else unit.hi
    named = start_text.lower() in unit.names or end_text.lower() in unit.names
    top_text, bottom_text = str(top), str(unit.lo)
    if named and unit is _DOW:
        top_text, bottom_text = "sat", "sun"
    elif named and unit is _MONTH:
        top_text, bottom_text = "dec", "jan"
    head = start_text if start == top else f"{start_text}-{top_text}"
    tail = end_text if end == unit.lo else f"{bottom_text}-{end_text}"
    return f"{head},{tail}"


def _parse_term(unit: _Unit, term: str, whole: str, values: set[int], special: set[tuple[str, int, int]]) -> str:
    if term == "":
        raise errors.ScheduleError(
            f'{unit.name} "{whole}" has an empty list item; separate values with single commas, like 1,15'
        )
    upper = term.upper()
    if "?" in term:
        raise errors.ScheduleError(f'"?" is Quartz syntax, not cron; write * in the {unit.name} field instead')
    if upper.startswith("H"):
        if "/" in term:
            step = term.split("/", 1)[1]
            raise errors.ScheduleError(
                f'Jenkins "{term}" is not supported in the {unit.name} field; write */{step} instead'
            )
        raise errors.ScheduleError(
            f'Jenkins "{term}" is not supported in the {unit.name} field; '
            f"write a fixed {unit.name} ({unit.lo}-{unit.hi}) instead"
        )
    if unit is _DOM:
        if upper == "L":
            special.add(_LAST_DAY)
            return "L"
        if upper == "LW":
            special.add(_LAST_WEEKDAY)
            return "LW"
        if re.fullmatch(r"[0-9]+W", upper):
            raise errors.ScheduleError(
                f'day-of-month "{term}" (nearest weekday) is not supported; only LW (last weekday of the month) is'
            )
        if upper.startswith("L"):
            raise errors.ScheduleError(
                f'day-of-month "{term}" is not supported; use L (last day) or LW (last weekday of the month)'
            )
    if unit is _DOW:
        if upper == "L":
            raise errors.ScheduleError('day-of-week "L" needs a day before it, like 5L or friL (last Friday)')
        if upper.endswith("L") and "-" not in term and "/" not in term and "#" not in term:
            day = _value(unit, term[:-1], term) % 7
            special.add(("last", day, 0))
            return f"{day}L"
        if "#" in term:
            day_text, nth_text = term.split("#", 1)
            day = _value(unit, day_text, term) % 7
            if not _is_number(nth_text) or not 1 <= int(nth_text) <= 5:
                raise errors.ScheduleError(
                    f'day-of-week "{term}": the number after # is the week of the month and must be 1-5'
                )
            special.add(("nth", day, int(nth_text)))
            return f"{day}#{int(nth_text)}"

    step: int | None = None
    base = term
    if "/" in term:
        base, step_text = term.split("/", 1)
        if not _is_number(step_text):
            raise errors.ScheduleError(f'{unit.name} step in "{term}" must be a whole number, like */15')
        step = int(step_text)
        if step == 0:
            raise errors.ScheduleError(f'{unit.name} step must be 1 or more, got "{term}"')
    if base == "*":
        start, end = unit.lo, unit.hi
        if step is not None and step > unit.hi - unit.lo:
            hint = ""
            if unit.duration_unit:
                hint = f"; for every {step}{unit.duration_unit} write {{every: {step}{unit.duration_unit}}}"
            raise errors.ScheduleError(
                f"{unit.name} step {step} is larger than the {unit.name} range {unit.lo}-{unit.hi}, "
                f'so "{term}" would only fire at {unit.name} {unit.lo}{hint}'
            )
        text = "*"
    elif "-" in base:
        start_text, end_text = base.split("-", 1)
        if start_text == "" or end_text == "":
            raise _field_error(unit, term)
        start, end = _value(unit, start_text, term), _value(unit, end_text, term)
        if end < start:
            raise errors.ScheduleError(
                f'{unit.name} range "{base}" goes backwards; ranges do not wrap around, '
                f'write "{_wrap_hint(unit, start_text, end_text, start, end)}"'
            )
        text = f"{start}-{end}"
    else:
        start = _value(unit, base, term)
        end = unit.hi if step is not None else start
        text = str(start)
    picked = range(start, end + 1, step or 1)
    values.update(v % 7 if unit is _DOW else v for v in picked)
    return f"{text}/{step}" if step is not None else text


@functools.lru_cache(maxsize=4096)
def _parse_field(unit: _Unit, whole: str) -> _Field:
    # Cached: a thousand jobs share a handful of field texts ("*", "0", "*/5"),
    # and each parsed field holds a set of up to 60 values.
    values: set[int] = set()
    special: set[tuple[str, int, int]] = set()
    text = ",".join(_parse_term(unit, term, whole, values, special) for term in whole.split(","))
    step: int | None = None
    if whole == "*":
        step = 1
    elif re.fullmatch(r"\*/[0-9]+", whole):
        step = int(whole[2:])
    return _Field(text, whole.startswith("*"), step, frozenset(values), frozenset(special))


def _days_in_month(month: int) -> int:
    return 29 if month == 2 else (30 if month in (4, 6, 9, 11) else 31)


@dataclass(frozen=True)
class _Cron:
    """A validated cron expression."""

    seconds: _Field | None
    minute: _Field
    hour: _Field
    dom: _Field
    month: _Field
    dow: _Field

    @property
    def expr(self) -> str:
        parts = [self.minute.text, self.hour.text, self.dom.text, self.month.text, self.dow.text]
        if self.seconds is not None:
            parts.insert(0, self.seconds.text)
        return " ".join(parts)

    @property
    def fixed_time(self) -> bool:
        return not self.minute.star and not self.hour.star

    @property
    def day_and(self) -> bool:
        # cron: if either day field starts with *, both must match; else either may.
        return self.dom.star or self.dow.star


def _parse_cron(text: str) -> _Cron:
    expanded = text
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise errors.ScheduleError(
                "@reboot is not supported; corral runs jobs on a clock schedule, "
                "so start this one from your init system (systemd, rc.local) or run it by hand"
            )
        if macro not in MACROS:
            close = difflib.get_close_matches(macro, list(MACROS), n=1)
            guess = f'did you mean "{close[0]}"? ' if close else ""
            macros = "@hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
            raise errors.ScheduleError(f'unknown macro "{text}"; {guess}use {macros}')
        expanded = MACROS[macro]
    parts = expanded.split()
    if len(parts) not in (5, 6):
        extra = "; Quartz's 7th (year) field is not supported" if len(parts) == 7 else ""
        raise errors.ScheduleError(
            f"expected 5 fields ({_FIELDS_HINT}) or 6 with seconds first, got {len(parts)}{extra}"
        )
    seconds = _parse_field(_SECOND, parts.pop(0)) if len(parts) == 6 else None
    cron = _Cron(
        seconds,
        _parse_field(_MINUTE, parts[0]),
        _parse_field(_HOUR, parts[1]),
        _parse_field(_DOM, parts[2]),
        _parse_field(_MONTH, parts[3]),
        _parse_field(_DOW, parts[4]),
    )
    _check_can_fire(text, cron)
    return cron


def _check_can_fire(text: str, cron: _Cron) -> None:
    """Reject day/month combinations that never happen, like February 30."""
    if cron.day_and and not cron.dom.special and not cron.dom.star:
        months = sorted(cron.month.values)
        longest = max(_days_in_month(m) for m in months)
        if min(cron.dom.values) > longest:
            names = [_MONTH_NAMES[m - 1] for m in months]
            verb = "has" if len(names) == 1 else "have"
            days = _join([str(d) for d in sorted(cron.dom.values)], "or")
            raise errors.ScheduleError(f'"{text}" can never fire: {_join(names)} never {verb} a day {days}')
    try:
        first = next(CronSim(cron.expr, _HINT_REFERENCE), None)
    except CronSimError as exc:  # pragma: no cover - our validation runs first
        raise errors.ScheduleError(f'"{text}" is not a valid cron expression: {exc}') from exc
    if first is None:  # pragma: no cover - a safety net behind the check above
        raise errors.ScheduleError(
            f'"{text}" can never fire: no date matches its day-of-month, month and day-of-week fields'
        )


# --------------------------------------------------------------------------
# Cron schedules


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression evaluated on the wall clock of ``timezone``."""

    text: str
    timezone: str = "UTC"
    dst: DstPolicy = field(default_factory=DstPolicy)
    kind: str = field(default="cron", init=False)
    _cron: _Cron = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.text.strip()
        if not text:
            raise errors.ScheduleError(
                'empty schedule; write a cron expression like "0 1 * * *", or {every: 30h} or {after_completion: 6h}'
            )
        if self.dst.gap not in ("run_after", "skip"):
            raise errors.ScheduleError(f'dst gap "{self.dst.gap}" is not one of run_after, skip')
        if self.dst.fold not in ("cron", "once", "both"):
            raise errors.ScheduleError(f'dst fold "{self.dst.fold}" is not one of cron, once, both')
        _zone(self.timezone)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_cron", _parse_cron(text))
        if self.dst.gap == "skip" and next(self.iter_after(_GAP_CHECK_FROM), None) is None:
            raise errors.ScheduleError(
                f'"{text}" can never fire in {self.timezone}: every slot falls in a daylight-saving gap '
                "and the dst gap policy is skip; use run_after or pick another time"
            )

    @property
    def expression(self) -> str:
        """The expression as cronsim reads it (macros expanded, names as numbers)."""
        return self._cron.expr

    @property
    def fixed_time(self) -> bool:
        """True when neither minute nor hour starts with ``*`` (cron's DST rule)."""
        return self._cron.fixed_time

    # -- firing ------------------------------------------------------------

    def _wall_slots(self, start: datetime) -> Iterator[datetime]:
        """Naive wall-clock slots at or after ``start`` (whole seconds), ascending."""
        # Naive datetimes make cronsim walk the calendar without any DST handling;
        # _instants applies our policy instead.
        return CronSim(self._cron.expr, start.replace(microsecond=0) - timedelta(seconds=1))

    def _second_pass(self) -> bool:
        if self.dst.fold == "both":
            return True
        if self.dst.fold == "once":
            return False
        return not self._cron.fixed_time

    def _instants(self, zone: zoneinfo.ZoneInfo, wall: datetime) -> tuple[list[datetime], datetime | None]:
        """The UTC instants a wall-clock slot fires at, and the earliest of them."""
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first == second:
            return [first], first
        if first < second:  # the wall time happens twice (fall back)
            return ([first, second] if self._second_pass() else [first]), first
        # The wall time does not exist (spring forward). zoneinfo maps it with
        # the offset after the gap for fold=1 and before for fold=0, so the gap
        # ends between the two readings.
        if self._cron.fixed_time and self.dst.gap == "run_after":
            end = _transition_between(zone, second, first)
            return [end], end
        return [], None

    def _start_wall(self, zone: zoneinfo.ZoneInfo, after: datetime) -> datetime:
        """The earliest wall time that can still fire strictly after ``after``.

        Usually the wall time of ``after``. During the first pass of a fold,
        earlier wall times come round again on the second pass, so start at
        the beginning of the repeated stretch.
        """
        wall = _wall(after, zone)
        later = after + _MAX_FOLD
        before_off, later_off = _offset(zone, after), _offset(zone, later)
        if later_off < before_off:
            change = _transition_between(zone, after, later)
            if change - after <= before_off - later_off:
                return min(wall, _wall(change, zone))
        return wall

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after``, strictly increasing, in UTC."""
        after = _utc(after)
        zone = _zone(self.timezone)
        start = self._start_wall(zone, after)
        pending: list[datetime] = []
        last: datetime | None = None
        progress = start
        # Wall slots come in order; their earliest instants are non-decreasing,
        # but a second-pass instant belongs after later first-pass slots of
        # the fold. Hold instants in a heap and release each one once a slot's
        # earliest instant shows nothing earlier can still come.
        for wall in self._wall_slots(start):
            instants, earliest = self._instants(zone, wall)
            if earliest is None:
                if wall - progress > _GIVE_UP:
                    break
                continue
            progress = wall
            for moment in instants:
                heapq.heappush(pending, moment)
            while pending and pending[0] <= earliest:
                moment = heapq.heappop(pending)
                if moment > after and (last is None or moment > last):
                    last = moment
                    yield moment
        while pending:
            moment = heapq.heappop(pending)
            if moment > after and (last is None or moment > last):
                last = moment
                yield moment

    def next_after(self, after: datetime, last_end: datetime | None = None) -> datetime | None:
        """The first fire time strictly after ``after`` (UTC); ``last_end`` is ignored."""
        return next(self.iter_after(after), None)

    def _fires_on(self, day: date) -> bool:
        slot = next(self._wall_slots(datetime.combine(day, time())), None)
        return slot is not None and slot.date() == day

    def _slots_before(self, second_of_day: int) -> int:
        """How many slots of a matching day fall before ``second_of_day`` (0-86400)."""
        cron = self._cron
        hours, minutes = sorted(cron.hour.values), sorted(cron.minute.values)
        seconds = sorted(cron.seconds.values) if cron.seconds is not None else [0]
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        count = bisect.bisect_left(hours, hour) * len(minutes) * len(seconds)
        if hour in cron.hour.values:
            count += bisect.bisect_left(minutes, minute) * len(seconds)
            if minute in cron.minute.values:
                count += bisect.bisect_left(seconds, second)
        return count

    def _count_walls(self, low: datetime, high: datetime) -> int:
        """How many wall-clock slots ``w`` satisfy ``low < w <= high`` (naive)."""
        total = 0
        one = timedelta(seconds=1)
        day = low.date()
        while day <= high.date():
            if self._fires_on(day):
                midnight = datetime.combine(day, time())
                first = max(0, (low - midnight) // one + 1)
                last = min(86399, (high - midnight) // one)
                if first <= last:
                    total += self._slots_before(last + 1) - self._slots_before(first)
            day += timedelta(days=1)
        return total

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many fires fall in (start, end]. Exact, and cheap for long spans.

        Between clock changes an instant and its wall time differ by a
        constant, so fires are counted on the wall clock, a day at a time, by
        arithmetic on the field values. Each clock change then gets the same
        correction :meth:`iter_after` applies: a second pass that this job
        does not run is taken off, a gap run moved to the end of the gap is
        added.
        """
        start, end = _utc(start, "start"), _utc(end, "end")
        if end <= start:
            return 0
        zone = _zone(self.timezone)
        tiny = timedelta(microseconds=1)
        changes = list(_transitions(zone, start - _MAX_FOLD, end))
        inside = [t for t in changes if t > start]
        # Regular slots, stretch by stretch of constant offset.
        total = 0
        bounds = [start, *inside, end + tiny]
        for lo, hi in itertools.pairwise(bounds):
            offset = _offset(zone, lo)
            # Instants lo < t < hi, or lo <= t < hi when lo is a clock change.
            low_wall = (lo + offset).replace(tzinfo=None) - (tiny if lo is not start else timedelta(0))
            total += self._count_walls(low_wall, (hi + offset).replace(tzinfo=None) - tiny)
        # Corrections at each clock change.
        for change in changes:
            before, after = _offset(zone, change - tiny), _offset(zone, change)
            if after < before and not self._second_pass():
                first = max(change, start + tiny)
                last = min(change + (before - after), end + tiny)
                if first < last:
                    total -= self._count_walls(
                        (first + after).replace(tzinfo=None) - tiny, (last + after).replace(tzinfo=None) - tiny
                    )
            elif after > before and change > start and self._cron.fixed_time and self.dst.gap == "run_after":
                gap_start = (change + before).replace(tzinfo=None)
                gap_end = (change + after).replace(tzinfo=None)
                in_gap = self._count_walls(gap_start - tiny, gap_end - tiny)
                at_end = self._count_walls(gap_end - tiny, gap_end)
                if in_gap and not at_end:
                    total += 1
        return total

    def interval_hint(self) -> timedelta:
        """The smallest gap between fires over about two weeks of wall-clock time.

        At least 13 fires are looked at, so a monthly job sees February.
        Measured from a fixed reference date on the DST-free wall clock, so it
        is the schedule's usual cadence, not what a DST day does to it.
        """
        smallest: timedelta | None = None
        floor = timedelta(seconds=1) if self._cron.seconds is not None else timedelta(minutes=1)
        previous: datetime | None = None
        for count, wall in enumerate(self._wall_slots(_HINT_REFERENCE)):
            if previous is not None:
                gap = wall - previous
                smallest = gap if smallest is None else min(smallest, gap)
                if smallest <= floor:
                    break
                if (wall - _HINT_REFERENCE > _HINT_WINDOW and count >= _HINT_MIN_FIRES) or count >= _HINT_MAX_FIRES:
                    break
            previous = wall
        # A schedule that fires only once in 50 years still needs an answer.
        return smallest if smallest is not None else _GIVE_UP

    # -- words ---------------------------------------------------------------

    def describe(self) -> str:
        """Plain English, with the timezone in brackets unless it is UTC."""
        words = _describe_cron(self._cron)
        return words if self.timezone == "UTC" else f"{words} ({self.timezone})"


def _describe_times(cron: _Cron) -> tuple[str, str] | None:
    """("times", "at 01:00") or ("intraday", "every 15 minutes"), or None if too irregular."""
    minute, hour, sec = cron.minute, cron.hour, cron.seconds
    second_values = sorted(sec.values) if sec is not None else [0]
    if sec is not None and sec.text != "0":
        if minute.step == 1 and hour.step == 1 and sec.step is not None:
            return "intraday", "every second" if sec.step == 1 else f"every {sec.step} seconds"
        if len(second_values) != 1 or minute.star or hour.star:
            return None
    if minute.step is not None and hour.step == 1:
        return "intraday", "every minute" if minute.step == 1 else f"every {minute.step} minutes"
    if not minute.star and len(minute.values) == 1 and hour.step is not None:
        (m,) = minute.values
        if hour.step == 1:
            return "intraday", f"at minute {m} of every hour"
        return "intraday", f"every {hour.step} hours at minute {m}"
    if not minute.star and not hour.star and len(minute.values) * len(hour.values) <= 6:
        s = second_values[0]
        times = [
            f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "") for h in sorted(hour.values) for m in sorted(minute.values)
        ]
        return "times", "at " + _join(times)
    return None


def _weekday_order(days: Iterable[int]) -> list[int]:
    """Monday first, Sunday last, as people list days."""
    return sorted(days, key=lambda d: (d == 0, d))


def _describe_days(cron: _Cron) -> tuple[str, str, str] | None:
    """(kind, singular, plural) for the day fields, or None if too irregular.

    kind is "every" (every day), "dow" ("weekday", "weekdays") or "dom"
    ("the 1st", "the 1st").
    """
    dom, dow = cron.dom, cron.dow
    if dom.step == 1 and dow.step == 1:
        return "every", "", ""
    if not cron.day_and:
        return None  # day-of-month OR day-of-week: leave it to cronsim's wording
    if dom.step == 1 and not dow.special:
        days = _weekday_order(dow.values)
        if days == [1, 2, 3, 4, 5]:
            return "dow", "weekday", "weekdays"
        if days == [6, 0]:
            return "dow", "weekend day", "weekends"
        return "dow", _join([_DAY_NAMES[d] for d in days]), _join([f"{_DAY_NAMES[d]}s" for d in days])
    if dom.step == 1 and not dow.values:
        parts = []
        for kind, day, nth in sorted(dow.special):
            which = "last" if kind == "last" else _NTH_WORDS[nth]
            parts.append(f"the {which} {_DAY_NAMES[day]}")
        return "dom", _join(parts), _join(parts)
    if dow.step == 1 and not dom.star:
        parts = [f"the {_ordinal(d)}" for d in sorted(dom.values)]
        if _LAST_WEEKDAY in dom.special:
            parts.append("the last weekday")
        if _LAST_DAY in dom.special:
            parts.append("the last day")
        return "dom", _join(parts), _join(parts)
    return None


def _describe_cron(cron: _Cron) -> str:
    times = _describe_times(cron)
    days = _describe_days(cron)
    if times is None or days is None:
        explained = CronSim(cron.expr, _HINT_REFERENCE).explain()
        return explained[:1].lower() + explained[1:]
    time_kind, time_words = times
    day_kind, day_one, day_many = days
    months = "" if cron.month.step == 1 else _join([_MONTH_NAMES[m - 1] for m in sorted(cron.month.values)])
    in_months = f" in {months}" if months else ""
    of_months = f" of {months}" if months else " of every month"
    if time_kind == "times":
        if day_kind == "every":
            return f"every day{in_months} {time_words}"
        if day_kind == "dow":
            return f"every {day_one}{in_months} {time_words}"
        return f"on {day_one}{of_months} {time_words}"
    if day_kind == "every":
        return f"{time_words}{in_months}"
    if day_kind == "dow":
        return f"{time_words} on {day_many}{in_months}"
    return f"{time_words} on {day_many}{of_months}"


# --------------------------------------------------------------------------
# Interval schedules


@dataclass(frozen=True)
class EverySchedule:
    """Fires at ``anchor + k * every`` for k = 0, 1, 2, ... in absolute time."""

    every: timedelta
    anchor: datetime | None = None
    """Aware; None means 2000-01-01 00:00 in ``timezone``."""
    timezone: str = "UTC"
    text: str = ""
    kind: str = field(default="every", init=False)

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise errors.ScheduleError(f'"every" must be a positive duration like 30h, got "{self.every}"')
        zone = _zone(self.timezone)
        if self.anchor is None:
            object.__setattr__(self, "anchor", DEFAULT_ANCHOR.replace(tzinfo=zone).astimezone(UTC))
        else:
            object.__setattr__(self, "anchor", _utc(self.anchor, "anchor"))
        if not self.text:
            object.__setattr__(self, "text", f"every {durations.format(self.every)}")

    @property
    def start(self) -> datetime:
        """The anchor, in UTC: the first fire."""
        if self.anchor is None:  # pragma: no cover - set in __post_init__
            raise AssertionError("anchor is set in __post_init__")
        return self.anchor

    def _index_after(self, after: datetime) -> int:
        if after < self.start:
            return 0
        return (after - self.start) // self.every + 1

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after``, in UTC."""
        k = self._index_after(_utc(after))
        while True:
            yield self.start + k * self.every
            k += 1

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many fires fall in (start, end]."""
        first = self._index_after(_utc(start, "start"))
        last = self._index_after(_utc(end, "end")) - 1
        return max(0, last - first + 1)

    def next_after(self, after: datetime, last_end: datetime | None = None) -> datetime | None:
        """The first fire strictly after ``after`` (UTC); ``last_end`` is ignored."""
        return self.start + self._index_after(_utc(after)) * self.every

    def describe(self) -> str:
        anchor = _wall(self.start, _zone(self.timezone))
        shown = anchor.strftime("%Y-%m-%d %H:%M:%S" if anchor.second else "%Y-%m-%d %H:%M")
        return f"{_duration_words(self.every, every=True)}, counted from {shown} {self.timezone}"

    def interval_hint(self) -> timedelta:
        return self.every


@dataclass(frozen=True)
class AfterCompletionSchedule:
    """Fires ``gap`` after the previous run ended."""

    gap: timedelta
    text: str = ""
    kind: str = field(default="after_completion", init=False)

    def __post_init__(self) -> None:
        if self.gap <= timedelta(0):
            raise errors.ScheduleError(f'"after_completion" must be a positive duration like 6h, got "{self.gap}"')
        if not self.text:
            object.__setattr__(self, "text", f"{durations.format(self.gap)} after completion")

    def next_after(self, after: datetime, last_end: datetime | None = None) -> datetime | None:
        """``last_end + gap`` in UTC, even when not after ``after``; None before any run ended."""
        if last_end is None:
            return None
        return _utc(last_end, "last_end") + self.gap

    def describe(self) -> str:
        return f"{_duration_words(self.gap)} after the previous run ends"

    def interval_hint(self) -> None:
        return None


# --------------------------------------------------------------------------
# Parsing


def _parse_anchor(raw: object, zone: zoneinfo.ZoneInfo, timezone: str) -> datetime:
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime.combine(raw, time())
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError as exc:
            raise errors.ScheduleError(
                f'anchor "{raw}" is not a date and time; write it like 2026-01-01T01:00'
            ) from exc
    else:
        raise errors.ScheduleError(f'anchor "{raw}" is not a date and time; write it like 2026-01-01T01:00')
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    local = moment.replace(tzinfo=zone)  # fold=0: the first pass of a repeated hour
    if _wall(local.astimezone(UTC), zone) != moment:
        raise errors.ScheduleError(
            f"anchor {moment.isoformat(timespec='minutes')} does not exist in {timezone}: "
            "the clocks skip it for daylight saving time; pick a time outside the gap"
        )
    return local.astimezone(UTC)


def _anchor_text(raw: object) -> str:
    if isinstance(raw, (datetime, date)):
        return raw.isoformat()
    return str(raw).strip()


def _parse_mapping(value: Mapping[Any, object], timezone: str) -> Schedule:
    for key in value:
        if key not in _DICT_KEYS:
            close = [k for k in _DICT_KEYS if k.startswith(str(key).lower())] or difflib.get_close_matches(
                str(key), _DICT_KEYS, n=1
            )
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else 'use "every" (with an optional "anchor") or "after_completion"'
            )
            raise errors.ScheduleError(f'unknown schedule key "{key}"; {hint}')
    if "every" in value and "after_completion" in value:
        raise errors.ScheduleError('a schedule has "every" or "after_completion", not both; write two schedules')
    if "after_completion" in value:
        if "anchor" in value:
            raise errors.ScheduleError('"anchor" only goes with "every", not with "after_completion"')
        raw = value["after_completion"]
        gap = _parse_duration(raw, "after_completion", "6h")
        return AfterCompletionSchedule(gap, text=f"{str(raw).strip()} after completion")
    if "every" not in value:
        raise errors.ScheduleError('"anchor" needs "every", like {every: 30h, anchor: 2026-01-01T01:00}')
    raw = value["every"]
    every = _parse_duration(raw, "every", "30h")
    zone = _zone(timezone)
    text = f"every {str(raw).strip()}"
    anchor = None
    if value.get("anchor") is not None:
        anchor = _parse_anchor(value["anchor"], zone, timezone)
        text += f" from {_anchor_text(value['anchor'])}"
    return EverySchedule(every, anchor, timezone, text)


_EVERY_TEXT = re.compile(r"every\s+(?P<every>.+?)(?:\s+from\s+(?P<anchor>\S+))?", re.IGNORECASE)
_AFTER_TEXT = re.compile(r"(?P<gap>.+?)\s+after\s+completion", re.IGNORECASE)


def parse(value: str | Mapping[str, object], *, timezone: str = "UTC", dst: DstPolicy = DEFAULT_DST) -> Schedule:
    """Turn one schedule from a job file into a :class:`Schedule`.

    ``value`` is one of:

    * a cron string with 5 fields (minute hour day-of-month month
      day-of-week) or 6 with seconds first (second minute hour ...); names
      (``mon-fri``, ``jan``, case-insensitive), ranges, lists, steps
      (``*/15``, ``1-10/2``), ``L``/``LW`` in day-of-month and ``5L``/``fri#2``
      in day-of-week are accepted;
    * a macro: ``@hourly @daily @midnight @weekly @monthly @yearly @annually``;
    * ``{"every": "30h", "anchor": "2026-01-01T01:00"}``; a naive anchor is in
      ``timezone`` (first pass if that hour repeats; refused if it is skipped),
      an aware one is taken as given, the default is 2000-01-01T00:00 in
      ``timezone``; nothing fires before the anchor;
    * ``{"after_completion": "6h"}``;
    * the display texts ``"every 30h from 2026-01-01T01:00"`` and
      ``"6h after completion"``, so :attr:`Schedule.text` parses back.

    Raises :class:`errors.ScheduleError` with one message that says what to fix.
    """
    _zone(timezone)
    if isinstance(value, Mapping):
        if not value:
            raise errors.ScheduleError("empty schedule mapping; write {every: 30h} or {after_completion: 6h}")
        return _parse_mapping(value, timezone)
    if not isinstance(value, str):
        kind = {bool: "true/false", int: "number", float: "number", list: "list", tuple: "list"}.get(
            type(value), type(value).__name__
        )
        raise errors.ScheduleError(
            f'a schedule is a cron string like "0 1 * * *" or a mapping like {{every: 30h}}, got a {kind}'
        )
    text = value.strip()
    if match := _EVERY_TEXT.fullmatch(text):
        mapping: dict[str, object] = {"every": match["every"]}
        if match["anchor"]:
            mapping["anchor"] = match["anchor"]
        return _parse_mapping(mapping, timezone)
    if match := _AFTER_TEXT.fullmatch(text):
        return _parse_mapping({"after_completion": match["gap"]}, timezone)
    return CronSchedule(text, timezone, dst)


# --------------------------------------------------------------------------
# Lists of schedules


def _iter(schedule: Schedule, after: datetime, last_end: datetime | None) -> Iterator[datetime]:
    """Fire times of one schedule from ``after`` on, strictly increasing."""
    if isinstance(schedule, (CronSchedule, EverySchedule)):
        yield from schedule.iter_after(after)
        return
    moment = schedule.next_after(after, last_end)
    while moment is not None:
        yield moment
        following = schedule.next_after(moment, last_end)
        if following is None or following <= moment:
            return  # after_completion: one known time only
        moment = following


def _merged(iterators: Iterable[Iterator[datetime]]) -> Iterator[datetime]:
    last: datetime | None = None
    for moment in heapq.merge(*iterators):
        if last is None or moment > last:
            last = moment
            yield moment


def next_fire(schedules: Sequence[Schedule], after: datetime, last_end: datetime | None = None) -> datetime | None:
    """The earliest :meth:`Schedule.next_after` over ``schedules``; None if none has one."""
    found = [t for s in schedules if (t := s.next_after(after, last_end)) is not None]
    return min(found) if found else None


def next_times(
    schedules: Sequence[Schedule], after: datetime, n: int, last_end: datetime | None = None
) -> list[datetime]:
    """Up to ``n`` strictly increasing fire times over all ``schedules``, in UTC.

    Cron and every schedules contribute times strictly after ``after``. An
    after_completion schedule contributes its one known time (``last_end +
    gap``), even when that is already due, so ``next_times(..., 1)`` agrees
    with :func:`next_fire`. Times shared by several schedules appear once.
    """
    if n <= 0:
        return []
    out: list[datetime] = []
    for moment in _merged(_iter(s, after, last_end) for s in schedules):
        out.append(moment)
        if len(out) >= n:
            break
    return out


def slots_between(
    schedules: Sequence[Schedule], start: datetime, end: datetime, limit: int = 10_000
) -> tuple[list[datetime], int]:
    """Fire times ``t`` with ``start < t <= end`` of the cron and every schedules.

    Returns the first ``limit`` of them (strictly increasing, UTC, shared times
    once) and how many more there are. With one cron or every schedule the
    count is exact and cheap however long the span. With several, shared
    times must be found one by one, so counting stops at
    :data:`SLOT_COUNT_CAP`: a count of ``SLOT_COUNT_CAP`` means "at least that many".
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    timed = [s for s in schedules if s.kind in ("cron", "every")]
    if end <= start or not timed:
        return [], 0
    slots: list[datetime] = []
    merged = _merged(_iter(s, start, None) for s in timed)
    for moment in merged:
        if moment > end:
            return slots, 0
        if len(slots) >= limit:
            after = slots[-1] if slots else start
            if len(timed) == 1 and isinstance(timed[0], (CronSchedule, EverySchedule)):
                return slots, timed[0].count_between(after, end)
            more = 1
            for further in merged:
                if further > end or more >= SLOT_COUNT_CAP:
                    break
                more += 1
            return slots, more
        slots.append(moment)
    return slots, 0


def describe_all(schedules: Sequence[Schedule]) -> str:
    """``manual only`` for no schedules, else each description joined with ``; ``."""
    if not schedules:
        return "manual only"
    return "; ".join(s.describe() for s in schedules)


def interval_of(schedules: Sequence[Schedule]) -> timedelta | None:
    """The smallest :meth:`Schedule.interval_hint` over ``schedules`` (None if none has one)."""
    hints = [h for s in schedules if (h := s.interval_hint()) is not None]
    return min(hints) if hints else None


# --------------------------------------------------------------------------
# DST forecast


@dataclass(frozen=True)
class DstEvent:
    """The next time the job's wall clock jumps, and what the job does then."""

    at: datetime
    """The UTC instant of the transition."""
    kind: Literal["gap", "fold"]
    wall_from: str
    """Wall clock just before the jump, e.g. ``02:00``."""
    wall_to: str
    """Wall clock just after it, e.g. ``03:00``."""
    effect: str
    """What this job does, in plain words."""


def _slot_list(walls: Sequence[datetime]) -> str:
    if len(walls) <= 3:
        return _join([_hhmm(w) for w in walls])
    return f"{len(walls)} runs from {_hhmm(walls[0])} to {_hhmm(walls[-1])}"


def _effect(schedule: CronSchedule, kind: str, before: datetime, after: datetime) -> str:
    low, high = min(before, after), max(before, after)
    walls: list[datetime] = []
    for wall in schedule._wall_slots(low):
        if wall >= high:
            break
        walls.append(wall)
    if not walls:
        return "not affected"
    listed = _slot_list(walls)
    many = len(walls) > 3
    if kind == "gap":
        if schedule.fixed_time and schedule.dst.gap == "run_after":
            if len(walls) == 1:
                return f"the {listed} run moves to {_hhmm(high)} (right after the gap)"
            subject = f"the {listed}" if many else f"the {listed} runs"
            return f"{subject} happen once, at {_hhmm(high)} (right after the gap)"
        if len(walls) == 1:
            return f"the {listed} run is skipped ({listed} does not exist that day)"
        subject = f"the {listed}" if many else f"the {listed} runs"
        return f"{subject} are skipped (those times do not exist that day)"
    span = f"{_hhmm(low)}-{_hhmm(high)}"
    if schedule._second_pass():
        if many:
            return f"runs on both passes of {span}"
        return f"runs at {listed} on both passes of {span}"
    if many:
        first, last = _hhmm(walls[0]), _hhmm(walls[-1])
        return f"runs once at each of the {len(walls)} times from {first} to {last} (first pass only)"
    return f"runs once at {listed} (first pass only)"


def next_dst_event(schedule: Schedule, after: datetime, horizon: timedelta = timedelta(days=400)) -> DstEvent | None:
    """The next wall-clock jump of a cron schedule's timezone after ``after``.

    None for zones without one inside ``horizon`` (UTC, Asia/Seoul) and for
    every/after_completion schedules, whose fires are absolute times.
    """
    if not isinstance(schedule, CronSchedule):
        return None
    after = _utc(after)
    zone = _zone(schedule.timezone)
    for change in _transitions(zone, after, after + horizon):
        before_wall = _wall(change - timedelta(seconds=1), zone) + timedelta(seconds=1)
        after_wall = _wall(change, zone)
        if before_wall == after_wall:  # pragma: no cover - only the abbreviation changed
            continue
        kind: Literal["gap", "fold"] = "gap" if after_wall > before_wall else "fold"
        return DstEvent(
            at=change,
            kind=kind,
            wall_from=_hhmm(before_wall),
            wall_to=_hhmm(after_wall),
            effect=_effect(schedule, kind, before_wall, after_wall),
        )
    return None
