"""``wait_for:`` conditions a pending run waits for before it starts.

Three parts, kept apart so the decision can be tested with fixed instants:

- :func:`parse` turns one YAML item (``{pid_file: /run/collect.pid, timeout: 12h}``)
  into a :class:`~corral.spec.WaitCondition` or raises :class:`BadCondition`
  with a message the job-file checker reports as is;
- :func:`check` looks at the world once (a PID file and the process it names,
  the process table, a path, the store through ``job_running``, a TCP port)
  and says whether one condition holds now;
- :func:`decide` is pure: given what holds, when the wait began and ``now``,
  the run starts, keeps waiting (with the next instant to look again) or
  fails with reason ``wait_timeout``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from corral import durations, errors
from corral.spec import DEFAULT_WAIT_TIMEOUT, WAIT_KINDS, WaitCondition

WAIT_TIMEOUT = "wait_timeout"
"""Reason of a run that gave up waiting."""
WAITING_PREFIX = "waiting for: "
"""A pending run whose message starts with this is waiting (``corral runs`` shows ``waiting``)."""
TCP_CONNECT_TIMEOUT = 0.5
"""Seconds a ``tcp`` check waits for the port to answer (the engine loop waits with it)."""

_EXAMPLES = {
    "pid_file": "{pid_file: /run/collector.pid}",
    "process": '{process: "collector.py --site"}',
    "path": "{path: /data/ready.flag}",
    "job_idle": "{job_idle: collect}",
    "tcp": '{tcp: "db.local:5432"}',
}


class BadCondition(ValueError):
    """A ``wait_for`` item is not valid; ``key`` names the offending key when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _examples() -> str:
    return ", ".join(_EXAMPLES.values())


def parse(item: Any, *, base: Path) -> WaitCondition:
    """One ``wait_for`` item as a condition; relative paths resolve against ``base``."""
    if not isinstance(item, dict):
        shown = f'"{item}"' if isinstance(item, str) else "a list" if isinstance(item, list) else str(item)
        raise BadCondition(f"{shown} is not a condition; write one of {_examples()}")
    kinds = [key for key in item if key in WAIT_KINDS]
    unknown = [key for key in item if key not in WAIT_KINDS and key != "timeout"]
    if unknown:
        import difflib

        word = str(unknown[0])
        close = [k for k in WAIT_KINDS if k.startswith(word) or word.startswith(k)]  # "pid", "process_name"
        close = close or difflib.get_close_matches(word, [*WAIT_KINDS, "timeout"], n=1, cutoff=0.6)
        hint = f'did you mean "{close[0]}"?' if close else f"valid keys are {', '.join(WAIT_KINDS)} and timeout"
        raise BadCondition(f'unknown key "{unknown[0]}" in a condition; {hint}', unknown[0])
    if not kinds:
        raise BadCondition(f"a condition needs one of {', '.join(WAIT_KINDS)}; write it like {_examples()}")
    if len(kinds) > 1:
        raise BadCondition(
            f"one condition names both {kinds[0]} and {kinds[1]}; write each as its own list item, "
            f"like [{_EXAMPLES[kinds[0]]}, {_EXAMPLES[kinds[1]]}]"
        )
    kind = kinds[0]
    value = item[kind]
    if isinstance(value, int) and not isinstance(value, bool) and kind in ("process", "path", "pid_file"):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BadCondition(f"{kind} needs text; write it like {_EXAMPLES[kind]}", kind)
    timeout = DEFAULT_WAIT_TIMEOUT
    if "timeout" in item:
        timeout = parse_duration(item["timeout"], "timeout")
    target = value
    if kind in ("pid_file", "path"):
        path = Path(value).expanduser()
        target = str(path if path.is_absolute() else base / path)
    elif kind == "tcp":
        host, port = split_host_port(value)
        target = f"{host}:{port}"
    return WaitCondition(kind=kind, target=target, timeout=timeout)  # type: ignore[arg-type]


def parse_duration(value: Any, key: str) -> timedelta:
    """A duration longer than 0 (``timeout``, ``poll``)."""
    if isinstance(value, (bool, dict, list)) or value is None:
        raise BadCondition(f"{key} needs a duration like 90s, 30m or 2h", key)
    try:
        delta = durations.parse(value)
    except errors.DurationError as exc:
        raise BadCondition(f"{key}: {exc}", key) from exc
    if delta <= timedelta(0):
        raise BadCondition(f"{key} must be longer than 0, like 5s or 1h", key)
    return delta


def split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadCondition(f'"{value}" is not host:port; write it like {_EXAMPLES["tcp"]}', "tcp")
    return host, int(port)


def describe(cond: WaitCondition) -> str:
    """What a condition waits for, in words (for ``corral runs`` and failure messages)."""
    if cond.kind == "pid_file":
        return f"the process in {cond.target} to exit"
    if cond.kind == "process":
        return f'no process matching "{cond.target}"'
    if cond.kind == "path":
        return f"{cond.target} to exist"
    if cond.kind == "job_idle":
        return f"job {cond.target} to be idle"
    return f"{cond.target} to answer"


# ---------------------------------------------------------------------------
# Looking at the world


def _alive(pid: int) -> bool:
    import psutil

    try:
        # A zombie has exited; it only waits for its parent to read its status.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def pid_file_exited(path: str) -> tuple[bool, str]:
    """(the process named by the PID file has exited, detail). A missing PID
    file means nothing is running; a file without a number keeps the wait
    going (it may be half written)."""
    try:
        text = Path(path).read_text(errors="replace").strip()
    except FileNotFoundError:
        return True, "no pid file"
    except OSError as exc:
        return False, f"cannot read {path}: {exc.strerror or exc}"
    first = text.split()[0] if text.split() else ""
    if not first.isdigit() or int(first) <= 0:
        return False, f"{path} holds no pid"
    pid = int(first)
    return (not _alive(pid)), f"pid {pid}"


def process_gone(needle: str) -> tuple[bool, str]:
    """(no process other than corral's own has ``needle`` in its command line, detail)."""
    import psutil

    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        info = proc.info
        if info["pid"] == me or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info.get("cmdline") or ())
        if needle in cmdline:
            return False, f"pid {info['pid']}"
    return True, ""


def tcp_answers(target: str, *, timeout: float = TCP_CONNECT_TIMEOUT) -> bool:
    host, port = split_host_port(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check(cond: WaitCondition, *, job_running: Callable[[str], bool]) -> tuple[bool, str]:
    """(whether ``cond`` holds right now, a short detail like the pid waited on)."""
    if cond.kind == "pid_file":
        return pid_file_exited(cond.target)
    if cond.kind == "process":
        return process_gone(cond.target)
    if cond.kind == "path":
        return os.path.exists(cond.target), ""
    if cond.kind == "job_idle":
        return not job_running(cond.target), ""
    return tcp_answers(cond.target), ""


# ---------------------------------------------------------------------------
# The decision


@dataclass(frozen=True)
class Verdict:
    """``met``: start the run; ``waiting``: look again at ``next_check``;
    ``timed_out``: fail the run with reason ``wait_timeout``."""

    state: Literal["met", "waiting", "timed_out"]
    message: str = ""
    next_check: datetime | None = None


def decide(
    conditions: Sequence[WaitCondition],
    held: Mapping[int, tuple[bool, str]],
    *,
    since: datetime,
    now: datetime,
    poll: timedelta,
) -> Verdict:
    """Pure: ``held`` maps each condition's index to (holds, detail); ``since``
    is when the run began to wait. Each condition has its own timeout."""
    unmet = [(i, cond) for i, cond in enumerate(conditions) if not held.get(i, (False, ""))[0]]
    if not unmet:
        return Verdict("met")

    def words(i: int, cond: WaitCondition) -> str:
        detail = held.get(i, (False, ""))[1]
        return describe(cond) + (f" ({detail})" if detail else "")

    expired = [(i, cond) for i, cond in unmet if now >= since + cond.timeout]
    if expired:
        parts = [f"{words(i, cond)} within {durations.spec(cond.timeout)}" for i, cond in expired]
        return Verdict("timed_out", "gave up waiting for " + "; ".join(parts))
    deadline = min(since + cond.timeout for _, cond in unmet)
    return Verdict(
        "waiting",
        WAITING_PREFIX + "; ".join(words(i, cond) for i, cond in unmet),
        next_check=min(now + poll, deadline),
    )


def is_waiting(state: str, message: str | None) -> bool:
    """Whether a run is a pending run held back by ``wait_for``."""
    return state == "pending" and message is not None and message.startswith(WAITING_PREFIX)
