"""Pure parsers: crontab, system crontab, anacrontab, systemd timers.

Text goes in, :class:`Entry` values come out. Nothing here opens a file or
reads the clock: ``next_run`` takes the moment to count from. The rules follow
what cron itself does (Vixie cron as shipped by Debian, and cronie on RHEL), so
a line is reported ``invalid`` exactly when cron would reject it or run
something other than what the author meant, and the reason says which.

The crontab path is hot (a big fleet has many thousands of lines), so it
avoids per-line regexes where a string test does, and caches the verdict for
each distinct field text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from corral import schedule

# Entry kinds
JOB = "job"
ENV = "env"
DISABLED = "disabled"
INVALID = "invalid"
KINDS: tuple[str, ...] = (JOB, ENV, DISABLED, INVALID)

# Where an entry came from (decides which fields mean what)
CRONTAB = "crontab"  # a user's spool file: 5 fields + command
SYSTEM_CRONTAB = "system-crontab"  # /etc/crontab, /etc/cron.d/*: 5 fields + user + command
ANACRONTAB = "anacrontab"
SYSTEMD = "systemd"  # a .timer joined with its .service
LIST_TIMERS = "list-timers"  # a row of `systemctl list-timers --all`
RUN_PARTS = "run-parts"  # a script in /etc/cron.{hourly,daily,weekly,monthly}

# Parser notes (codes; inventory.findings turns them into messages)
NOTE_CRLF = "crlf"
NOTE_TZ_ENV_ONLY = "tz_env_only"
NOTE_USER_FIELD_IN_USER_CRONTAB = "user_field_in_user_crontab"
NOTE_MISSING_SERVICE = "missing_service"
NOTE_DISTRIBUTION = "distribution"
NOTE_RUN_PARTS_SKIPS = "run_parts_skips_name"
NOTE_CRON_SKIPS_FILE = "cron_skips_file"

_NO_ENV: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Entry:
    """One meaningful line (or one timer) found on a host.

    ``schedule`` is the schedule as written; ``cron`` holds equivalent 5-field
    cron expressions (or ``@reboot``) when an exact one exists, which is what
    next-run math and import use. ``env`` is, for a job, the environment in
    force at its line; for an ``env`` entry, the one assignment it makes.
    ``details`` carries format-specific keys (systemd keys under their own
    names, anacron's delay and id). ``notes`` are parser observations
    (``NOTE_*`` codes) that ``inventory.findings`` explains.
    """

    host: str
    user: str | None
    source: str
    line: int
    kind: str
    schedule: str = ""
    command: str = ""
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: _NO_ENV)
    mailto: str | None = None
    timezone: str | None = None
    reason: str | None = None
    raw: str = ""
    origin: str = CRONTAB
    cron: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=lambda: _NO_ENV)
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# crontab fields

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_LIMITS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_FIELD_VALUE_NAMES: tuple[Mapping[str, int] | None, ...] = (None, None, None, _MONTHS, _DAYS)
_ASCII_DIGITS = frozenset("0123456789")
# Jenkins' hash token: H, H/15, H(0-29), alone or in a list item.
_JENKINS_H = re.compile(r"(?:^|,)H(?:\(|/|,|$)")
_FIELD_CACHE: tuple[dict[str, str | None], ...] = ({}, {}, {}, {}, {})
_FIELD_CACHE_MAX = 4096

_MACROS = {**schedule.MACROS, "@reboot": "@reboot"}

# A token that reads like a cron time field rather than a program or user
# name: what a 6th/7th Quartz field or a seconds-first Spring expression
# leaves in front of the command.
_FIELDISH = re.compile(
    r"(?:[0-9*?LW#/,\-]|(?i:MON|TUE|WED|THU|FRI|SAT|SUN|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))+\Z"
)
_FIELD_MARKS = frozenset("0123456789*?")
_FIELD_NAME = re.compile(r"(?i:MON|TUE|WED|THU|FRI|SAT|SUN|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)")


def _fieldish(token: str, *, as_user: bool = False) -> bool:
    """True when ``token`` looks like a time field: it has a digit, ``*`` or
    ``?``, or a day or month name. In the user position a bare name ("mon")
    may be a real account, so there a name needs a range or list mark too."""
    if not _FIELDISH.match(token):
        return False
    if not _FIELD_MARKS.isdisjoint(token):
        return True
    if _FIELD_NAME.search(token) is None:
        return False  # "-", "/", "L": not enough to call it a field
    return not as_user or any(mark in token for mark in "-,/")


# Names useradd accepts (and cron looks up); a path or an option is not one.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\$?\Z")
# NAME=value as cron's load_env reads it: an unquoted name stops at blanks or '='.
_ENV_LINE = re.compile(r"""(?:"([^"]*)"|'([^']*)'|([^\s="']+))[ \t]*=(.*)\Z""", re.DOTALL)
_JOB_START = frozenset("0123456789*")

# Commented-out examples shipped in Debian's and cronie's templates: they are
# documentation, not somebody's disabled job.
_TEMPLATE_COMMENTS = frozenset(
    {
        "* * * * * user-name command to be executed",
        "0 5 * * 1 tar -zcf /var/backups/home.tgz /home/",
    }
)


def _field_reason(index: int, text: str) -> str | None:
    """Why cron rejects ``text`` as field ``index``, or None when it is fine."""
    cache = _FIELD_CACHE[index]
    try:
        return cache[text]
    except KeyError:
        pass
    reason = _check_field(index, text)
    if len(cache) >= _FIELD_CACHE_MAX:
        cache.clear()
    cache[text] = reason
    return reason


def _check_field(index: int, text: str) -> str | None:
    name = _FIELD_NAMES[index]
    lo, hi = _LIMITS[index]
    names = _FIELD_VALUE_NAMES[index]
    upper = text.upper()
    where = f'{name} field "{text}"'
    if "?" in upper:
        return f'{where}: "?" is Quartz (Java) syntax; cron does not accept it'
    if _JENKINS_H.search(upper):
        return f'{where}: "H" is Jenkins hash syntax; cron does not accept it, pick a fixed value'
    for part in upper.split(","):
        if not part:
            return f"{where}: empty item in the list"
        base, slash, step = part.partition("/")
        if slash:
            if not step or not set(step) <= _ASCII_DIGITS:
                return f'{where}: step "{step}" is not a number'
            if int(step) == 0:
                return f"{where}: a step of 0 is not allowed"
        if base == "*":
            continue
        if "-" in base:
            first, _, last = base.partition("-")
            a = _field_value(first, lo, hi, names, where)
            if isinstance(a, str):
                return a
            b = _field_value(last, lo, hi, names, where)
            if isinstance(b, str):
                return b
            if a > b:
                return f"{where}: the range {first}-{last} runs backwards; cron does not wrap around"
        else:
            if slash:
                return (
                    f'{where}: a single start value with a step ("{part}") is rejected by cronie and '
                    f'not portable; write "{base}-{hi}/{step}" (or "*/{step}")'
                )
            value = _field_value(base, lo, hi, names, where)
            if isinstance(value, str):
                return value
    return None


def _field_value(token: str, lo: int, hi: int, names: Mapping[str, int] | None, where: str) -> int | str:
    """The number ``token`` stands for, or a reason string."""
    if token and set(token) <= _ASCII_DIGITS:
        value = int(token)
        if value < lo or value > hi:
            return f"{where}: {value} is out of range {lo}-{hi}"
        return value
    if names is not None and token in names:
        return names[token]
    if not token:
        return f"{where}: a range is missing a number"
    if "~" in token:
        return f'{where}: "~" random ranges are understood only by OpenBSD cron and cronie 1.7+'
    if any(ch in token for ch in "LW#"):
        return f'{where}: "L", "W" and "#" are Quartz extensions; cron does not accept them'
    return f'{where}: "{token}" is not a number or a name cron knows'


# --------------------------------------------------------------------------
# crontab lines


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str  # JOB or INVALID
    schedule: str
    cron: str | None
    user: str | None
    command: str
    reason: str | None = None


def _invalid(schedule: str, reason: str, user: str | None = None, command: str = "") -> _Job:
    return _Job(INVALID, schedule, None, user, command, reason)


def _parse_job(body: str, system: bool) -> _Job:
    """Split a stripped, non-comment, non-env line into schedule, user, command."""
    if body[0] == "@":
        parts = body.split(None, 2 if system else 1)
        schedule = parts[0]
        cron = _MACROS.get(schedule)
        if cron is None:
            words = body.split(None, 1)
            rest_text = words[1] if len(words) > 1 else ""
            if schedule.lower() in _MACROS:
                reason = f'"{schedule}": cron macros are lower case; write "{schedule.lower()}"'
            elif schedule == "@every":
                reason = '"@every" is Go cron (robfig/cron) syntax; cron does not accept it'
                interval, _, rest_text = rest_text.partition(" ")
                schedule = f"@every {interval}".strip()
                rest_text = rest_text.strip()
            else:
                reason = f'"{schedule}" is not a cron macro (@reboot, @hourly, @daily, @weekly, @monthly, @yearly)'
            return _invalid(schedule, reason, command=rest_text)
        rest = parts[1:]
    else:
        parts = body.split(None, 6 if system else 5)
        if len(parts) < 5:
            return _invalid(
                " ".join(parts),
                f"only {len(parts)} field{'s' if len(parts) != 1 else ''}; a cron line needs 5 time fields and a command",
            )
        schedule = " ".join(parts[:5])
        for index in range(5):
            reason = _field_reason(index, parts[index])
            if reason is not None:
                if len(parts) > 5 and _fieldish(parts[5].split(None, 1)[0], as_user=system):
                    # "0 30 2 * * * cmd": seconds first, so every field is shifted
                    return _quartz(schedule, parts[5:], system, rejected=True)
                user, command = _user_and_command(parts[5:], system)
                return _invalid(schedule, reason, user, command)
        cron = schedule
        rest = parts[5:]
    user = None
    if system:
        if not rest:
            return _invalid(schedule, "no user and no command after the schedule")
        user = rest[0]
        if _fieldish(user, as_user=True):
            return _quartz(schedule, rest, system)
        if not _USER_NAME.match(user):
            return _invalid(
                schedule,
                f'system crontab lines need a user between the schedule and the command; "{user}" is not a user name',
                command=" ".join(rest),
            )
        if len(rest) < 2:
            return _invalid(schedule, f'no command after the user "{user}"', user=user)
        command = rest[1]
    else:
        if not rest:
            return _invalid(schedule, "no command after the schedule")
        command = rest[0]
    head = command.split(None, 1)[0]
    if _fieldish(head):
        return _quartz(schedule, rest, system)
    return _Job(JOB, schedule, cron, user, command)


def _quartz(schedule: str, rest: list[str], system: bool, rejected: bool = False) -> _Job:
    """A 6- or 7-field expression (seconds first, maybe a year) read as 5 + command."""
    remainder = " ".join(rest)
    extra: list[str] = []
    while len(extra) < 2 and remainder:
        word, *after = remainder.split(None, 1)
        if not _fieldish(word):
            break
        extra.append(word)
        remainder = after[0] if after else ""
    words = " ".join(rest).split()
    count = 5 + len(extra)
    full = " ".join([schedule, *extra])
    user, tail = _user_and_command([remainder] if remainder else [], system)
    kind = "a Quartz/Spring expression (seconds first" + (", year last)" if count == 7 else ")")
    return _invalid(
        full,
        f'{count} time fields ("{full}") look like {kind}; cron reads 5 and '
        + (
            "rejects the line"
            if rejected
            else (f'would take "{words[0]}" as the user' if system else f'would run "{" ".join(words)}" as the command')
        ),
        user=user,
        command=tail,
    )


def _user_and_command(rest: list[str], system: bool) -> tuple[str | None, str]:
    """Best reading of what follows the time fields of a rejected line."""
    text = " ".join(rest)
    if not system:
        return None, text
    words = text.split(None, 1)
    if len(words) == 2 and _USER_NAME.match(words[0]):
        return words[0], words[1]
    return None, text


def split_percent(command: str) -> tuple[str, str | None]:
    """Cron's ``%`` rule: the first unescaped ``%`` ends the command; the rest,
    with each ``%`` turned into a newline, is fed to it on stdin. ``\\%`` is a
    literal ``%`` (the backslash is removed); other backslashes stay."""
    if "%" not in command:
        return command, None
    out: list[str] = []
    escaped = False
    for index, ch in enumerate(command):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "%":
            return "".join(out), _stdin_text(command[index + 1 :])
        out.append(ch)
        escaped = ch == "\\"
    return "".join(out), None


def _stdin_text(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append("%" if ch == "%" else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append("\n" if ch == "%" else ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def _env_assignment(line: str) -> tuple[str, str] | None:
    match = _ENV_LINE.match(line)
    if match is None:
        return None
    name = match.group(1) if match.group(1) is not None else match.group(2)
    if name is None:
        name = match.group(3)
    value = match.group(4).strip()
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    return name, value


def parse_crontab(
    text: str,
    *,
    host: str,
    source: str,
    user: str | None = None,
    system: bool = False,
) -> list[Entry]:
    """Parse a crontab.

    A user crontab (``system=False``, the spool file of ``user``) has 5 time
    fields and a command; a system crontab (``/etc/crontab``, ``/etc/cron.d``)
    has a user field between them. Environment lines become ``env`` entries
    and apply to the jobs after them. Commented-out jobs come back as
    ``disabled``; lines cron would reject as ``invalid`` with a ``reason``.
    Blank lines and ordinary comments produce nothing.
    """
    entries: list[Entry] = []
    append = entries.append
    origin = SYSTEM_CRONTAB if system else CRONTAB
    env: Mapping[str, str] = _NO_ENV
    mailto: str | None = None
    tz: str | None = None
    tz_env_only = False
    continued_from = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw
        notes: tuple[str, ...] = ()
        if line.endswith("\r"):
            line = line[:-1]
            notes = (NOTE_CRLF,)
        body = line.strip()
        if not body:
            continued_from = 0
            continue
        after_continuation = continued_from
        continued_from = 0
        first = body[0]
        if first == "#":
            comment = body.lstrip("#").strip()
            if comment and (comment[0] in _JOB_START or comment[0] == "@"):
                job = _parse_job(comment, system)
                if job.kind == JOB and " ".join(comment.split()) not in _TEMPLATE_COMMENTS:
                    command, stdin = split_percent(job.command)
                    append(
                        Entry(
                            host, job.user if system else user, source, lineno, DISABLED,
                            job.schedule, command, stdin, env, mailto, tz, None, raw, origin,
                            (job.cron,) if job.cron else (), _NO_ENV, notes,
                        )
                    )  # fmt: skip
            continue
        if after_continuation:
            append(
                _continuation(
                    host, user, source, lineno, raw, body, system, after_continuation, env, mailto, tz, origin, notes
                )
            )
            if body.endswith("\\"):
                continued_from = after_continuation
            continue
        if first not in _JOB_START:
            assignment = _env_assignment(body)
            if assignment is not None:
                name, value = assignment
                new_env = dict(env)
                new_env[name] = value
                env = MappingProxyType(new_env)
                if name == "MAILTO":
                    mailto = value
                elif name == "CRON_TZ":
                    tz, tz_env_only = (value or None), False
                elif name == "TZ" and "CRON_TZ" not in env:
                    tz, tz_env_only = (value or None), True
                append(
                    Entry(
                        host, user, source, lineno, ENV, "", "", None,
                        MappingProxyType({name: value}), mailto, tz, None, raw, origin, (), _NO_ENV, notes,
                    )
                )  # fmt: skip
                continue
        job = _parse_job(body, system)
        entry_user = job.user if system else user
        if job.kind == JOB and body.endswith("\\"):
            continued_from = lineno
            job = _invalid(
                job.schedule,
                "the line ends with a backslash, but cron has no line continuations: sh gets the "
                "backslash and the next line is read as a separate, broken entry",
                entry_user,
                job.command,
            )
        command, stdin = split_percent(job.command)
        if job.kind == JOB:
            if tz_env_only:
                notes = (*notes, NOTE_TZ_ENV_ONLY)
            if not system and user and " " in command:
                head = command.split(None, 1)[0]
                if head == "root" or head == user:
                    notes = (*notes, NOTE_USER_FIELD_IN_USER_CRONTAB)
        append(
            Entry(
                host, entry_user, source, lineno, job.kind, job.schedule, command, stdin, env, mailto, tz,
                job.reason, raw, origin, (job.cron,) if job.cron else (), _NO_ENV, notes,
            )
        )  # fmt: skip
    return entries


def _continuation(
    host: str,
    user: str | None,
    source: str,
    lineno: int,
    raw: str,
    body: str,
    system: bool,
    continued: int,
    env: Mapping[str, str],
    mailto: str | None,
    tz: str | None,
    origin: str,
    notes: tuple[str, ...],
) -> Entry:
    """A line after one ending in a backslash: meant as part of it, read by cron on its own."""
    if body[0] not in _JOB_START and _env_assignment(body) is not None:
        alone = "as an environment assignment"
    else:
        job = _parse_job(body, system)
        alone = f"as a job of its own ({job.schedule})" if job.kind == JOB else f"and rejects it: {job.reason}"
    reason = f"continues line {continued}, but cron has no line continuations; it reads this line {alone}"
    return Entry(
        host, user, source, lineno, INVALID, "", body, None, env, mailto, tz, reason, raw, origin, (), _NO_ENV, notes,
    )  # fmt: skip


# --------------------------------------------------------------------------
# anacrontab

_ANACRON_PERIODS = {"@daily": 1, "@weekly": 7, "@monthly": 30}


def parse_anacrontab(text: str, *, host: str, source: str) -> list[Entry]:
    """Parse ``/etc/anacrontab``: ``period delay job-id command`` lines plus
    environment lines (``START_HOURS_RANGE`` and ``RANDOM_DELAY`` included).

    Anacron runs jobs as root, some minutes after it starts, once their
    period has passed; there is no exact cron equivalent, so ``cron`` is empty.
    """
    entries: list[Entry] = []
    env: Mapping[str, str] = _NO_ENV
    mailto: str | None = None
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        notes: tuple[str, ...] = (NOTE_CRLF,) if line is not raw else ()
        body = line.strip()
        if not body:
            continue
        if body[0] == "#":
            comment = body.lstrip("#").strip()
            if comment and (comment[0].isdigit() or comment[0] == "@"):
                job = _anacron_job(comment)
                if job[0] == JOB:
                    append_job = _anacron_entry(host, source, lineno, raw, DISABLED, job, env, mailto, notes)
                    entries.append(append_job)
            continue
        if not body[0].isdigit() and body[0] != "@":
            assignment = _env_assignment(body)
            if assignment is not None:
                name, value = assignment
                env = MappingProxyType({**env, name: value})
                if name == "MAILTO":
                    mailto = value
                entries.append(
                    Entry(
                        host, "root", source, lineno, ENV, env=MappingProxyType({name: value}), mailto=mailto,
                        raw=raw, origin=ANACRONTAB, notes=notes,
                    )
                )  # fmt: skip
                continue
        job = _anacron_job(body)
        entries.append(_anacron_entry(host, source, lineno, raw, job[0], job, env, mailto, notes))
    return entries


def _anacron_job(body: str) -> tuple[str, str, str, str, str, str | None]:
    """(kind, period, delay, job id, command, reason)."""
    parts = body.split(None, 3)
    period = parts[0]
    delay = parts[1] if len(parts) > 1 else ""
    job_id = parts[2] if len(parts) > 2 else ""
    command = parts[3] if len(parts) > 3 else ""
    if period.startswith("@"):
        if period not in _ANACRON_PERIODS:
            return (
                INVALID,
                period,
                delay,
                job_id,
                command,
                f'"{period}" is not an anacron period (@daily, @weekly, @monthly or a number of days)',
            )
    elif not set(period) <= _ASCII_DIGITS or int(period) < 1:
        return INVALID, period, delay, job_id, command, f'period "{period}" is not a number of days (1 or more)'
    if len(parts) < 4:
        return (
            INVALID,
            period,
            delay,
            job_id,
            command,
            "an anacron line needs a period, a delay, a job id and a command",
        )
    if not set(delay) <= _ASCII_DIGITS:
        return INVALID, period, delay, job_id, command, f'delay "{delay}" is not a number of minutes'
    if "/" in job_id:
        return (
            INVALID,
            period,
            delay,
            job_id,
            command,
            f'job id "{job_id}" contains "/"; anacron uses it as a file name',
        )
    return JOB, period, delay, job_id, command, None


def _anacron_entry(
    host: str,
    source: str,
    lineno: int,
    raw: str,
    kind: str,
    job: tuple[str, str, str, str, str, str | None],
    env: Mapping[str, str],
    mailto: str | None,
    notes: tuple[str, ...],
) -> Entry:
    _, period, delay, job_id, command, reason = job
    details = {"delay": delay, "id": job_id}
    for key in ("START_HOURS_RANGE", "RANDOM_DELAY"):
        if key in env:
            details[key] = env[key]
    return Entry(
        host, "root", source, lineno, kind, period, command, None, env, mailto, None, reason, raw, ANACRONTAB,
        (), MappingProxyType(details), notes,
    )  # fmt: skip


# --------------------------------------------------------------------------
# systemd

_MONOTONIC = ("OnActiveSec", "OnBootSec", "OnStartupSec", "OnUnitActiveSec", "OnUnitInactiveSec")
_TIMER_KEYS = ("Unit", "Persistent", "RandomizedDelaySec", "AccuracySec", "WakeSystem", "FixedRandomDelay")
_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})


@dataclass(frozen=True, slots=True)
class _UnitLine:
    section: str
    key: str
    value: str
    line: int


def _parse_unit(text: str) -> list[_UnitLine]:
    """systemd's ini dialect: [Section], Key=Value, # and ; comments, and a
    trailing backslash joining the next line."""
    out: list[_UnitLine] = []
    section = ""
    pending = ""
    pending_line = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if pending:
            stripped = line.strip()
            if stripped.startswith(("#", ";")):
                continue
            line = pending + " " + stripped
        else:
            pending_line = lineno
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            line = stripped
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, eq, value = line.partition("=")
        if eq:
            out.append(_UnitLine(section, key.strip(), value.strip(), pending_line))
    if pending:
        key, eq, value = pending.partition("=")
        if eq:
            out.append(_UnitLine(section, key.strip(), value.strip(), pending_line))
    return out


def _unit_values(lines: list[_UnitLine], section: str) -> dict[str, list[tuple[str, int]]]:
    """Key -> values in order; an empty assignment resets the list, as in systemd."""
    values: dict[str, list[tuple[str, int]]] = {}
    for item in lines:
        if item.section != section:
            continue
        if item.value == "":
            values[item.key] = []
        else:
            values.setdefault(item.key, []).append((item.value, item.line))
    return values


def _last(values: dict[str, list[tuple[str, int]]], key: str) -> str | None:
    items = values.get(key)
    return items[-1][0] if items else None


def systemd_bool(value: str) -> bool:
    """systemd's reading of a boolean setting (yes/true/on/1...)."""
    return value.strip().lower() in _TRUE


def _strip_exec_prefix(command: str) -> str:
    # ExecStart= may start with -, @, :, +, ! or !! (failure ignored, argv0, no
    # specifiers, privileges...). None of them is part of what runs.
    while command and command[0] in "-@:+!":
        command = command[1:]
    return command.strip()


def _environment(values: list[tuple[str, int]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value, _ in values:
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        for word in words:
            name, eq, val = word.partition("=")
            if eq and name:
                env[name] = val
    return env


def parse_systemd_units(
    files: Mapping[str, str],
    *,
    host: str,
    source_dir: str,
    enabled: Iterable[str] | None = None,
) -> list[Entry]:
    """One entry per ``.timer`` in ``files`` (file name -> text), joined with
    the ``.service`` it activates (``Unit=``, else the same name).

    ``enabled`` names the timers linked into a ``*.wants`` directory or seen
    in ``list-timers``; when given, a timer outside it is ``disabled``.
    A timer without any trigger is ``invalid`` (systemd refuses to start it);
    a timer whose service is not among ``files`` is a job with an empty
    command and the ``missing_service`` note (it may live in /usr/lib).
    """
    enabled_set = None if enabled is None else set(enabled)
    entries: list[Entry] = []
    for name in sorted(files):
        if not name.endswith(".timer"):
            continue
        source = f"{source_dir.rstrip('/')}/{name}" if source_dir else name
        lines = _parse_unit(files[name])
        timer = _unit_values(lines, "Timer")
        unit_desc = _last(_unit_values(lines, "Unit"), "Description")
        details: dict[str, str] = {}
        if unit_desc:
            details["Description"] = unit_desc
        triggers: list[tuple[str, str, int]] = []
        for key in ("OnCalendar", *_MONOTONIC):
            for value, lineno in timer.get(key, []):
                triggers.append((key, value, lineno))
        triggers.sort(key=lambda item: item[2])
        for key in _TIMER_KEYS:
            value = _last(timer, key)
            if value is not None:
                details[key] = value
        service_name = details.get("Unit") or name[: -len(".timer")] + ".service"
        details["Unit"] = service_name
        schedule = "; ".join(f"{key}={value}" for key, value, _ in triggers)
        raw = "\n".join(f"{key}={value}" for key, value, _ in triggers)
        line = triggers[0][2] if triggers else 1

        service_text, service_file, instance = _find_service(files, service_name)
        command = ""
        user: str | None = "root"
        env: Mapping[str, str] = _NO_ENV
        notes: tuple[str, ...] = ()
        reason: str | None = None
        kind = JOB
        if service_text is None:
            user = None
            notes = (NOTE_MISSING_SERVICE,)
        else:
            details["service"] = f"{source_dir.rstrip('/')}/{service_file}" if source_dir else service_file
            svc = _unit_values(_parse_unit(service_text), "Service")
            execs = [_strip_exec_prefix(value) for value, _ in svc.get("ExecStart", [])]
            if instance is not None:
                execs = [command.replace("%i", instance).replace("%I", instance) for command in execs]
            command = " && ".join(execs)
            user = _last(svc, "User") or "root"
            for key in ("WorkingDirectory", "Group", "Type", "EnvironmentFile", "TimeoutStartSec"):
                value = _last(svc, key)
                if value is not None:
                    details[key] = value
            if svc.get("Environment"):
                env = MappingProxyType(_environment(svc["Environment"]))
            if not execs:
                kind = INVALID
                reason = f"{service_file} has no ExecStart=; systemd refuses to start it"
        calendars = [value for key, value, _ in triggers if key == "OnCalendar"]
        monotonic = [key for key, _, _ in triggers if key != "OnCalendar"]
        cron, timezone = _calendar_crons(calendars)
        if monotonic and any(key not in ("OnBootSec", "OnStartupSec") for key in monotonic):
            # Repeating monotonic triggers fire relative to the last run, which
            # a file cannot tell; a calendar-only next run would mislead.
            cron = ()
        if not triggers:
            kind = INVALID
            reason = "the timer has no OnCalendar= or On*Sec= setting; systemd refuses to start it"
        elif kind == JOB and enabled_set is not None and name not in enabled_set:
            kind = DISABLED
            reason = "the timer is not enabled (no link in a *.wants directory) and not active"
        entries.append(
            Entry(
                host, user, source, line, kind, schedule, command, None, env, None, timezone, reason, raw,
                SYSTEMD, cron, MappingProxyType(details), notes,
            )
        )  # fmt: skip
    return entries


def _find_service(files: Mapping[str, str], service: str) -> tuple[str | None, str, str | None]:
    """(text, file name, template instance) of ``service``, trying ``foo@.service`` for ``foo@bar.service``."""
    if service in files:
        return files[service], service, None
    prefix, at, rest = service.partition("@")
    if at and rest.endswith(".service"):
        template = f"{prefix}@.service"
        if template in files:
            return files[template], template, rest[: -len(".service")]
    return None, service, None


# --------------------------------------------------------------------------
# systemd OnCalendar -> cron

_CAL_SHORTHANDS = {
    "minutely": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annually": "0 0 1 1 *",
    "quarterly": "0 0 1 1,4,7,10 *",
    "semiannually": "0 0 1 1,7 *",
}
_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
         ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday")),
        1,
    )
    for name in names
}  # fmt: skip
_TZ_TOKEN = re.compile(r"(?:UTC|GMT|[A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)+)\Z")
_CAL_INT = re.compile(r"[0-9]+\Z")


def calendar_to_cron(expr: str) -> tuple[str | None, str | None]:
    """Translate a systemd ``OnCalendar=`` expression to an equivalent cron
    expression and its timezone suffix: ``(cron, tz)``. ``cron`` is None when
    no exact translation exists (seconds, years, ``~`` last days, weekday
    together with a day of month, which cron would OR instead of AND)."""
    words = expr.split()
    tz = None
    if len(words) > 1 and _TZ_TOKEN.match(words[-1]):
        tz = words.pop()
    if len(words) == 1 and words[0].lower() in _CAL_SHORTHANDS:
        return _CAL_SHORTHANDS[words[0].lower()], tz
    weekday = date = time = None
    for word in words:
        if ":" in word and time is None:
            time = word
        elif "-" in word and date is None and time is None and word[0] in "*0123456789":
            date = word
        elif word[0].isalpha() and weekday is None and date is None and time is None:
            weekday = word
        else:
            return None, tz
    if not words:
        return None, tz
    dow = "*"
    if weekday is not None:
        dow_text = _cal_weekdays(weekday)
        if dow_text is None:
            return None, tz
        dow = dow_text
    year, month, day = "*", "*", "*"
    if date is not None:
        parts = date.split("-")
        if len(parts) == 3:
            year, month, day = parts
        elif len(parts) == 2:
            month, day = parts
        else:
            return None, tz
    if year != "*" or "~" in day:
        return None, tz
    hour, minute, second = "0", "0", "0"
    if time is not None:
        parts = time.split(":")
        if len(parts) == 3:
            hour, minute, second = parts
        elif len(parts) == 2:
            hour, minute = parts
        else:
            return None, tz
    if not _CAL_INT.match(second) or int(second) != 0:
        return None, tz
    fields = [
        _cal_component(minute, 0, 59),
        _cal_component(hour, 0, 23),
        _cal_component(day, 1, 31),
        _cal_component(month, 1, 12),
    ]
    if any(item is None for item in fields):
        return None, tz
    if fields[2] != "*" and dow != "*":
        return None, tz
    return " ".join([*(item for item in fields if item is not None), dow]), tz


def _cal_component(text: str, lo: int, hi: int) -> str | None:
    if text == "*":
        return "*"
    items = []
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and (not _CAL_INT.match(step) or int(step) == 0):
            return None
        if base == "*":
            value = "*"
        elif ".." in base:
            a, _, b = base.partition("..")
            if not (_CAL_INT.match(a) and _CAL_INT.match(b)) or not lo <= int(a) <= int(b) <= hi:
                return None
            value = f"{int(a)}-{int(b)}"
        elif _CAL_INT.match(base) and lo <= int(base) <= hi:
            value = str(int(base))
            if slash:
                value = "*" if int(base) == lo else f"{value}-{hi}"
        else:
            return None
        items.append(f"{value}/{int(step)}" if slash else value)
    return ",".join(items)


def _cal_weekdays(text: str) -> str | None:
    out = []
    for item in text.lower().split(","):
        a, dots, b = item.partition("..")
        if a not in _WEEKDAYS or (dots and b not in _WEEKDAYS):
            return None
        if dots:
            if _WEEKDAYS[a] > _WEEKDAYS[b]:
                return None
            out.append(f"{_WEEKDAYS[a]}-{_WEEKDAYS[b]}")
        else:
            out.append(str(_WEEKDAYS[a]))
    return ",".join(out)


def _calendar_crons(calendars: list[str]) -> tuple[tuple[str, ...], str | None]:
    crons: list[str] = []
    zones = set()
    for expr in calendars:
        cron, tz = calendar_to_cron(expr)
        if cron is None:
            return (), None
        crons.append(cron)
        zones.add(tz)
    if len(zones) > 1:
        return (), None
    return tuple(crons), (zones.pop() if zones else None)


# --------------------------------------------------------------------------
# systemctl list-timers --all

_TS = r"(?:n/a|-|[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z][\w+\-/]*| [+-]\d\d(?::?\d\d)?)?)"
_LIST_ROW = re.compile(
    rf"\s*(?P<next>{_TS})\s+(?P<left>n/a|-|.+?)\s+(?P<last>{_TS})\s+(?P<passed>n/a|-|.+?)"
    r"\s+(?P<unit>\S+\.timer)\s+(?P<activates>\S+)\s*\Z"
)


def parse_list_timers(text: str, *, host: str, source: str = "systemctl list-timers --all") -> list[Entry]:
    """Rows of ``systemctl list-timers --all`` (NEXT LEFT LAST PASSED UNIT
    ACTIVATES). The output names no schedule and no command, so entries carry
    the columns in ``details`` (``timer``, ``Unit``, ``NEXT``, ``LEFT``,
    ``LAST``, ``PASSED``); ``next_run`` reads ``NEXT``."""
    entries: list[Entry] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        match = _LIST_ROW.match(raw.rstrip("\r"))
        if match is None:
            continue
        details = {
            "timer": match["unit"],
            "Unit": match["activates"],
            "NEXT": match["next"],
            "LEFT": match["left"],
            "LAST": match["last"],
            "PASSED": match["passed"],
        }
        entries.append(
            Entry(
                host, None, source, lineno, JOB, schedule="", command="", raw=raw.rstrip("\r"),
                origin=LIST_TIMERS, details=MappingProxyType(details),
            )
        )  # fmt: skip
    return entries


# --------------------------------------------------------------------------
# run-parts directories

# Debian's run-parts runs only names made of letters, digits, '_' and '-'.
_RUN_PARTS_NAME = re.compile(r"[A-Za-z0-9_\-]+\Z")
# cronie's run-parts skips editor and package-manager leftovers.
_RUN_PARTS_JUNK = (
    "~",
    ",",
    ".rpmsave",
    ".rpmorig",
    ".rpmnew",
    ".swp",
    ".cfsaved",
    ".dpkg-old",
    ".dpkg-dist",
    ".dpkg-new",
)


def parse_run_parts(
    scripts: Mapping[str, str],
    *,
    host: str,
    directory: str,
    source_dir: str,
    schedule: str = "",
    cron: tuple[str, ...] = (),
    timezone: str | None = None,
    run_by: str | None = None,
    run_by_description: str | None = None,
) -> list[Entry]:
    """Scripts in ``/etc/cron.{hourly,daily,weekly,monthly}`` (name -> first
    bytes of the file), run as root by ``run-parts`` from the crontab or
    anacrontab line ``run_by`` with that line's ``schedule``/``cron``."""
    entries: list[Entry] = []
    for name in sorted(scripts):
        if name.startswith(".") or name.endswith(_RUN_PARTS_JUNK):
            continue
        text = scripts[name]
        first_line = text.split("\n", 1)[0].strip()
        details = {"directory": directory}
        if first_line.startswith("#!"):
            details["shebang"] = first_line[2:].strip()
        if run_by:
            details["run_by"] = run_by
        if run_by_description:
            details["run_by_description"] = run_by_description
        notes: tuple[str, ...] = ()
        if not _RUN_PARTS_NAME.match(name):
            notes = (NOTE_RUN_PARTS_SKIPS,)
        entries.append(
            Entry(
                host, "root", f"{source_dir.rstrip('/')}/{name}", 1, JOB, schedule,
                f"{directory.rstrip('/')}/{name}", None, _NO_ENV, None, timezone, None, first_line,
                RUN_PARTS, cron, MappingProxyType(details), notes,
            )
        )  # fmt: skip
    return entries


# --------------------------------------------------------------------------
# schedules: description and next run


@lru_cache(maxsize=4096)
def _explain(cron: str) -> str:
    if cron == "@reboot":
        return "At every boot (when cron starts)"
    try:
        return CronSim(cron, datetime(2000, 1, 1)).explain()
    except (CronSimError, ValueError, IndexError, KeyError):
        return cron


def schedule_description(entry: Entry) -> str:
    """The schedule in plain words, e.g. "At 03:00 every day (Asia/Seoul)"."""
    if entry.kind in (ENV,):
        return ""
    if entry.kind == INVALID:
        return f"never runs: {entry.reason}" if entry.reason else "never runs"
    tz_suffix = f" ({entry.timezone})" if entry.timezone else ""
    if entry.origin in (CRONTAB, SYSTEM_CRONTAB):
        if not entry.cron:
            return entry.schedule
        return _explain(entry.cron[0]) + ("" if entry.cron[0] == "@reboot" else tz_suffix)
    if entry.origin == ANACRONTAB:
        return _describe_anacron(entry)
    if entry.origin == SYSTEMD:
        return _describe_timer(entry, tz_suffix)
    if entry.origin == LIST_TIMERS:
        next_text = entry.details.get("NEXT", "n/a")
        if next_text in ("n/a", "-"):
            return "systemd timer, not scheduled (schedule not collected)"
        return f"systemd timer, next {next_text} (schedule not collected)"
    if entry.origin == RUN_PARTS:
        directory = entry.details.get("directory", "")
        when = entry.details.get("run_by_description")
        if when:
            return f"{when}, via run-parts {directory}"
        return f"via run-parts {directory} (no crontab or anacrontab line found that runs it)"
    return entry.schedule


def _describe_anacron(entry: Entry) -> str:
    period = entry.schedule
    days = _ANACRON_PERIODS.get(period) if period.startswith("@") else int(period) if period.isdigit() else None
    if period == "@monthly":
        text = "Once a month"
    elif days == 1:
        text = "Once a day"
    elif days == 7:
        text = "Once a week"
    elif days is not None:
        text = f"Once every {days} days"
    else:
        text = period
    delay = entry.details.get("delay", "")
    text += f" (anacron), {delay} min after anacron starts" if delay else " (anacron)"
    hours = entry.details.get("START_HOURS_RANGE")
    if hours:
        start, _, end = hours.partition("-")
        text += f", only between {start}:00 and {end}:00"
    random_delay = entry.details.get("RANDOM_DELAY")
    if random_delay and random_delay != "0":
        text += f", plus up to {random_delay} min random delay"
    return text


_MONOTONIC_WORDS = {
    "OnActiveSec": "{} after the timer is started",
    "OnBootSec": "{} after boot",
    "OnStartupSec": "{} after systemd starts",
    "OnUnitActiveSec": "every {} after it last started",
    "OnUnitInactiveSec": "{} after it last finished",
}


def _describe_timer(entry: Entry, tz_suffix: str) -> str:
    parts = []
    calendars = iter(entry.cron)
    for item in entry.schedule.split("; ") if entry.schedule else []:
        key, _, value = item.partition("=")
        if key == "OnCalendar":
            cron = next(calendars, None)
            parts.append(_explain(cron) + tz_suffix if cron else f'systemd calendar "{value}"')
        elif key in _MONOTONIC_WORDS:
            parts.append(_MONOTONIC_WORDS[key].format(value))
    text = "; ".join(parts) if parts else "no trigger"
    if entry.details.get("RandomizedDelaySec"):
        text += f", plus up to {entry.details['RandomizedDelaySec']} random delay"
    if systemd_bool(entry.details.get("Persistent", "")):
        text += ", missed runs caught up at boot"
    return text


def zone(name: str | None) -> dt_timezone | ZoneInfo | None:
    """The zone called ``name``, or None when it is unknown."""
    if not name:
        return None
    if name in ("UTC", "GMT", "Etc/UTC"):
        return dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def next_run(entry: Entry, after: datetime, host_tz: str | None = None) -> datetime | None:
    """When ``entry`` fires next after ``after`` (timezone-aware), in the
    entry's timezone, else ``host_tz``, else UTC. None when it never does by
    itself (disabled, invalid, @reboot, anacron, monotonic timers) or the
    timezone is unknown."""
    if after.tzinfo is None:
        raise ValueError("next_run needs a timezone-aware 'after'")
    if entry.kind != JOB:
        return None
    if entry.origin == LIST_TIMERS:
        return _list_timers_next(entry.details.get("NEXT", ""), after, host_tz)
    if not entry.cron or "@reboot" in entry.cron:
        return None
    tz = zone(entry.timezone or host_tz or "UTC")
    if tz is None:
        return None
    start = after.astimezone(tz)
    best: datetime | None = None
    for cron in entry.cron:
        try:
            candidate = next(CronSim(cron, start))
        except (CronSimError, StopIteration):
            continue
        if best is None or candidate < best:
            best = candidate
    return best


def fire_times(
    entry: Entry, after: datetime, until: datetime, host_tz: str | None = None, limit: int = 2000
) -> list[datetime]:
    """Fire times of a cron-style entry in ``(after, until]``, at most ``limit``."""
    if entry.kind != JOB or not entry.cron or "@reboot" in entry.cron:
        return []
    tz = zone(entry.timezone or host_tz or "UTC")
    if tz is None:
        return []
    out: list[datetime] = []
    start = after.astimezone(tz)
    for cron in entry.cron:
        count = 0
        try:
            for moment in CronSim(cron, start):
                if moment > until or count >= limit:
                    break
                out.append(moment)
                count += 1
        except CronSimError:
            continue
    out.sort()
    return out[:limit]


_LIST_TS = re.compile(r"[A-Z][a-z]{2} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?: (\S+))?\Z")


def _list_timers_next(text: str, after: datetime, host_tz: str | None) -> datetime | None:
    match = _LIST_TS.match(text)
    if match is None:
        return None
    naive = datetime.fromisoformat(match.group(1))
    label = match.group(2)
    moment: datetime | None = None
    if label in (None, "UTC", "GMT"):
        if label is not None:
            moment = naive.replace(tzinfo=dt_timezone.utc)
    elif label[0] in "+-":
        sign = 1 if label[0] == "+" else -1
        digits = label[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        moment = naive.replace(tzinfo=dt_timezone(sign * offset))
    if moment is None:
        # An abbreviation (KST, CEST): trust it only when it is what the
        # host's zone calls that moment.
        tz = zone(host_tz)
        if tz is None:
            return None
        local = naive.replace(tzinfo=tz)
        if label is not None and local.tzname() != label:
            return None
        moment = local
    return moment if moment > after else None


# --------------------------------------------------------------------------
# runtime guess

RUNTIMES: tuple[str, ...] = ("python", "php", "go-or-binary", "shell", "java", "node", "ruby", "perl")
_LANGUAGES = ("python", "php", "java", "node", "ruby", "perl")

# Wrappers that run another program, and their options that take a value.
_WRAPPERS: dict[str, frozenset[str]] = {
    name: frozenset(opts.split())
    for name, opts in {
        "nice": "-n --adjustment",
        "ionice": "-c -n -p -t --class --classdata",
        "timeout": "-s -k --signal --kill-after",
        "flock": "-w -E --timeout --wait --conflict-exit-code",
        "sudo": "-u -g -C -p -h -r -t -U -D --user --group --chdir",
        "runuser": "-u -g -G --user --group",
        "su": "-s -g -G --shell --group",
        "env": "-u -C -S --unset --chdir",
        "stdbuf": "-i -o -e",
        "taskset": "",
        "chronic": "",
        "cronic": "",
        "nohup": "",
        "time": "-f -o --format --output",
        "exec": "",
        "setsid": "",
        "run-one": "",
        "ifne": "",
        "lockrun": "-L --lockfile",
        "setlock": "",
        "xvfb-run": "",
    }.items()
}
# Wrappers whose first operand is not the program: the duration, lock, mask, user.
_WRAPPER_OPERAND = frozenset({"timeout", "flock", "setlock", "taskset", "su"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})
_SHELL_KEYWORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "for", "exec"})
_SKIP_SEGMENT = frozenset(
    {"cd", "export", "source", ".", "test", "[", "[[", "umask", "sleep", "true", "false", "set", "ulimit",
     "echo", "printf", "date", "mkdir", "fi", "done", "!", "unset", "trap", "wait"}
)  # fmt: skip
_SEPARATORS = frozenset({"&&", "||", ";", "|", "|&", "&", "(", ")", "{", "}", ";;"})
_SHELL_TOOLS = frozenset(
    """run-parts curl wget find rm mv cp tar gzip gunzip bzip2 xz zip unzip rsync scp ssh sftp mysqldump
    mysql mariadb pg_dump pg_dumpall psql redis-cli mongodump mongosh logrotate echo printf cat grep sed awk
    touch chmod chown ln ls du df tee logger mail mailx sendmail test xargs kill pkill killall systemctl
    service docker docker-compose podman kubectl git make ntpdate certbot truncate split sort uniq cut head
    tail wc date sleep true false savelog ps free uptime sync fstrim mount umount tmpwatch tmpreaper
    aws gsutil rclone s3cmd pgrep pidof invoke-rc.d command supervisorctl""".split()
)
_EXTENSIONS = {
    ".py": "python",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".jar": "java",
    ".js": "node",
    ".mjs": "node",
    ".cjs": "node",
    ".ts": "node",
    ".rb": "ruby",
    ".pl": "perl",
    ".go": "go-or-binary",
}
_INTERPRETERS = (
    (re.compile(r"(?:(?:python|pypy)[0-9.]*|manage\.py|celery|uv|poetry|pipenv|pytest)\Z"), "python"),
    (re.compile(r"(?:php[0-9.]*(?:-cli)?|artisan|wp|composer|drush)\Z"), "php"),
    (re.compile(r"(?:java|mvn|gradle)\Z"), "java"),
    (re.compile(r"(?:node|nodejs|npm|npx|yarn|pnpm|deno|bun|ts-node)\Z"), "node"),
    (re.compile(r"(?:ruby[0-9.]*|rake|rails|bundle)\Z"), "ruby"),
    (re.compile(r"perl[0-9.]*\Z"), "perl"),
    (re.compile(r"go\Z"), "go-or-binary"),
)
_REDIRECTS = frozenset({">", ">>", "<", "<<", ">&", "&>", "&>>", "<&", ">|", "<<<", ">>&"})
_REDIRECT_CHARS = frozenset("<>&|")


def guess_runtime(command: str, shebang: str | None = None) -> str:
    """The language or runtime a command most likely runs: one of
    ``RUNTIMES`` (python, php, go-or-binary, shell, java, node, ruby, perl),
    or "" for an empty command.

    Looks through ``cd /x &&``, environment assignments, ``/usr/bin/env``,
    ``nice``, ``flock -n FILE``, ``timeout 1h``, ``sudo -u USER``,
    ``sh -c "..."`` and redirections to the program that does the work. An
    executable without a known extension is "go-or-binary". ``shebang`` (a
    script's ``#!`` line without the ``#!``) decides for a script file."""
    if shebang:
        from_shebang = _guess(shebang, 0)
        if from_shebang:
            return from_shebang
    return _guess(command, 0)


_SUBSTITUTION = re.compile(r"\$\([^()]*\)|`[^`]*`")


def _tokens(command: str) -> list[str]:
    # $(date +%F) and `hostname` only feed arguments; keep them out of the way
    command = _SUBSTITUTION.sub("_", command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to blanks
        return command.split()


def _guess(command: str, depth: int) -> str:
    if not command.strip() or depth > 4:
        return ""
    segments: list[list[str]] = [[]]
    tokens = _tokens(command)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in _SEPARATORS:
            segments.append([])
        elif token in _REDIRECTS or set(token) <= _REDIRECT_CHARS:
            index += 1  # its target: a file, or the descriptor of 2>&1
        elif token.isdigit() and index < len(tokens) and tokens[index] in _REDIRECTS:
            continue  # the "2" of "2>"
        else:
            segments[-1].append(token)
    words_list = []
    for words in segments:
        while words and words[0] in _SHELL_KEYWORDS:
            words = words[1:]
        if words:
            words_list.append(words)
    useful = [words for words in words_list if words[0] not in _SKIP_SEGMENT]
    # "pgrep -f x || php artisan queue:work": the language run anywhere in
    # the line says more than the guard in front of it.
    guesses = [runtime for runtime in (_guess_words(words, depth) for words in useful or words_list) if runtime]
    for preferred in (_LANGUAGES, ("go-or-binary",), ("shell",)):
        for runtime in guesses:
            if runtime in preferred:
                return runtime
    return ""


def _guess_words(words: list[str], depth: int) -> str:
    index = 0
    while index < len(words):
        word = words[index]
        name, eq, _ = word.partition("=")
        if eq and name.isidentifier():
            index += 1  # FOO=bar prefix
            continue
        base = word.rsplit("/", 1)[-1]
        if base in _WRAPPERS:
            index = _skip_wrapper(base, words, index + 1)
            if index < 0:  # flock FILE -c "string", su USER -c "string"
                return _guess(words[-1], depth + 1)
            continue
        if base in _SHELLS:
            rest = words[index + 1 :]
            for position, option in enumerate(rest):
                if option.startswith("-") and not option.startswith("--") and "c" in option:
                    if position + 1 < len(rest):
                        return _guess(rest[position + 1], depth + 1) or "shell"
            script = next((w for w in rest if not w.startswith("-")), None)
            by_extension = _by_extension(script) if script else ""
            return by_extension or "shell"
        for pattern, runtime in _INTERPRETERS:
            if pattern.match(base):
                return runtime
        by_extension = _by_extension(base)
        if by_extension:
            return by_extension
        if base in _SHELL_TOOLS:
            return "shell"
        return "go-or-binary"
    return ""


def _by_extension(word: str) -> str:
    base = word.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return _EXTENSIONS.get(base[dot:].lower(), "") if dot > 0 else ""


def _skip_wrapper(name: str, words: list[str], index: int) -> int:
    """Index of the wrapped program after ``name``'s options and operands,
    or -1 when the wrapped command is one ``-c`` string (the last word)."""
    with_value = _WRAPPERS[name]
    operand_done = name not in _WRAPPER_OPERAND
    while index < len(words):
        word = words[index]
        if word == "--":
            return index + 1
        if word in ("-c", "--command") and name in ("flock", "su", "runuser"):
            return -1
        if word == "-" and name == "su":
            index += 1
            continue
        if word.startswith("-") and len(word) > 1:
            # "-u www" or a cluster ending in a value option: "-iu www", "-xw 10"
            takes_value = word in with_value or (not word.startswith("--") and "-" + word[-1] in with_value)
            index += 2 if takes_value and "=" not in word else 1
            continue
        if name == "env" and "=" in word:
            index += 1
            continue
        if not operand_done:
            operand_done = True
            index += 1
            continue
        return index
    return index


_LOG_SINKS = frozenset({"logger", "systemd-cat", "tee", "mail", "mailx", "sendmail", "ts", "rotatelogs", "multilog"})
_MAIL_ON_FAILURE = frozenset({"chronic", "cronic"})


def output_redirection(command: str) -> tuple[bool, bool]:
    """Whether a cron command takes care of its (stdout, stderr) itself,
    by redirection, a pipe into a log sink (``logger``, ``tee``...) or a
    ``chronic``/``cronic`` wrapper. What it leaves alone, cron mails."""
    tokens = _tokens(command)
    stdout = stderr = False
    # "2>&1" sends stderr where stdout points at that moment: a file already
    # named, else the pipe (if one follows) or cron's mail.
    err_follows_pipe = False
    for index, token in enumerate(tokens):
        before = tokens[index - 1] if index else ""
        after = tokens[index + 1] if index + 1 < len(tokens) else ""
        base = token.rsplit("/", 1)[-1]
        if index == 0 and base in _MAIL_ON_FAILURE:
            return True, True
        if token in ("&>", "&>>", ">&") and not after.isdigit():
            stdout = stderr = True
        elif token in (">", ">>", ">|"):
            if before == "2":
                stderr = True
            elif before in ("", "1") or not before.isdigit():
                stdout = True
        elif token == ">&" and after == "1" and before == "2":
            if stdout:
                stderr = True
            else:
                err_follows_pipe = True
        elif token in ("|", "|&"):
            if after.rsplit("/", 1)[-1] in _LOG_SINKS:
                stdout = True
                stderr = stderr or token == "|&" or err_follows_pipe
            err_follows_pipe = False
    return stdout, stderr


__all__ = [
    "ANACRONTAB",
    "CRONTAB",
    "DISABLED",
    "ENV",
    "Entry",
    "INVALID",
    "JOB",
    "KINDS",
    "LIST_TIMERS",
    "RUNTIMES",
    "RUN_PARTS",
    "SYSTEMD",
    "SYSTEM_CRONTAB",
    "calendar_to_cron",
    "fire_times",
    "guess_runtime",
    "next_run",
    "output_redirection",
    "parse_anacrontab",
    "parse_crontab",
    "parse_list_timers",
    "parse_run_parts",
    "parse_systemd_units",
    "schedule_description",
    "split_percent",
    "systemd_bool",
]
