"""The SSH collector: read crontabs and timers from many hosts at once.

One connection and one command per host. The command is a small POSIX shell
script, fed on stdin to ``/bin/sh -s`` (or ``sudo -n /bin/sh -s``) so it works
whatever the login shell is, that prints every file discovery wants between
marker lines; :func:`parse_output` splits that back into
:class:`~corral.discover.collect.HostFiles`, and the pure
:func:`~corral.discover.collect.analyse_host` does the rest, as for the folder
and local collectors.

Security defaults follow OpenSSH's: ``~/.ssh/config``, the agent and the
usual keys are used as ``ssh`` would; the host key must match ``known_hosts``
(``accept_new`` trusts a host seen for the first time, appends its key to
known_hosts and says so, like ``StrictHostKeyChecking=accept-new``). A host
that fails (unreachable, key unknown or changed, authentication refused, sudo
refused, too slow) gets that status and one line of explanation in the
inventory; the other hosts go on.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncssh

from corral.discover import collect
from corral.discover import inventory as inv
from corral.discover.collect import HostFiles
from corral.discover.parse import Entry

DEFAULT_PORT = 22
KNOWN_HOSTS = Path("~", ".ssh", "known_hosts")


@dataclass(frozen=True)
class Target:
    """One host to read. ``name`` is how the inventory calls it; ``address``
    (Ansible's ``ansible_host``) is where to connect, else ``name`` (which
    ``~/.ssh/config`` may map to a HostName). ``root`` is a path prefix on
    the host under which the files live (a mounted image; tests)."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    root: str = ""

    @property
    def connect_to(self) -> str:
        return self.address or self.name


@dataclass(frozen=True)
class Options:
    """How to reach the hosts. ``None`` means "as ssh would": keys and
    agent from ``~/.ssh/config`` and the defaults, known hosts from the
    config's ``UserKnownHostsFile`` or ``~/.ssh/known_hosts``."""

    accept_new: bool = False
    sudo: bool = False
    concurrency: int = 10
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    ssh_config: tuple[str, ...] | None = None
    known_hosts: str | None = None
    client_keys: tuple[str, ...] | None = None
    agent: bool = True
    list_timers: bool = True
    """Also run ``systemctl list-timers --all`` (only where ``root`` is empty)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise collect.DiscoverError(f"concurrency must be 1 or more, not {self.concurrency}")
        for name in ("connect_timeout", "command_timeout"):
            if getattr(self, name) <= 0:
                raise collect.DiscoverError(f"{name.replace('_', '-')} must be more than 0 seconds")


@dataclass
class HostResult:
    """What reading one host gave: its files (None when nothing could be
    read), its :class:`~corral.discover.inventory.Host` and entries, and the
    fingerprint of a host key trusted on first contact."""

    target: Target
    host: inv.Host
    entries: list[Entry]
    files: HostFiles | None = None
    accepted_key: str | None = None
    timezone: str | None = None


# --------------------------------------------------------------------------
# the remote script and its output


_SPOOL_SKIP = " | ".join(sorted(collect._SPOOL_SKIP))
_SCRIPT = r"""{
M=@MARK@
R=@ROOT@
BIG=@BIG@
HEAD=@HEAD@
LIST_TIMERS=@LIST_TIMERS@
LC_ALL=C
export LC_ALL
emit() {
  p="$R$1"
  if [ -L "$p" ]; then
    case "$(readlink "$p" 2>/dev/null)" in /dev/null) return 0 ;; esac
  fi
  [ -f "$p" ] || return 0
  if [ ! -r "$p" ]; then
    printf '%s E %s\n%s\n' "$M" "$1" "permission denied"
    return 0
  fi
  printf '%s F %s\n' "$M" "$1"
  head -c "$2" "$p" 2>/dev/null
  printf '\n%s Z\n' "$M"
}
listable() {
  p="$R$1"
  [ -d "$p" ] || return 1
  if [ ! -r "$p" ] || [ ! -x "$p" ]; then
    printf '%s E %s\n%s\n' "$M" "$1" "permission denied (listing the directory)"
    return 1
  fi
  return 0
}
for f in @SINGLE@; do emit "$f" "$BIG"; done
if listable /etc/cron.d; then
  for p in "$R/etc/cron.d"/*; do
    [ -e "$p" ] || continue
    emit "/etc/cron.d/${p##*/}" "$BIG"
  done
fi
for d in @SPOOLS@; do
  listable "$d" || continue
  for p in "$R$d"/*; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    n=${p##*/}
    case "$n" in '#'*) continue ;; esac
    if [ "$d" = /var/spool/cron ]; then
      case "$n" in @SPOOL_SKIP@) continue ;; esac
    fi
    emit "$d/$n" "$BIG"
  done
done
for d in @RUN_PARTS@; do
  listable "$d" || continue
  for p in "$R$d"/*; do
    [ -e "$p" ] || continue
    emit "$d/${p##*/}" "$HEAD"
  done
done
S=@SYSTEMD@
if listable "$S"; then
  units=""
  for p in "$R$S"/*.timer; do
    [ -e "$p" ] || continue
    n=${p##*/}
    emit "$S/$n" "$BIG"
    u=$(sed -n 's/^[[:space:]]*Unit[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$p" 2>/dev/null | head -n 1)
    [ -n "$u" ] || u="${n%.timer}.service"
    units="$units $u"
    case "$u" in *@?*) units="$units ${u%%@*}@.service" ;; esac
  done
  for u in $units; do
    case "$u" in */*) continue ;; esac
    emit "$S/$u" "$BIG"
  done
  for w in "$R$S"/*.wants; do
    [ -d "$w" ] || continue
    for p in "$w"/*.timer; do
      [ -e "$p" ] || [ -L "$p" ] || continue
      printf '%s L %s\n' "$M" "$S/${w##*/}/${p##*/}"
    done
  done
fi
z=$(readlink "$R/etc/localtime" 2>/dev/null) && printf '%s T %s\n' "$M" "$z"
if [ "$LIST_TIMERS" = yes ] && [ -z "$R" ] && command -v systemctl >/dev/null 2>&1; then
  if out=$(SYSTEMD_COLORS=0 systemctl list-timers --all --no-pager 2>/dev/null); then
    printf '%s F %s\n%s\n%s Z\n' "$M" @LIST_TIMERS_PATH@ "$out" "$M"
  fi
fi
printf '%s END\n' "$M"
} </dev/null
"""


def remote_script(marker: str, *, root: str = "", list_timers: bool = True) -> str:
    """The shell script run on each host (see the module docstring)."""
    q = shlex.quote
    replacements = {
        "@MARK@": q(marker),
        "@ROOT@": q(root.rstrip("/")),
        "@BIG@": str(collect.MAX_FILE_BYTES),
        "@HEAD@": str(collect.SCRIPT_HEAD_BYTES),
        "@LIST_TIMERS@": "yes" if list_timers else "no",
        "@SINGLE@": " ".join(q(path) for path in collect.SINGLE_FILES),
        "@SPOOLS@": " ".join(q(path) for path in collect.SPOOL_DIRS),
        "@SPOOL_SKIP@": _SPOOL_SKIP,
        "@RUN_PARTS@": " ".join(q(path) for path in collect.RUN_PARTS_DIRS),
        "@SYSTEMD@": q(collect.SYSTEMD_DIR),
        "@LIST_TIMERS_PATH@": q(collect.LIST_TIMERS_PATH),
    }
    text = _SCRIPT
    for key, value in replacements.items():
        text = text.replace(key, value)
    return text


_ZONEINFO = "zoneinfo/"


def parse_output(data: bytes, marker: str) -> tuple[HostFiles, bool]:
    """Split the script's output into files, errors and the host timezone.
    The flag is False when the output stops before the end marker (the
    script was cut short); what came before is still returned."""
    mark = marker.encode()
    out = HostFiles()
    end_of_file = b"\n" + mark + b" Z\n"
    position = 0
    complete = False
    while position < len(data):
        line_end = data.find(b"\n", position)
        if line_end < 0:
            break
        header = data[position:line_end]
        position = line_end + 1
        if not header.startswith(mark + b" "):
            continue  # noise, e.g. a login banner printed by a shell rc file
        kind, _, rest = header[len(mark) + 1 :].partition(b" ")
        text = rest.decode("utf-8", errors="replace")
        if kind == b"F":
            stop = data.find(end_of_file, position)
            if stop < 0:
                break
            out.files[text] = data[position:stop].decode("utf-8", errors="replace")
            position = stop + len(end_of_file)
        elif kind == b"E":
            reason_end = data.find(b"\n", position)
            if reason_end < 0:
                break
            out.errors[text] = data[position:reason_end].decode("utf-8", errors="replace")
            position = reason_end + 1
        elif kind == b"L":
            out.files[text] = ""
        elif kind == b"T":
            at = text.find(_ZONEINFO)
            if at >= 0:
                out.timezone = text[at + len(_ZONEINFO) :]
        elif kind == b"END":
            complete = True
            break
    return out, complete


# --------------------------------------------------------------------------
# host keys


class _HostKeys:
    """Strict known_hosts checking with an explicit accept-new.

    asyncssh asks ``match`` for the keys it trusts (so it negotiates the
    algorithm of a known key, as ssh does) and calls the client's
    ``validate_host_public_key`` only for a key it does not trust; this
    decides there between "unknown host" and "changed key"."""

    def __init__(self, files: Sequence[str], accept_new: bool) -> None:
        self.files = [file for file in files if os.path.isfile(file)]
        self.accept_new = accept_new
        self.known = False
        self.host_key: asyncssh.SSHKey | None = None
        self.seen_as = ""
        self.accepted: str | None = None

    def match(self, host: str, addr: str, port: int | None) -> Any:
        found = asyncssh.match_known_hosts(self.files, host, addr, port) if self.files else ((), (), ())
        trusted, cas, revoked = found[0], found[1], found[2]
        self.known = bool(trusted or cas or revoked)
        self.seen_as = host if port in (None, DEFAULT_PORT) else f"[{host}]:{port}"
        return found

    def validate(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.host_key = key
        if port not in (None, DEFAULT_PORT):
            self.seen_as = f"[{host}]:{port}"
        else:
            self.seen_as = host
        if self.known or not self.accept_new:
            return False
        self.accepted = key.get_fingerprint("sha256")
        return True


class _Client(asyncssh.SSHClient):
    def __init__(self, keys: _HostKeys) -> None:
        self.keys = keys

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self.keys.validate(host, addr, port, key)


def _default_known_hosts(options: Options, base: Any) -> list[str]:
    if options.known_hosts:
        return [os.path.expanduser(options.known_hosts)]
    configured = getattr(base, "known_hosts", ())
    if isinstance(configured, (list, tuple)) and configured and all(isinstance(x, str) for x in configured):
        return [os.path.expanduser(str(x)) for x in configured]
    return [str(KNOWN_HOSTS.expanduser())]


def _append_known_host(file: str, seen_as: str, key: asyncssh.SSHKey) -> None:
    """Trust ``key`` for ``seen_as`` from now on, as ssh's accept-new does."""
    path = Path(file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    with open(path, "a", encoding="utf-8") as handle:
        if existing and not existing.endswith("\n"):
            handle.write("\n")
        handle.write(f"{seen_as} {algorithm} {blob}\n")
    if not existing:
        os.chmod(path, 0o600)


# --------------------------------------------------------------------------
# reading one host


def _where(target: Target) -> str:
    port = target.port or DEFAULT_PORT
    return f"{target.connect_to}:{port}" if target.port else target.connect_to


def _failed(target: Target, status: str, error: str) -> HostResult:
    return HostResult(target, inv.Host(target.name, status, error), [])


def _oneline(text: str) -> str:
    return " ".join(text.split())[:300]


async def read_host(
    target: Target,
    options: Options,
    *,
    known_hosts_lock: asyncio.Lock | None = None,
) -> HostResult:
    """Connect to one host, fetch its files and analyse them. Never raises
    for the host's own problems: they become its status and error."""
    lock = known_hosts_lock or asyncio.Lock()
    config: Any = list(options.ssh_config) if options.ssh_config is not None else ()
    kwargs: dict[str, Any] = {"connect_timeout": options.connect_timeout}
    if target.port:
        kwargs["port"] = target.port
    if target.user:
        kwargs["username"] = target.user
    if options.client_keys is not None:
        kwargs["client_keys"] = list(options.client_keys)
    if not options.agent:
        kwargs["agent_path"] = None
    try:
        base = await asyncssh.SSHClientConnectionOptions.construct(config=config, host=target.connect_to, **kwargs)
    except (OSError, ValueError, asyncssh.Error) as exc:
        return _failed(target, inv.ERROR, f"cannot use the ssh settings for {target.connect_to}: {_oneline(str(exc))}")
    keys = _HostKeys(_default_known_hosts(options, base), options.accept_new)
    where = _where(target)
    try:
        conn = await asyncssh.connect(
            target.connect_to,
            options=base,
            known_hosts=keys.match,
            client_factory=lambda: _Client(keys),
            login_timeout=options.connect_timeout,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        if keys.known:
            return _failed(
                target,
                inv.HOST_KEY_MISMATCH,
                f"the host key of {keys.seen_as or where} does not match known_hosts "
                f"(it presented {_fingerprint(keys.host_key)}): the host was reinstalled, or someone is in "
                f"between; check, then remove the old line with ssh-keygen -R {shlex.quote(keys.seen_as or where)}",
            )
        return _failed(
            target,
            inv.HOST_KEY_UNKNOWN,
            f"{keys.seen_as or where} is not in known_hosts (it presented {_fingerprint(keys.host_key)}); "
            "check the fingerprint and rerun with --accept-new, or add it with ssh-keyscan"
            + ("" if keys.host_key else f" ({_oneline(exc.reason)})"),
        )
    except asyncssh.PermissionDenied as exc:
        who = target.user or getattr(base, "username", None) or "the current user"
        return _failed(
            target,
            inv.AUTH_FAILED,
            f"{where} refused authentication as {who} ({_oneline(exc.reason)}); "
            "check the key, the agent (ssh-add -l) and the user in ~/.ssh/config or the inventory",
        )
    except (asyncio.TimeoutError, TimeoutError):
        return _failed(
            target, inv.UNREACHABLE, f"connection to {where} timed out after {options.connect_timeout:g} s"
        )
    except socket.gaierror as exc:
        return _failed(target, inv.UNREACHABLE, f"cannot resolve {target.connect_to}: {exc.strerror or exc}")
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        return _failed(target, inv.UNREACHABLE, f"cannot connect to {where}: {reason.lower()}")
    except asyncssh.Error as exc:
        return _failed(target, inv.ERROR, f"ssh to {where} failed: {_oneline(exc.reason)}")

    if keys.accepted and keys.host_key is not None:
        async with lock:
            try:
                _append_known_host(keys.files[0] if keys.files else _default_known_hosts(options, base)[0],
                                   keys.seen_as, keys.host_key)  # fmt: skip
            except OSError:
                pass  # the connection is trusted for this run; the note below still says so
    try:
        async with conn:
            return await _fetch(conn, target, options, keys.accepted)
    except (asyncio.TimeoutError, TimeoutError):
        return _failed(
            target,
            inv.ERROR,
            f"reading the files on {where} took longer than {options.command_timeout:g} s "
            "(raise --command-timeout for slow hosts)",
        )
    except (OSError, asyncssh.Error) as exc:
        reason = exc.reason if isinstance(exc, asyncssh.Error) else (exc.strerror or str(exc))
        return _failed(target, inv.ERROR, f"the connection to {where} broke: {_oneline(reason)}")


def _fingerprint(key: asyncssh.SSHKey | None) -> str:
    return key.get_fingerprint("sha256") if key is not None else "an unknown key"


async def _fetch(conn: asyncssh.SSHClientConnection, target: Target, options: Options, accepted: str | None) -> HostResult:
    marker = "@@corral-" + secrets.token_hex(12)
    script = remote_script(marker, root=target.root, list_timers=options.list_timers).encode()
    command = "sudo -n /bin/sh -s" if options.sudo else "/bin/sh -s"
    result = await asyncio.wait_for(
        conn.run(command, input=script, encoding=None, check=False), timeout=options.command_timeout
    )
    stdout = result.stdout if isinstance(result.stdout, bytes) else b""
    stderr = result.stderr.decode("utf-8", "replace") if isinstance(result.stderr, bytes) else ""
    files, complete = parse_output(stdout, marker)
    if not complete:
        if options.sudo and "sudo" in stderr:
            return _failed(
                target,
                inv.PERMISSION_DENIED,
                f"sudo -n refused on {target.name}: {_oneline(stderr)}; allow passwordless sudo for "
                "/bin/sh, or run without --sudo (some crontabs will be unreadable)",
            )
        status = result.exit_status
        return _failed(
            target,
            inv.ERROR,
            f"the discovery script stopped early on {target.name} (exit {status}): "
            + (_oneline(stderr) or "no error output"),
        )
    # /etc/timezone (read as a file) wins over the /etc/localtime link, as for a saved folder
    host_tz = None if "/etc/timezone" in files.files else files.timezone
    host, entries = collect.analyse_host(target.name, files.files, host_tz, errors=files.errors)
    return HostResult(target, host, entries, files, accepted, host_tz)


# --------------------------------------------------------------------------
# many hosts


async def read_hosts(
    targets: Sequence[Target],
    options: Options,
    *,
    on_done: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """Read every target, at most ``options.concurrency`` at a time; the
    results come back in the order of ``targets``."""
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise collect.DiscoverError(
            f"host names must be unique in one inventory; repeated: {', '.join(duplicates)} "
            "(give each an inventory name, e.g. with ansible_host in an Ansible inventory)"
        )
    gate = asyncio.Semaphore(options.concurrency)
    lock = asyncio.Lock()

    async def one(target: Target) -> HostResult:
        async with gate:
            try:
                result = await read_host(target, options, known_hosts_lock=lock)
            except Exception as exc:  # a bug or surprise on one host must not lose the others
                result = _failed(target, inv.ERROR, f"unexpected error: {type(exc).__name__}: {_oneline(str(exc))}")
        if on_done is not None:
            on_done(result)
        return result

    return list(await asyncio.gather(*(one(target) for target in targets)))


def to_inventory(results: Iterable[HostResult], collected_at: datetime) -> inv.Inventory:
    results = list(results)
    return inv.Inventory(
        tuple(result.host for result in results),
        tuple(entry for result in results for entry in result.entries),
        collected_at,
    )


def files_by_host(results: Iterable[HostResult]) -> dict[str, dict[str, str]]:
    """What ``write_tree`` saves: the fetched files, plus ``/.corral/host.json``
    for hosts that failed, so a saved collection keeps why."""
    out: dict[str, dict[str, str]] = {}
    for result in results:
        files = dict(result.files.files) if result.files is not None else {}
        if result.host.status not in (inv.OK, inv.PERMISSION_DENIED) or result.files is None:
            files[collect.HOST_INFO_PATH] = collect.host_info_text(result.host)
        elif result.timezone and "/etc/timezone" not in files:
            files["/etc/timezone"] = result.timezone + "\n"
        out[result.target.name] = files
    return out


def collect_ssh(
    targets: Sequence[Target],
    options: Options | None = None,
    *,
    now: datetime | None = None,
    on_done: Callable[[HostResult], None] | None = None,
) -> tuple[inv.Inventory, list[HostResult]]:
    """Read ``targets`` over SSH (blocking). Returns the inventory and the
    per-host results (for ``write_tree`` and accepted host keys)."""
    when = now or datetime.now(timezone.utc)
    results = asyncio.run(read_hosts(targets, options or Options(), on_done=on_done))
    return to_inventory(results, when), results


# --------------------------------------------------------------------------
# where the host list comes from


_HOST_PORT = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?\Z")


def parse_target(text: str) -> Target:
    """``[user@]host[:port]`` (``[::1]:2222`` for IPv6) as a Target; the
    inventory name is the host, with ``:port`` when a port is given."""
    match = _HOST_PORT.match(text.strip())
    if match is None:
        raise collect.DiscoverError(f'"{text}" is not a host; write host, user@host or host:port')
    host = match.group("v6") or match.group("host")
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 0 < port < 65536:
        raise collect.DiscoverError(f'"{text}": port {port} is out of range 1-65535')
    name = f"{host}:{port}" if port else host
    return Target(name=name, address=host if port else None, port=port, user=match.group("user"))


def read_hosts_file(path: Path | str) -> list[Target]:
    """A file of hosts, one per line (``[user@]host[:port]``); ``#`` starts a comment."""
    text = _read_text(path)
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.extend(parse_target(word) for word in line.split())
    return out


def _read_text(path: Path | str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise collect.DiscoverError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_ansible_inventory(path: Path | str) -> list[Target]:
    """Hosts of an Ansible inventory, INI or YAML (chosen by content), with
    ``ansible_host``, ``ansible_port`` and ``ansible_user`` from the host's
    line or its groups' vars. Each host appears once, in file order."""
    text = _read_text(path)
    hosts = _ansible_yaml(text, path) if _looks_like_yaml(text, path) else _ansible_ini(text, path)
    return [_ansible_target(name, values, path) for name, values in hosts.items()]


def _looks_like_yaml(text: str, path: Path | str) -> bool:
    if str(path).endswith((".yml", ".yaml", ".json")):
        return True
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and all(value is None or isinstance(value, dict) for value in data.values())


def _ansible_target(name: str, values: Mapping[str, Any], path: Path | str) -> Target:
    port = values.get("ansible_port", values.get("ansible_ssh_port"))
    try:
        port_number = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise collect.DiscoverError(f'{path}: host {name}: ansible_port "{port}" is not a number') from None
    address = values.get("ansible_host", values.get("ansible_ssh_host"))
    user = values.get("ansible_user", values.get("ansible_ssh_user"))
    return Target(
        name=name,
        address=str(address) if address not in (None, "") else None,
        port=port_number,
        user=str(user) if user not in (None, "") else None,
    )


_RANGE = re.compile(r"\[(\w+):(\w+)(?::(\d+))?\]")


def _expand(pattern: str) -> list[str]:
    """Ansible's ``web[01:03].example.com`` host ranges (numeric or letters)."""
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(n).zfill(width) for n in range(int(start), int(end) + 1, step)]
    else:
        values = [chr(n) for n in range(ord(start), ord(end) + 1, step)]
    return [expanded for value in values for expanded in _expand(head + value + tail)]


def _ini_value(text: str) -> str:
    try:
        words = shlex.split(text)
    except ValueError:
        return text
    return words[0] if words else ""


def _ansible_ini(text: str, path: Path | str) -> dict[str, dict[str, Any]]:
    order: list[str] = []
    own: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}
    section, kind = "ungrouped", "hosts"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            continue
        if kind == "vars":
            key, _, value = line.partition("=")
            group_vars.setdefault(section, {})[key.strip()] = _ini_value(value.strip())
        elif kind == "children":
            children.setdefault(section, []).append(line.split()[0])
        elif kind == "hosts":
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                raise collect.DiscoverError(f"{path}: cannot read the line {line!r}: {exc}") from exc
            if not words:
                continue
            values = dict(word.split("=", 1) for word in words[1:] if "=" in word)
            for name in _expand(words[0]):
                if name not in own:
                    order.append(name)
                    own[name] = {}
                own[name].update(values)
                members.setdefault(section, []).append(name)
    parents: dict[str, list[str]] = {}
    for parent, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)

    def ancestry(group: str, seen: set[str]) -> list[str]:
        out = []
        for parent in parents.get(group, []):
            if parent not in seen:
                seen.add(parent)
                out.extend(ancestry(parent, seen))
                out.append(parent)
        return out

    merged: dict[str, dict[str, Any]] = {}
    for name in order:
        values = dict(group_vars.get("all", {}))
        for group, hosts in members.items():
            if name in hosts:
                for ancestor in ancestry(group, {group}):
                    values.update(group_vars.get(ancestor, {}))
                values.update(group_vars.get(group, {}))
        values.update(own[name])
        merged[name] = values
    return merged


def _ansible_yaml(text: str, path: Path | str) -> dict[str, dict[str, Any]]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise collect.DiscoverError(f"{path} is neither an INI nor a YAML Ansible inventory: {exc}") from exc
    if not isinstance(data, dict):
        raise collect.DiscoverError(f"{path}: an Ansible YAML inventory is a mapping of groups, like all: {{hosts: ...}}")
    found: dict[str, dict[str, Any]] = {}
    explicit: dict[str, set[str]] = {}

    def walk(group: Any, inherited: dict[str, Any]) -> None:
        if not isinstance(group, dict):
            return
        values = {**inherited, **(group.get("vars") or {})}
        hosts = group.get("hosts") or {}
        if isinstance(hosts, dict):
            for pattern, host_vars in hosts.items():
                for name in _expand(str(pattern)):
                    entry = found.setdefault(name, {})
                    own = host_vars if isinstance(host_vars, dict) else {}
                    keys = explicit.setdefault(name, set())
                    for key, value in values.items():
                        if key not in keys:
                            entry[key] = value
                    entry.update(own)
                    keys.update(own)
        for child in (group.get("children") or {}).values() if isinstance(group.get("children"), dict) else ():
            walk(child, values)

    for group in data.values():
        walk(group, {})
    return found


__all__ = [
    "HostResult",
    "Options",
    "Target",
    "collect_ssh",
    "files_by_host",
    "parse_output",
    "parse_target",
    "read_ansible_inventory",
    "read_host",
    "read_hosts",
    "read_hosts_file",
    "remote_script",
    "to_inventory",
]
