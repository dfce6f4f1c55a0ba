"""``corral doctor``: is this corral healthy, and if not, what to do.

Checks, each ``ok``, ``warn`` or ``fail`` with one line a person can act on:
the job file is valid; the store is reachable and its schema is at head; a
``corral up`` is running and its heartbeat is fresh; no notification channel
keeps failing; the log directory's disk has room.

The judgements are pure functions of what was read (``now`` passed in); the
command (:mod:`corral.doctor_cli`) prints them and exits 1 when any check fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from corral import durations, errors

Status = Literal["ok", "warn", "fail"]

STALE_HEARTBEAT = timedelta(minutes=3)
"""Three missed heartbeats of ``corral up`` (it beats every minute)."""
CHANNEL_WINDOW = timedelta(hours=24)
DISK_WARN = 0.10
DISK_FAIL = 0.02
"""Fractions of the log disk still free below which doctor warns / fails."""


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


# -- pure judgements ------------------------------------------------------------------


def heartbeats(nodes: Sequence[Mapping[str, Any]], now: datetime, *, stale: timedelta = STALE_HEARTBEAT) -> list[Check]:
    """One check per ``corral up`` that has not said it stopped."""
    if not nodes:
        return [Check("corral up", "fail", "no `corral up` is running for this store; start one (jobs do not run without it)")]
    out = []
    for node in nodes:
        who = f"{node['name']} (pid {node['pid']} on {node['hostname']})"
        age = now - _utc(node["heartbeat_at"])
        if age > stale:
            out.append(
                Check(
                    "corral up", "fail",
                    f"{who}: last heartbeat {durations.format(age)} ago; it probably died without stopping; "
                    "restart it (its running runs are recovered as lost)",
                )
            )
        elif node.get("config_error"):
            first = str(node["config_error"]).splitlines()[0]
            out.append(Check("corral up", "warn", f"{who} runs an older job file: the new one has errors ({first}); fix it and save"))
        else:
            out.append(Check("corral up", "ok", f"{who}: heartbeat {durations.format(age)} ago"))
    return out


def channels(
    deliveries: Sequence[Mapping[str, Any]], configured: Sequence[str], now: datetime, *, window: timedelta = CHANNEL_WINDOW
) -> list[Check]:
    """Per configured channel: deliveries that failed for good, or are being retried, within ``window``."""
    if not configured:
        return [Check("channels", "ok", "no notification channels configured (notify: in the job file)")]
    out = []
    for name in configured:
        mine = [d for d in deliveries if d["channel"] == name and now - _utc(d["created_at"]) <= window]
        failed = [d for d in mine if d["status"] == "failed"]
        retrying = [d for d in mine if d["status"] == "pending" and int(d["attempts"] or 0) > 0]
        sent = [d for d in mine if d["status"] == "sent"]
        if failed:
            error = failed[0].get("last_error") or "unknown error"
            out.append(Check(f"channel {name}", "fail", f"{len(failed)} alert(s) not delivered in the last {durations.format(window)}; last error: {error}"))
        elif retrying:
            error = retrying[0].get("last_error") or "unknown error"
            out.append(Check(f"channel {name}", "warn", f"{len(retrying)} alert(s) being retried; last error: {error}"))
        else:
            out.append(Check(f"channel {name}", "ok", f"{len(sent)} sent in the last {durations.format(window)}"))
    return out


def disk(path: Path, free: int, total: int) -> Check:
    share = free / total if total else 0.0
    detail = f"{path}: {_size(free)} free of {_size(total)} ({share:.0%})"
    if share < DISK_FAIL:
        return Check("log disk", "fail", detail + "; runs will fail to write logs: free space or move log_dir")
    if share < DISK_WARN:
        return Check("log disk", "warn", detail + "; free space or lower log_max")
    return Check("log disk", "ok", detail)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}TB"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# -- gathering ---------------------------------------------------------------------------


def run_checks(config_path: Path, db: str | None, *, environ: Mapping[str, str], now: datetime) -> list[Check]:
    """Read everything doctor judges; never raises for what it checks."""
    from corral import config as config_mod
    from corral.store import migrate
    from corral.store.queries import Store, redact

    out: list[Check] = []
    try:
        cfg = config_mod.load(config_path, environ=environ)
    except errors.ConfigError as exc:
        problems = [str(p) for p in exc.problems]
        out.append(Check("job file", "fail", f"{len(problems)} problem(s); `corral validate` lists them all. First: {problems[0]}"))
        return out
    out.append(Check("job file", "ok", f"{cfg.settings.config_path}: {len(cfg.jobs)} job(s), no errors"))

    url = db or cfg.settings.store_url
    shown = redact(url).split("?")[0]
    if url.startswith("sqlite"):
        import sqlalchemy as sa

        file = sa.engine.make_url(url).database
        if file and file != ":memory:" and not Path(file).exists():
            out.append(Check("store", "fail", f"no store at {file}; `corral up` creates it on its first start"))
            out.append(_disk(cfg.settings.log_dir))
            return out
    store = None
    try:
        store = Store(url)
        current = migrate.current_revision(store.engine)
        out.append(Check("store", "ok", f"{shown} is reachable"))
        if current == migrate.HEAD:
            out.append(Check("schema", "ok", f"at head ({current})"))
        else:
            out.append(
                Check("schema", "fail", f"at {current or 'nothing'}, head is {migrate.HEAD}; `corral up` (or any command that opens the store) upgrades it")
            )
            out.append(_disk(cfg.settings.log_dir))
            return out
        out.extend(heartbeats(store.live_nodes(), now))
        out.extend(channels(store.list_deliveries(limit=1000), list(cfg.notify.channels), now))
    except Exception as exc:  # noqa: BLE001 - a broken store is what doctor reports, whatever the driver raised
        out.append(Check("store", "fail", f"{shown} is not reachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"))
    finally:
        if store is not None:
            store.close()
    out.append(_disk(cfg.settings.log_dir))
    return out


def _disk(log_dir: Path) -> Check:
    path = log_dir
    while not path.exists() and path != path.parent:
        path = path.parent  # not created yet: the disk it will be on
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return Check("log disk", "fail", f"{log_dir}: {exc.strerror or exc}")
    return disk(log_dir, usage.free, usage.total)
