"""Turn a discovery inventory into a corral job file.

One job per cron-like entry that corral can run the same way: the schedule
as written (its exact cron equivalent), the timezone cron used for it
(``CRON_TZ``/``TZ`` on the line, else the host's), the environment lines in
force at that line, and labels naming the host and user so the job can later
run on that host's worker. Entries corral cannot reproduce exactly
(``@reboot``, anacron periods, monotonic systemd timers, lines cron rejects,
commented-out lines) are listed at the end of the file with the reason, so
nothing found is silently dropped.

The output is YAML text written by hand (PyYAML cannot write comments);
every scalar is a JSON string, which YAML reads back unchanged. The result is
checked with :func:`corral.config.loads` before it is returned.
"""

from __future__ import annotations

import json
import uuid
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from corral import config, errors, schedule
from corral.discover import inventory as inv
from corral.discover import parse
from corral.discover.parse import Entry

OVERLAP_CHOICES = ("skip", "queue_one", "queue_all", "replace", "allow")
_IMPORTABLE_ORIGINS = (parse.CRONTAB, parse.SYSTEM_CRONTAB, parse.SYSTEMD, parse.RUN_PARTS)
# Environment lines that cron itself consumes; they are not the job's environment.
_CRON_ONLY_ENV = frozenset({"MAILTO", "CRON_TZ", "SHELL", "MAILFROM", "CONTENT_TYPE", "CONTENT_TRANSFER_ENCODING", "RANDOM_DELAY"})
_SLUG_DROP = re.compile(r"[^a-z0-9_.-]+")
_INTERPRETERS = frozenset(
    """sh bash dash zsh ksh python python2 python3 php php-cli node nodejs ruby perl java go env nice ionice
    timeout flock sudo su setlock taskset chronic cronic nohup exec time run-one""".split()
)
_NOISE_WORDS = frozenset({"cd", "&&", "||", ";", "|", "then", "do", "if", "source", ".", "-c", "run", "artisan"})
_VERSIONED_INTERPRETER = re.compile(r"(?:python|php|ruby|perl|node|java|pypy)[0-9.]*\Z")
_SCRIPT_EXTENSIONS = (".py", ".php", ".sh", ".bash", ".pl", ".rb", ".js", ".mjs", ".jar", ".go", ".exe")
_MAX_NAME = 48


class ImportFailed(errors.CorralError):
    """The inventory cannot be turned into a job file."""


@dataclass
class Skipped:
    entry: Entry
    reason: str


@dataclass
class ImportedJob:
    name: str
    entry: Entry
    run: str | list[str]
    schedules: list[str]
    timezone: str
    env: dict[str, str]
    labels: dict[str, str]
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    text: str
    jobs: list[ImportedJob]
    skipped: list[Skipped]


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _why_not(entry: Entry, host_tz: str | None) -> str | None:
    """Why ``entry`` is not imported as a job (None: it is)."""
    if entry.kind == parse.ENV:
        return None
    if entry.kind == parse.INVALID:
        return f"cron rejects this line: {entry.reason or 'invalid'}"
    if entry.kind == parse.DISABLED:
        if entry.origin == parse.SYSTEMD:
            return "the timer is not enabled on the host, so it never runs"
        return "commented out on the host, so it never runs"
    if parse.NOTE_DISTRIBUTION in entry.notes:
        return "the distribution's own housekeeping; leave it to the operating system"
    if entry.origin == parse.LIST_TIMERS:
        return "only seen in systemctl list-timers; its unit file (and so its schedule) was not collected"
    if not entry.command.strip():
        if entry.origin == parse.SYSTEMD:
            return "the timer's service was not collected, so its command is unknown"
        return "the command is empty"
    if "@reboot" in entry.cron or entry.schedule == "@reboot":
        return "@reboot runs when cron starts; corral has no at-boot schedule (start it from the host's init system)"
    if entry.origin == parse.ANACRONTAB:
        return "anacron runs it once per period whenever the machine is up; no cron schedule fires at the same times"
    if entry.origin not in _IMPORTABLE_ORIGINS:
        return f"{entry.origin} entries are not imported"
    if not entry.cron:
        if entry.origin == parse.SYSTEMD:
            return "the timer counts from boot or from its last run (OnBootSec=, OnUnitActiveSec=...); no cron schedule is equivalent"
        if entry.origin == parse.RUN_PARTS:
            return "run by anacron or by no crontab line found; no cron schedule is equivalent"
        return "no exact cron schedule for it"
    tz = entry.timezone or host_tz or "UTC"
    if parse.zone(tz) is None:
        return f'its timezone "{tz}" is unknown here'
    for cron in entry.cron:
        try:
            schedule.parse(cron, timezone=tz)
        except errors.CorralError as exc:
            return f'corral cannot use the schedule "{cron}": {exc}'
    return None


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=False)
    except ValueError:
        return command.split()


def _slug(text: str) -> str:
    text = _SLUG_DROP.sub("-", text.lower()).strip("-._")
    return re.sub(r"-{2,}", "-", text)


def base_name(entry: Entry) -> str:
    """A readable job name from the command: the script or program it runs,
    plus its first plain argument (``php artisan report:monthly`` gives
    ``artisan-report-monthly``)."""
    if entry.origin == parse.SYSTEMD:
        timer = _slug(PurePosixPath(entry.source).name.removesuffix(".timer"))
        if timer:
            return timer[:_MAX_NAME].strip("-._") or "timer"
    words = _words(entry.command)
    picked: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word == "cd":
            skip_next = True
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word) or word.startswith("-"):
            continue
        if any(word.startswith(mark) for mark in (">", "<", "2>", "1>", "&>")) or word in ("&&", "||", ";", "|", "&"):
            if picked:
                break
            continue
        if word.isdigit() or word.startswith("/dev/") or word.endswith((".lock", ".pid")):
            continue
        name = PurePosixPath(word).name
        if name in _INTERPRETERS or name in _NOISE_WORDS or _VERSIONED_INTERPRETER.match(name):
            continue
        stem = name[: -len(PurePosixPath(name).suffix)] if name.endswith(_SCRIPT_EXTENSIONS) else name
        slug = _slug(stem)
        if slug:
            picked.append(slug)
        if len(picked) == 2 or (picked and "/" in word):
            break
    name = "-".join(picked) or _slug(entry.command.split()[0] if entry.command.split() else "") or "job"
    name = name[:_MAX_NAME].strip("-._")
    if not name or not name[0].isalnum():
        name = "job-" + name
    return name[:_MAX_NAME]


def _unique_names(items: list[tuple[Entry, str]]) -> list[str]:
    """Names for every (entry, base) pair: the base alone when unique; with
    the host when the same base is found on several hosts; then numbered."""
    hosts: dict[str, set[str]] = {}
    for entry, base in items:
        hosts.setdefault(base, set()).add(entry.host)
    names: list[str] = []
    taken: set[str] = set()
    for entry, base in items:
        candidate = base if len(hosts[base]) == 1 else f"{base}-{_slug(entry.host)}"[:60].strip("-._")
        name = candidate
        number = 2
        while name in taken:
            name = f"{candidate}-{number}"
            number += 1
        taken.add(name)
        names.append(name)
    return names


def _run_value(entry: Entry) -> str | list[str]:
    command = entry.command
    if entry.stdin is not None:
        # cron feeds the text after the first % to the command's stdin
        command = f"printf '%s' {shlex.quote(entry.stdin)} | {{ {command}\n}}"
    shell = entry.env.get("SHELL") if entry.origin in (parse.CRONTAB, parse.SYSTEM_CRONTAB) else None
    if shell and shell not in ("/bin/sh", "sh"):
        return [shell, "-c", command]
    return command


def _job_env(entry: Entry) -> dict[str, str]:
    if entry.origin not in (parse.CRONTAB, parse.SYSTEM_CRONTAB, parse.SYSTEMD):
        return {}
    return {key: str(value) for key, value in entry.env.items() if key not in _CRON_ONLY_ENV}


def plan(inventory: inv.Inventory, *, overlap: str = "skip") -> tuple[list[ImportedJob], list[Skipped]]:
    """Decide, entry by entry, what becomes a job and what is left out (and why)."""
    if overlap not in OVERLAP_CHOICES:
        raise ImportFailed(f'overlap "{overlap}" is not one of {", ".join(OVERLAP_CHOICES)}')
    chosen: list[tuple[Entry, str]] = []
    skipped: list[Skipped] = []
    for entry in inventory.entries:
        reason = _why_not(entry, inventory.host_timezone(entry.host))
        if entry.kind == parse.ENV:
            continue
        if reason is not None:
            skipped.append(Skipped(entry, reason))
            continue
        chosen.append((entry, base_name(entry)))
    jobs = []
    for (entry, _), name in zip(chosen, _unique_names(chosen)):
        labels = {"host": entry.host}
        if entry.user:
            labels["user"] = entry.user
        jobs.append(
            ImportedJob(
                name=name,
                entry=entry,
                run=_run_value(entry),
                schedules=list(entry.cron),
                timezone=entry.timezone or inventory.host_timezone(entry.host) or "UTC",
                env=_job_env(entry),
                labels=labels,
            )
        )
    return jobs, skipped


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in text.splitlines() or [""]]


def _mapping(values: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{_q(key)}: {_q(value)}" for key, value in values.items()) + "}"


def render(
    inventory: inv.Inventory,
    jobs: Iterable[ImportedJob],
    skipped: Iterable[Skipped],
    *,
    overlap: str = "skip",
    monitor_only: bool = False,
    origin: str = "",
    monitor_grace: str = "30m",
) -> str:
    jobs = list(jobs)
    skipped = list(skipped)
    hosts = ", ".join(host.name for host in inventory.hosts) or "no hosts"
    lines = [
        f"# Imported by `corral import`{f' from {origin}' if origin else ''} "
        f"(collected {inventory.collected_at.isoformat(timespec='seconds')}; hosts: {hosts}).",
        f"# {len(jobs)} job(s) imported, {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} left out (listed at the end).",
        "# Each job keeps its crontab schedule, timezone and environment lines; labels say where it ran.",
        f"# overlap: {overlap} for every job (cron starts a new copy even while the previous one still runs).",
        "# cron starts jobs in the user's home directory and mails their output; set cwd and alerts where a job relies on that.",
    ]
    if monitor_only:
        lines += [
            "# --monitor-only: every job is a monitor (monitor: {grace, id}): corral does not run it, the",
            "# legacy crontab keeps running it on its host and pings corral, which alerts when a ping is",
            "# late or reports a failure. Change each crontab line as its comment shows (CORRAL_URL: the",
            "# dashboard's address); the id is the secret in the ping URL. To move a job into corral later,",
            f"# replace monitor with run and remove its crontab line. Grace: {monitor_grace} after each slot.",
        ]
    lines += ["", "jobs:"]
    for job in jobs:
        entry = job.entry
        where = f"{entry.host} {entry.source}:{entry.line}"
        lines.append("")
        lines += _comment(f"from {where}" + (f" (user {entry.user})" if entry.user else ""), "  ")
        for raw_line in entry.raw.strip().splitlines():
            lines += _comment("  " + raw_line.strip(), "  ")
        if entry.mailto:
            lines += _comment(f"  cron mailed its output to {entry.mailto}", "  ")
        lines.append(f"  {job.name}:")
        if monitor_only:
            # A random id: it is the secret of the ping URL (docs/alerts.md).
            ping_id = str(uuid.uuid4())
            command = " ".join(shlex.quote(part) for part in job.run) if isinstance(job.run, list) else job.run
            lines += _comment(f"  in its crontab line, run instead: corral wrap --ping $CORRAL_URL/ping/{ping_id} -- {command}", "    ")
            lines.append(f"    monitor: {{grace: {monitor_grace}, id: {ping_id}}}")
        elif isinstance(job.run, list):
            lines.append(f"    run: [{', '.join(_q(part) for part in job.run)}]")
        else:
            lines.append(f"    run: {_q(job.run)}")
        if len(job.schedules) == 1:
            lines.append(f"    schedule: {_q(job.schedules[0])}")
        else:
            lines.append(f"    schedule: [{', '.join(_q(cron) for cron in job.schedules)}]")
        lines.append(f"    timezone: {_q(job.timezone)}")
        if not monitor_only:
            lines.append(f"    overlap: {overlap}")
        if job.env and not monitor_only:
            lines.append(f"    env: {_mapping(job.env)}")
        lines.append(f"    labels: {_mapping(job.labels)}")
        lines.append(f"    description: {_q(f'imported from {where}')}")
    if not jobs:
        lines.append("  # nothing could be imported; see the entries left out below")
    if skipped:
        lines += ["", "# Left out:"]
        for item in skipped:
            entry = item.entry
            lines += _comment(f"{entry.host} {entry.source}:{entry.line}: {item.reason}")
            for raw_line in entry.raw.strip().splitlines()[:5]:
                lines += _comment("    " + raw_line.strip()[:300])
    return "\n".join(lines) + "\n"


def import_inventory(
    inventory: inv.Inventory,
    *,
    overlap: str = "skip",
    monitor_only: bool = False,
    origin: str = "",
    monitor_grace: str = "30m",
) -> ImportResult:
    """The job file text for ``inventory``, checked with ``config.loads``."""
    jobs, skipped = plan(inventory, overlap=overlap)
    if not jobs:
        reasons = sorted({item.reason for item in skipped})
        raise ImportFailed(
            f"nothing to import: none of the {len(skipped)} entries can run as a corral job"
            + (f" ({'; '.join(reasons[:3])})" if reasons else "")
        )
    text = render(
        inventory, jobs, skipped, overlap=overlap, monitor_only=monitor_only, origin=origin, monitor_grace=monitor_grace
    )
    try:
        config.loads(text, environ={})
    except errors.ConfigError as exc:
        raise ImportFailed(f"the imported job file does not pass validation (a bug in corral import): {exc}") from exc
    return ImportResult(text, jobs, skipped)


__all__ = ["ImportResult", "ImportedJob", "Skipped", "base_name", "import_inventory", "plan", "render"]
