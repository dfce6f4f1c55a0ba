"""What discovery found: hosts, entries, and the findings worth a look.

Pure: ``findings`` and ``to_json`` count from ``Inventory.collected_at``,
the moment the collector read the clock, never from the clock itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from corral.discover import parse
from corral.discover.parse import Entry

OK = "ok"
UNREACHABLE = "unreachable"
AUTH_FAILED = "auth_failed"
PERMISSION_DENIED = "permission_denied"
ERROR = "error"
HOST_KEY_UNKNOWN = "host_key_unknown"
"""The host's key is not in known_hosts (first contact; see ``--accept-new``)."""
HOST_KEY_MISMATCH = "host_key_mismatch"
"""The host presented a key other than the one known_hosts holds for it."""
HOST_STATUSES: tuple[str, ...] = (
    OK,
    UNREACHABLE,
    AUTH_FAILED,
    HOST_KEY_UNKNOWN,
    HOST_KEY_MISMATCH,
    PERMISSION_DENIED,
    ERROR,
)

JSON_VERSION = 1


@dataclass(frozen=True)
class Host:
    """One host as the collector saw it. ``status`` is ``ok`` even when some
    single files failed (see ``file_errors``); it is ``permission_denied``
    when any file or directory could not be read for lack of rights."""

    name: str
    status: str = OK
    error: str | None = None
    timezone: str | None = None
    files: tuple[str, ...] = ()
    """Sources read (as in ``Entry.source``)."""
    file_errors: tuple[tuple[str, str], ...] = ()
    """(source, message) for files or directories that could not be read."""


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    entries: tuple[Entry, ...]
    collected_at: datetime
    """When the collection was read; next runs and overlaps count from here."""

    def host(self, name: str) -> Host | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None

    def host_timezone(self, name: str) -> str | None:
        host = self.host(name)
        return host.timezone if host is not None else None


def merge(inventories: Iterable[Inventory], collected_at: datetime | None = None) -> Inventory:
    """One inventory from several collections (e.g. ``--local`` and ``--from-dir``)."""
    items = list(inventories)
    if not items and collected_at is None:
        raise ValueError("merge needs at least one inventory or a collected_at")
    when = collected_at or min(item.collected_at for item in items)
    return Inventory(
        tuple(host for item in items for host in item.hosts),
        tuple(entry for item in items for entry in item.entries),
        when,
    )


@dataclass(frozen=True)
class Finding:
    code: str
    message: str


# Finding codes
INVALID = "invalid"
DISABLED = "disabled"
EVERY_MINUTE = "every_minute"
RUNS_AS_ROOT = "runs_as_root"
NO_OUTPUT_REDIRECTION = "no_output_redirection"
SAME_COMMAND_ON_HOSTS = "same_command_on_hosts"
OVERLAP = "overlap"
PERSISTENT_TIMER = "persistent_timer"
BAD_TIMEZONE = "bad_timezone"
FINDING_CODES: tuple[str, ...] = (
    INVALID,
    DISABLED,
    EVERY_MINUTE,
    RUNS_AS_ROOT,
    NO_OUTPUT_REDIRECTION,
    SAME_COMMAND_ON_HOSTS,
    OVERLAP,
    PERSISTENT_TIMER,
    BAD_TIMEZONE,
    parse.NOTE_CRLF,
    parse.NOTE_TZ_ENV_ONLY,
    parse.NOTE_USER_FIELD_IN_USER_CRONTAB,
    parse.NOTE_MISSING_SERVICE,
    parse.NOTE_RUN_PARTS_SKIPS,
    parse.NOTE_CRON_SKIPS_FILE,
)

_MAILING_ORIGINS = (parse.CRONTAB, parse.SYSTEM_CRONTAB, parse.ANACRONTAB)
_CRON_ORIGINS = (parse.CRONTAB, parse.SYSTEM_CRONTAB)
_EVERY = frozenset({"*", "*/1", "0-59", "0-23", "1-31", "1-12", "0-7", "0-6"})


def findings(
    inventory: Inventory,
    *,
    overlap_minutes: float = 10,
    horizon: timedelta = timedelta(days=35),
) -> list[tuple[Finding, ...]]:
    """Findings for each entry, in the order of ``inventory.entries``.

    Overlap compares fire times of entries running the same command (on one
    host or several) from ``collected_at`` over ``horizon``: two fires
    within ``overlap_minutes`` of each other are reported on both entries.
    Entries of the distribution's own housekeeping (run-parts, logrotate...)
    get no root, output or duplicate findings: every host has them.
    """
    found: list[list[Finding]] = [[] for _ in inventory.entries]
    for index, entry in enumerate(inventory.entries):
        found[index].extend(_own_findings(entry, inventory.host_timezone(entry.host)))
    _same_command(inventory, found)
    _overlaps(inventory, found, timedelta(minutes=overlap_minutes), horizon)
    return [tuple(items) for items in found]


def _own_findings(entry: Entry, host_tz: str | None) -> list[Finding]:
    out: list[Finding] = []
    distribution = parse.NOTE_DISTRIBUTION in entry.notes
    if entry.kind == parse.INVALID:
        out.append(Finding(INVALID, entry.reason or "cron would reject this line"))
    elif entry.kind == parse.DISABLED:
        if entry.origin in (parse.SYSTEMD,):
            out.append(Finding(DISABLED, entry.reason or "the timer is not enabled: it does not run"))
        else:
            out.append(Finding(DISABLED, "commented out: it does not run (kept here so it is not forgotten)"))
    if entry.kind == parse.JOB:
        # systemd never starts a unit that is still active, so only cron piles up copies
        if entry.origin in _CRON_ORIGINS and entry.cron and _every_minute(entry.cron[0]):
            out.append(
                Finding(
                    EVERY_MINUTE,
                    "runs every minute; cron starts another copy even while the previous one is still running",
                )
            )
        if entry.user == "root" and not distribution:
            out.append(Finding(RUNS_AS_ROOT, "runs as root; a dedicated user limits what a bad run can break"))
        if entry.origin in _MAILING_ORIGINS and entry.command and not distribution:
            message = _output_message(entry)
            if message:
                out.append(Finding(NO_OUTPUT_REDIRECTION, message))
        if entry.origin == parse.SYSTEMD and parse.systemd_bool(entry.details.get("Persistent", "")):
            out.append(
                Finding(
                    PERSISTENT_TIMER,
                    "Persistent=true: a run missed while the host was off happens right after boot; "
                    "corral's equivalent is catch-up of the latest missed run",
                )
            )
        tz = entry.timezone or host_tz
        if tz and parse.zone(tz) is None:
            out.append(Finding(BAD_TIMEZONE, f'timezone "{tz}" is unknown here; its next runs cannot be computed'))
    for note in entry.notes:
        message = _note_message(note, entry)
        if message:
            out.append(Finding(note, message))
    return out


def _every_minute(cron: str) -> bool:
    return all(part in _EVERY for part in cron.split())


def _output_message(entry: Entry) -> str | None:
    stdout, stderr = parse.output_redirection(entry.command)
    if stdout and stderr:
        return None
    if entry.mailto == "":
        where = "MAILTO is empty, so it is thrown away"
    elif entry.mailto:
        where = f"cron mails it to {entry.mailto} (mail noise, or lost if mail is not set up)"
    else:
        owner = entry.user or "the crontab's owner"
        where = f"cron mails it to {owner} on {entry.host} (rarely read, or lost if mail is not set up)"
    if not stdout and not stderr:
        return f"output is not redirected: {where}"
    if not stderr:
        return f"stderr is not redirected: error output goes to mail; {where}"
    return f"stdout is not redirected: {where}"


def _note_message(note: str, entry: Entry) -> str | None:
    if note == parse.NOTE_CRLF:
        return (
            "the line ends with a carriage return (Windows line endings): cron passes it on as part of "
            "the command or value, which usually breaks it"
        )
    if note == parse.NOTE_TZ_ENV_ONLY:
        return (
            f"only TZ={entry.timezone} is set: cronie schedules by CRON_TZ=, and TZ= may change only the "
            "job's environment; check which clock the host's cron really uses"
        )
    if note == parse.NOTE_USER_FIELD_IN_USER_CRONTAB:
        head = entry.command.split(None, 1)[0] if entry.command else ""
        return (
            f'"{head}" looks like a user field, but a user crontab has none: cron runs "{head}" as the '
            "command, which fails"
        )
    if note == parse.NOTE_MISSING_SERVICE:
        unit = entry.details.get("Unit", "its service")
        return (
            f"the timer activates {unit}, which is not among the collected unit files "
            "(it may live in /usr/lib/systemd/system); the command is unknown"
        )
    if note == parse.NOTE_RUN_PARTS_SKIPS:
        return (
            "Debian's run-parts skips scripts whose names contain anything but letters, digits, "
            "'_' and '-' (such as a '.'); RHEL's run-parts runs it"
        )
    if note == parse.NOTE_CRON_SKIPS_FILE:
        return (
            "Debian's cron ignores files in /etc/cron.d whose names contain anything but letters, "
            "digits, '_' and '-' (such as a '.'); cronie reads it"
        )
    return None


def _command_key(command: str) -> str:
    return " ".join(command.split())


def _comparable(entry: Entry) -> bool:
    return entry.kind == parse.JOB and bool(entry.command) and parse.NOTE_DISTRIBUTION not in entry.notes


def _same_command(inventory: Inventory, found: list[list[Finding]]) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(inventory.entries):
        if _comparable(entry):
            groups[_command_key(entry.command)].append(index)
    for indexes in groups.values():
        hosts = sorted({inventory.entries[i].host for i in indexes})
        if len(hosts) < 2:
            continue
        message = f"the same command runs on {len(hosts)} hosts: {', '.join(hosts)}"
        for index in indexes:
            found[index].append(Finding(SAME_COMMAND_ON_HOSTS, message))


def _overlaps(inventory: Inventory, found: list[list[Finding]], window: timedelta, horizon: timedelta) -> None:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(inventory.entries):
        if _comparable(entry) and entry.cron and "@reboot" not in entry.cron:
            groups[_command_key(entry.command)].append(index)
    start = inventory.collected_at
    until = start + horizon
    for indexes in groups.values():
        if len(indexes) < 2:
            continue
        times = {
            i: parse.fire_times(
                inventory.entries[i], start, until, inventory.host_timezone(inventory.entries[i].host), limit=1500
            )
            for i in indexes
        }
        for position, a in enumerate(indexes):
            for b in indexes[position + 1 :]:
                close = _closest(times[a], times[b], window)
                if close is None:
                    continue
                at_a, at_b = close
                for mine, other, when in ((a, b, at_a), (b, a, at_b)):
                    entry = inventory.entries[other]
                    gap = abs((at_a - at_b).total_seconds()) / 60
                    how = "at the same minute as" if gap < 1 else f"within {gap:.0f} min of"
                    found[mine].append(
                        Finding(
                            OVERLAP,
                            f"fires {how} the same command at {entry.host} {entry.source}:{entry.line} "
                            f"(first around {when.isoformat(timespec='minutes')}); if a run takes longer, "
                            "they run at the same time",
                        )
                    )


def _closest(a: Sequence[datetime], b: Sequence[datetime], window: timedelta) -> tuple[datetime, datetime] | None:
    """The first pair (x from a, y from b) with |x - y| <= window, both lists sorted."""
    if not a or not b:
        return None
    end = min(a[-1], b[-1]) + window
    i = j = 0
    while i < len(a) and j < len(b):
        x, y = a[i], b[j]
        if min(x, y) > end:
            return None
        if abs(x - y) <= window:
            return x, y
        if x < y:
            i += 1
        else:
            j += 1
    return None


# --------------------------------------------------------------------------
# JSON


def _timezone_source(entry: Entry, host_tz: str | None) -> str | None:
    if entry.timezone:
        if entry.origin == parse.SYSTEMD:
            return "OnCalendar"
        if "CRON_TZ" in entry.env:
            return "CRON_TZ"
        if "TZ" in entry.env:
            return "TZ"
        return "entry"
    return "host" if host_tz else None


def entry_to_json(entry: Entry, host_tz: str | None, now: datetime, found: Sequence[Finding] = ()) -> dict[str, Any]:
    """One entry as JSON; ``timezone`` is the one its schedule runs in (its
    own, else the host's), ``next_run`` an ISO time with offset or null."""
    upcoming = parse.next_run(entry, now, host_tz)
    shebang = entry.details.get("shebang") if entry.origin == parse.RUN_PARTS else None
    return {
        "host": entry.host,
        "user": entry.user,
        "source": entry.source,
        "line": entry.line,
        "kind": entry.kind,
        "origin": entry.origin,
        "schedule": entry.schedule,
        "cron": list(entry.cron),
        "description": parse.schedule_description(entry),
        "next_run": upcoming.isoformat() if upcoming is not None else None,
        "timezone": entry.timezone or host_tz,
        "timezone_source": _timezone_source(entry, host_tz),
        "command": entry.command,
        "stdin": entry.stdin,
        "runtime": parse.guess_runtime(entry.command, shebang) if entry.kind != parse.ENV else "",
        "env": dict(entry.env),
        "mailto": entry.mailto,
        "reason": entry.reason,
        "details": dict(entry.details),
        "notes": list(entry.notes),
        "findings": [{"code": item.code, "message": item.message} for item in found],
        "raw": entry.raw,
    }


def to_json(inventory: Inventory, *, overlap_minutes: float = 10) -> dict[str, Any]:
    """The inventory as a JSON-ready dict: ``hosts`` and ``entries`` (see
    ``entry_to_json``), with findings attached to each entry."""
    per_entry = findings(inventory, overlap_minutes=overlap_minutes)
    now = inventory.collected_at
    return {
        "version": JSON_VERSION,
        "collected_at": now.isoformat(),
        "hosts": [
            {
                "name": host.name,
                "status": host.status,
                "error": host.error,
                "timezone": host.timezone,
                "files": list(host.files),
                "file_errors": [{"source": source, "error": message} for source, message in host.file_errors],
            }
            for host in inventory.hosts
        ],
        "entries": [
            entry_to_json(entry, inventory.host_timezone(entry.host), now, found)
            for entry, found in zip(inventory.entries, per_entry)
        ],
    }


def from_json(data: Mapping[str, Any]) -> Inventory:
    """Rebuild an :class:`Inventory` from ``to_json`` output (for import and
    re-analysis). Derived fields (description, next run, findings) are
    recomputed, not read."""
    if data.get("version") != JSON_VERSION:
        raise ValueError(f"unsupported inventory version {data.get('version')!r}; expected {JSON_VERSION}")
    hosts = tuple(
        Host(
            name=item["name"],
            status=item.get("status", OK),
            error=item.get("error"),
            timezone=item.get("timezone"),
            files=tuple(item.get("files", ())),
            file_errors=tuple((e["source"], e["error"]) for e in item.get("file_errors", ())),
        )
        for item in data.get("hosts", ())
    )
    entries = tuple(
        Entry(
            host=item["host"],
            user=item.get("user"),
            source=item["source"],
            line=item["line"],
            kind=item["kind"],
            schedule=item.get("schedule", ""),
            command=item.get("command", ""),
            stdin=item.get("stdin"),
            env=MappingProxyType(dict(item.get("env", {}))),
            mailto=item.get("mailto"),
            timezone=None if item.get("timezone_source") in ("host", None) else item.get("timezone"),
            reason=item.get("reason"),
            raw=item.get("raw", ""),
            origin=item.get("origin", parse.CRONTAB),
            cron=tuple(item.get("cron", ())),
            details=MappingProxyType(dict(item.get("details", {}))),
            notes=tuple(item.get("notes", ())),
        )
        for item in data.get("entries", ())
    )
    return Inventory(hosts, entries, datetime.fromisoformat(data["collected_at"]))


__all__ = [
    "Finding",
    "HOST_STATUSES",
    "Host",
    "Inventory",
    "entry_to_json",
    "findings",
    "from_json",
    "merge",
    "to_json",
]
