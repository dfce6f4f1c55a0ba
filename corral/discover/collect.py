"""Collectors: read crontabs and timers, then analyse them into an Inventory.

Reading and understanding are apart. A collector only produces, per host,
``{server path: text}`` plus the paths it could not read; the pure
:func:`analyse_host` turns that into a :class:`~corral.discover.inventory.Host`
and its entries. The folder and local collectors here and the SSH collector
share it, and :func:`write_tree` saves fetched files in the layout
:func:`collect_dir` reads back::

    DIR/<host>/etc/crontab                      system format (user field)
    DIR/<host>/etc/cron.d/*                     system format
    DIR/<host>/var/spool/cron/crontabs/<user>   Debian: user from the file name
    DIR/<host>/var/spool/cron/tabs/<user>       SUSE
    DIR/<host>/var/spool/cron/<user>            RHEL
    DIR/<host>/etc/anacrontab
    DIR/<host>/etc/cron.{hourly,daily,weekly,monthly}/*   run-parts scripts
    DIR/<host>/etc/systemd/system/*.timer, *.service, *.wants/*
    DIR/<host>/etc/timezone                     host timezone (optional)
    DIR/<host>/.corral/list-timers.txt          `systemctl list-timers --all`
    DIR/<host>/.corral/host.json                status/error of a failed fetch
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from corral import errors
from corral.discover import inventory as inv
from corral.discover import parse
from corral.discover.parse import Entry

LIST_TIMERS_PATH = "/.corral/list-timers.txt"
HOST_INFO_PATH = "/.corral/host.json"
SYSTEMD_DIR = "/etc/systemd/system"
RUN_PARTS_DIRS = ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly")
SPOOL_DIRS = ("/var/spool/cron/crontabs", "/var/spool/cron/tabs", "/var/spool/cron")
SINGLE_FILES = ("/etc/crontab", "/etc/anacrontab", "/etc/timezone")
SCRIPT_HEAD_BYTES = 4096
"""Only the start of a run-parts script is read: its name and #! line are what count."""
MAX_FILE_BYTES = 4 * 1024 * 1024

# Entries in /var/spool/cron that are not user crontabs.
_SPOOL_SKIP = frozenset({"crontabs", "tabs", "atjobs", "atspool", "lastrun", "cron.deny", "cron.allow"})
# Debian's cron reads /etc/cron.d files only with run-parts-style names.
_CRON_D_NAME = re.compile(r"[A-Za-z0-9_\-]+\Z")
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:\-]*\Z")

# Housekeeping the distribution ships; reported, but without findings about
# root, mail or duplicates, since every host has them.
_DISTRO_CRON_D = frozenset(
    """0hourly anacron e2scrub_all php php5 popularity-contest sysstat raid-check certbot mdadm
    sa-update dailyjobs ntpsec unattended-upgrades zfsutils-linux""".split()
)
_DISTRO_SCRIPTS = frozenset(
    """0anacron 0yum-daily.cron 0yum-hourly.cron apt-compat aptitude apache2 apport bsdmainutils
    cracklib-runtime debsums dnf-automatic dpkg exim4-base fake-hwclock locate logrotate logwatch
    0logwatch makewhatis.cron man-db mdadm mlocate mlocate.cron passwd plocate popularity-contest
    prelink quota raid-check rkhunter samba sendmail sysstat tmpwatch certwatch update-notifier-common
    ntp chkrootkit etckeeper google-chrome php""".split()
)
_DISTRO_TIMERS = frozenset(
    """apt-daily.timer apt-daily-upgrade.timer logrotate.timer man-db.timer fstrim.timer
    e2scrub_all.timer systemd-tmpfiles-clean.timer dpkg-db-backup.timer motd-news.timer
    phpsessionclean.timer certbot.timer snap.certbot.renew.timer ua-timer.timer
    update-notifier-download.timer update-notifier-motd.timer fwupd-refresh.timer anacron.timer
    sysstat-collect.timer sysstat-summary.timer mlocate.timer plocate-updatedb.timer
    unbound-anchor.timer dnf-makecache.timer raid-check.timer mdcheck_start.timer
    mdcheck_continue.timer mdmonitor-oneshot.timer shadow.timer exim4-base.timer
    apport-autoreport.timer geoipupdate.timer systemd-sysupdate.timer
    systemd-sysupdate-reboot.timer btrfs-scrub.timer""".split()
)
_DISTRO_COMMAND = re.compile(r"run-parts\b.*?/etc/cron\.(?:hourly|daily|weekly|monthly)|/usr/sbin/anacron|\banacron -s")


class DiscoverError(errors.CorralError):
    """Discovery could not read what it was asked to."""


@dataclass
class HostFiles:
    """What a collector fetched from one host, before any parsing.

    ``files`` maps server paths (``/etc/crontab``) to text; a link in a
    ``*.wants`` directory is present with empty text. ``errors`` maps server
    paths to a one-line reason (``permission denied``).
    """

    files: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    timezone: str | None = None


# --------------------------------------------------------------------------
# analysis (pure)


def _classify(path: str) -> tuple[str, str]:
    """(kind, name) of a server path; kind "" for paths discovery ignores."""
    posix = PurePosixPath(path)
    parent, name = str(posix.parent), posix.name
    if path == "/etc/crontab":
        return "system", name
    if parent == "/etc/cron.d":
        return "system", name
    if parent in ("/var/spool/cron/crontabs", "/var/spool/cron/tabs"):
        return "user", name
    if parent == "/var/spool/cron" and name not in _SPOOL_SKIP:
        return "user", name
    if path == "/etc/anacrontab":
        return "anacron", name
    if parent == SYSTEMD_DIR and name.endswith((".timer", ".service")):
        return "unit", name
    if posix.parent.parent == PurePosixPath(SYSTEMD_DIR) and posix.parent.name.endswith(".wants"):
        return "wants", name
    if parent in RUN_PARTS_DIRS:
        return "run-parts", name
    if path == "/etc/timezone":
        return "timezone", name
    if path == LIST_TIMERS_PATH:
        return "list-timers", name
    if path == HOST_INFO_PATH:
        return "host-info", name
    return "", name


def analyse_host(
    host: str,
    files: Mapping[str, str],
    host_tz: str | None = None,
    *,
    errors: Mapping[str, str] | None = None,
    source_prefix: str = "",
) -> tuple[inv.Host, list[Entry]]:
    """Parse everything fetched from ``host`` (server path -> text).

    The path decides the format. ``host_tz`` wins over ``/etc/timezone``
    among ``files``. ``errors`` (server path -> reason) become the host's
    ``file_errors``; any "permission denied" makes the host
    ``permission_denied`` (its readable files are still analysed).
    Each entry's ``source`` is ``source_prefix`` + the server path.
    """
    errors = dict(errors or {})

    def source(path: str) -> str:
        return f"{source_prefix}{path}"

    system: dict[str, str] = {}
    users: dict[str, tuple[str, str]] = {}
    units: dict[str, str] = {}
    wants: set[str] = set()
    scripts: dict[str, dict[str, str]] = {}
    anacrontab: str | None = None
    list_timers: str | None = None
    info: dict[str, object] = {}
    timezone_text = None
    for path in sorted(files):
        kind, name = _classify(path)
        text = files[path]
        if kind == "system":
            system[path] = text
        elif kind == "user":
            users[path] = (name, text)
        elif kind == "unit":
            units[name] = text
        elif kind == "wants":
            wants.add(name)
        elif kind == "run-parts":
            scripts.setdefault(str(PurePosixPath(path).parent), {})[name] = text
        elif kind == "anacron":
            anacrontab = text
        elif kind == "list-timers":
            list_timers = text
        elif kind == "timezone":
            timezone_text = text.strip().split("\n", 1)[0].strip() or None
        elif kind == "host-info":
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = {}
            info = loaded if isinstance(loaded, dict) else {}

    tz = host_tz or timezone_text or _str_or_none(info.get("timezone"))
    entries: list[Entry] = []
    cron_like: list[Entry] = []
    for path, text in system.items():
        name = PurePosixPath(path).name
        parsed = parse.parse_crontab(text, host=host, source=source(path), system=True)
        in_cron_d = path != "/etc/crontab"
        marks: tuple[str, ...] = ()
        if in_cron_d and not _CRON_D_NAME.match(name):
            marks = (parse.NOTE_CRON_SKIPS_FILE,)
        distro_file = in_cron_d and name in _DISTRO_CRON_D
        parsed = [_mark(entry, marks, distro_file) for entry in parsed]
        entries.extend(parsed)
        cron_like.extend(parsed)
    for path, (user, text) in users.items():
        entries.extend(parse.parse_crontab(text, host=host, source=source(path), user=user))
    anacron_entries: list[Entry] = []
    if anacrontab is not None:
        anacron_entries = [
            _mark(entry, (), False)
            for entry in parse.parse_anacrontab(anacrontab, host=host, source=source("/etc/anacrontab"))
        ]
        entries.extend(anacron_entries)
    for directory in sorted(scripts):
        runner = _runner(directory, anacron_entries, cron_like)
        parsed = parse.parse_run_parts(
            scripts[directory],
            host=host,
            directory=directory,
            source_dir=source(directory),
            schedule=_runner_schedule(runner),
            cron=runner.cron if runner else (),
            timezone=runner.timezone if runner else None,
            run_by=f"{runner.source}:{runner.line}" if runner else None,
            run_by_description=parse.schedule_description(runner) if runner else None,
        )
        entries.extend(
            replace(entry, notes=(*entry.notes, parse.NOTE_DISTRIBUTION))
            if PurePosixPath(entry.command).name in _DISTRO_SCRIPTS
            else entry
            for entry in parsed
        )
    rows = parse.parse_list_timers(list_timers, host=host, source=source(LIST_TIMERS_PATH)) if list_timers else []
    enabled: set[str] | None = None
    if wants or list_timers is not None:
        enabled = set(wants) | {row.details["timer"] for row in rows if row.details.get("NEXT") not in ("n/a", "-")}
    timer_entries = parse.parse_systemd_units(units, host=host, source_dir=source(SYSTEMD_DIR), enabled=enabled)
    by_timer = {PurePosixPath(entry.source).name: index for index, entry in enumerate(timer_entries)}
    for row in rows:
        timer = row.details["timer"]
        if timer in by_timer:
            index = by_timer[timer]
            unit_entry = timer_entries[index]
            merged = dict(unit_entry.details)
            for key in ("NEXT", "LEFT", "LAST", "PASSED"):
                merged[key] = row.details[key]
            timer_entries[index] = replace(unit_entry, details=merged)
        else:
            entries.append(replace(row, notes=(parse.NOTE_DISTRIBUTION,)) if timer in _DISTRO_TIMERS else row)
    entries.extend(timer_entries)
    entries.sort(key=_entry_order)

    read = tuple(source(path) for path in sorted(files) if _classify(path)[0] not in ("wants", "host-info", ""))
    file_errors = tuple((source(path), message) for path, message in sorted(errors.items()))
    status = _str_or_none(info.get("status")) or inv.OK
    error = _str_or_none(info.get("error"))
    denied = [path for path, message in sorted(errors.items()) if "permission denied" in message.lower()]
    if status == inv.OK and denied:
        status = inv.PERMISSION_DENIED
        error = "cannot read " + ", ".join(denied) + " (permission denied; collect as root or with sudo)"
    elif status == inv.OK and errors and not read:
        status = inv.ERROR
        error = "; ".join(f"{path}: {message}" for path, message in sorted(errors.items()))
    return inv.Host(host, status, error, tz, read, file_errors), entries


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _mark(entry: Entry, marks: tuple[str, ...], distro_file: bool) -> Entry:
    distro = distro_file or (entry.kind != parse.ENV and bool(_DISTRO_COMMAND.search(entry.command)))
    if distro:
        marks = (*marks, parse.NOTE_DISTRIBUTION)
    if not marks:
        return entry
    return replace(entry, notes=(*entry.notes, *marks))


def _runner(directory: str, anacron_entries: list[Entry], cron_like: list[Entry]) -> Entry | None:
    """The anacrontab (preferred: where anacron is set up it runs these) or
    crontab line that runs ``directory`` through run-parts."""
    pattern = re.compile(re.escape(directory) + r"(?:/|\s|;|$)")
    for group in (anacron_entries, cron_like):
        for entry in group:
            if entry.kind == parse.JOB and "run-parts" in entry.command and pattern.search(entry.command):
                return entry
    return None


def _runner_schedule(runner: Entry | None) -> str:
    if runner is None:
        return ""
    if runner.origin == parse.ANACRONTAB:
        return f"{runner.schedule} (anacron)"
    return runner.schedule


_ORDER = {
    parse.SYSTEM_CRONTAB: 0,
    parse.CRONTAB: 1,
    parse.ANACRONTAB: 2,
    parse.RUN_PARTS: 3,
    parse.SYSTEMD: 4,
    parse.LIST_TIMERS: 5,
}


def _entry_order(entry: Entry) -> tuple[int, int, str, int]:
    # /etc/crontab before /etc/cron.d/*, as cron reads them
    first = 0 if entry.source.endswith("/etc/crontab") else 1
    return _ORDER.get(entry.origin, 9), first, entry.source, entry.line


# --------------------------------------------------------------------------
# reading a host's files from a directory tree (this machine or a collection)


def _resolve(root: Path, path: str) -> Path | None:
    """``path`` as the host would resolve it, with ``root`` as its ``/``:
    absolute link targets are re-rooted, ``..`` never climbs above ``root``.
    None for links to ``/dev/null`` (masked units) or link loops."""
    parts = [part for part in path.split("/") if part]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 32:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    if resolved == ["dev", "null"]:
        return None
    return root.joinpath(*resolved)


def _describe(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror.lower() if exc.strerror else str(exc)


def _read(root: Path, path: str, out: HostFiles, limit: int = MAX_FILE_BYTES, optional: bool = True) -> None:
    try:
        real = _resolve(root, path)
        if real is None or not real.is_file():
            return
        with open(real, "rb") as handle:
            data = handle.read(limit)
    except FileNotFoundError:
        if not optional:
            out.errors[path] = "no such file"
        return
    except OSError as exc:
        out.errors[path] = _describe(exc)
        return
    out.files[path] = data.decode("utf-8", errors="replace")


def _list(root: Path, directory: str, out: HostFiles) -> list[str]:
    try:
        real = _resolve(root, directory)
        if real is None or not real.is_dir():
            return []
        return sorted(item.name for item in os.scandir(real))
    except FileNotFoundError:
        return []
    except OSError as exc:
        out.errors[directory] = _describe(exc) + " (listing the directory)"
        return []


def _is_file(root: Path, path: str) -> bool:
    try:
        real = _resolve(root, path)
        return real is not None and real.is_file()
    except OSError:
        return True  # let _read report why


def read_host_root(root: Path | str) -> HostFiles:
    """Read the discovery paths of one host whose ``/`` is ``root``."""
    root = Path(root)
    out = HostFiles()
    for path in SINGLE_FILES + (LIST_TIMERS_PATH, HOST_INFO_PATH):
        _read(root, path, out)
    for name in _list(root, "/etc/cron.d", out):
        if not name.startswith("."):
            _read(root, f"/etc/cron.d/{name}", out)
    for directory in SPOOL_DIRS:
        for name in _list(root, directory, out):
            if name.startswith((".", "#")) or (directory == "/var/spool/cron" and name in _SPOOL_SKIP):
                continue
            path = f"{directory}/{name}"
            if _is_file(root, path):
                _read(root, path, out)
    for directory in RUN_PARTS_DIRS:
        for name in _list(root, directory, out):
            if not name.startswith("."):
                _read(root, f"{directory}/{name}", out, limit=SCRIPT_HEAD_BYTES)
    names = _list(root, SYSTEMD_DIR, out)
    timers = [name for name in names if name.endswith(".timer")]
    for name in timers:
        _read(root, f"{SYSTEMD_DIR}/{name}", out)
    services = set()
    for name in timers:
        text = out.files.get(f"{SYSTEMD_DIR}/{name}", "")
        match = re.search(r"^\s*Unit\s*=\s*(\S+)", text, re.MULTILINE)
        service = match.group(1) if match else name[: -len(".timer")] + ".service"
        services.add(service)
        prefix, at, rest = service.partition("@")
        if at and rest:
            services.add(f"{prefix}@.service")
    for name in sorted(services):
        if name in names:
            _read(root, f"{SYSTEMD_DIR}/{name}", out)
    for name in names:
        if name.endswith(".wants"):
            for link in _list(root, f"{SYSTEMD_DIR}/{name}", out):
                if link.endswith(".timer"):
                    out.files[f"{SYSTEMD_DIR}/{name}/{link}"] = ""
    out.timezone = _localtime_zone(root)
    return out


def _localtime_zone(root: Path) -> str | None:
    """The zone /etc/localtime links to (``.../zoneinfo/Asia/Seoul``), if it is a link."""
    link = root / "etc" / "localtime"
    try:
        if not link.is_symlink():
            return None
        target = os.readlink(link)
    except OSError:
        return None
    marker = "zoneinfo/"
    position = target.find(marker)
    return target[position + len(marker) :] if position >= 0 else None


# --------------------------------------------------------------------------
# collectors


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("'now' must be timezone-aware")
    return now


def collect_dir(root: Path | str, *, now: datetime | None = None) -> inv.Inventory:
    """Analyse a folder of files collected earlier, one sub-folder per host
    laid out as on the server. ``source`` is the path relative to ``root``."""
    base = Path(root)
    if not base.is_dir():
        raise DiscoverError(f'"{root}" is not a directory; pass the folder that holds one sub-folder per host')
    if (base / "etc").is_dir() or (base / "var").is_dir():
        raise DiscoverError(
            f'"{root}" looks like one host\'s root (it has etc/ or var/); put it in a sub-folder named '
            f"after the host: {base}/<host>/etc/..."
        )
    hosts: list[inv.Host] = []
    entries: list[Entry] = []
    for item in sorted(base.iterdir(), key=lambda p: p.name):
        if item.name.startswith(".") or not item.is_dir():
            continue
        fetched = read_host_root(item)
        # /etc/timezone (read as a file) wins over a copied /etc/localtime link
        host, found = analyse_host(
            item.name, fetched.files, None if "/etc/timezone" in fetched.files else fetched.timezone,
            errors=fetched.errors, source_prefix=item.name,
        )  # fmt: skip
        hosts.append(host)
        entries.extend(found)
    return inv.Inventory(tuple(hosts), tuple(entries), _now(now))


def collect_local(
    root: Path | str = "/",
    *,
    host: str | None = None,
    now: datetime | None = None,
    list_timers: bool | None = None,
) -> inv.Inventory:
    """Analyse this machine (or a fake root in tests): every user's crontab
    (Debian, RHEL and SUSE spools), /etc/crontab, /etc/cron.d, anacrontab,
    run-parts scripts and systemd timers. Unreadable files are recorded on
    the host, never raised. ``list_timers`` (default: only when ``root`` is
    ``/``) also runs ``systemctl list-timers --all``."""
    root_path = Path(root)
    is_real_root = root_path.resolve() == Path("/")
    name = host or (socket.gethostname() if is_real_root else "localhost")
    fetched = read_host_root(root_path)
    if list_timers if list_timers is not None else is_real_root:
        _run_list_timers(fetched)
    found_host, entries = analyse_host(
        name, fetched.files, None if "/etc/timezone" in fetched.files else fetched.timezone, errors=fetched.errors
    )
    return inv.Inventory((found_host,), tuple(entries), _now(now))


def _run_list_timers(fetched: HostFiles) -> None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C", "SYSTEMD_COLORS": "0"}
    try:
        result = subprocess.run(
            [systemctl, "list-timers", "--all", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=15,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        fetched.errors["systemctl list-timers --all"] = str(exc)
        return
    if result.returncode == 0:
        fetched.files[LIST_TIMERS_PATH] = result.stdout
    elif "booted with systemd" not in result.stderr and "connect to bus" not in result.stderr:
        # No systemd running means no timers; anything else is worth a line.
        fetched.errors["systemctl list-timers --all"] = (result.stderr.strip() or f"exit {result.returncode}")[:300]


def write_tree(files_by_host: Mapping[str, Mapping[str, str]], dest: Path | str) -> list[Path]:
    """Save fetched files as ``dest/<host>/<server path>``, the layout
    :func:`collect_dir` reads. Returns the files written."""
    base = Path(dest)
    written: list[Path] = []
    for host in sorted(files_by_host):
        if not _HOST_NAME.match(host) or host in (".", ".."):
            raise DiscoverError(f'cannot save host "{host}": not usable as a folder name')
        for path, text in sorted(files_by_host[host].items()):
            posix = PurePosixPath(path)
            if not posix.is_absolute() or ".." in posix.parts or len(posix.parts) < 2:
                raise DiscoverError(f'cannot save "{path}" of host {host}: expected an absolute path without ".."')
            target = base / host / Path(*posix.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            written.append(target)
    return written


def host_info_text(host: inv.Host) -> str:
    """``/.corral/host.json`` for a host whose fetch failed, so a saved
    collection keeps "unreachable" or "auth_failed" when read back."""
    return json.dumps({"status": host.status, "error": host.error, "timezone": host.timezone}, indent=2) + "\n"


__all__ = [
    "DiscoverError",
    "HOST_INFO_PATH",
    "HostFiles",
    "LIST_TIMERS_PATH",
    "analyse_host",
    "collect_dir",
    "collect_local",
    "host_info_text",
    "read_host_root",
    "write_tree",
]
