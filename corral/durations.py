"""Durations as people write them: ``90s``, ``30m``, ``26h``, ``2d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from corral import errors

_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse(text: str | int | float) -> timedelta:
    """Parse ``90s``, ``30m``, ``26h``, ``2d``, ``1h30m`` or a number of seconds."""
    if isinstance(text, bool):
        raise errors.DurationError(f"{text!r} is not a duration; write it like 90s, 30m, 26h or 2d")
    if isinstance(text, (int, float)):
        if text < 0:
            raise errors.DurationError(f"{text} is negative; a duration must be 0 or more")
        return timedelta(seconds=text)
    raw = str(text).strip().lower().replace(" ", "")
    if not raw:
        raise errors.DurationError("empty duration; write it like 90s, 30m, 26h or 2d")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    pos = 0
    total = 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise errors.DurationError(
            f'"{text}" is not a duration; write a number with a unit s, m, h, d or w, like 90s, 30m, 26h, 2d or 1h30m'
        )
    return timedelta(seconds=total)


def format(delta: timedelta | float | None) -> str:
    """Short human form: ``23h12m``, ``4m05s``, ``850ms``."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{int(round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f}s" if seconds < 10 and seconds != int(seconds) else f"{sign}{int(seconds)}s"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours}h" if hours else f"{sign}{days}d"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    return f"{sign}{minutes}m{secs:02d}s"


def spec(delta: timedelta) -> str:
    """The duration as a job file would write it, in one unit: ``30h``, ``90m``, ``2d``."""
    seconds = int(round(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
