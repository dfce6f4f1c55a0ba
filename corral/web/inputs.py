"""Reading request values: path ids, query parameters, bodies.

Each function returns a clean value or raises :class:`problems.BadRequest`
naming the parameter, the value and what would be accepted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from corral import config as config_mod
from corral import durations, errors
from corral.web import problems

MAX_ID = 2**63 - 1
"""Largest id a store can hold (BIGINT); larger numbers are not ids."""


def _show(value: str) -> str:
    return json.dumps(value if len(value) <= 80 else value[:77] + "...", ensure_ascii=False)


def run_id(text: str) -> int:
    """A run id from a path segment like ``41`` (``#41`` also accepted)."""
    raw = text.strip().lstrip("#")
    if not raw.isascii() or not raw.isdigit():
        raise problems.BadRequest(f"{_show(text)} is not a run id; run ids are whole numbers like 41")
    value = int(raw)
    if not 1 <= value <= MAX_ID:
        raise problems.BadRequest(f"{_show(text)} is not a run id; run ids are whole numbers from 1 to {MAX_ID}")
    return value


def integer(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    """Whole number parameter within [low, high]; ``default`` when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        raise problems.BadRequest(f"{name}={_show(raw)} is not a whole number; use one from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise problems.BadRequest(f"{name}={value} is out of range; use a whole number from {low} to {high}")
    return value


def number(query: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """Decimal number parameter within [low, high]."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise problems.BadRequest(f"{name}={_show(raw)} is not a number; use one from {low:g} to {high:g}")
    if not low <= value <= high:
        raise problems.BadRequest(f"{name}={value:g} is out of range; use a number from {low:g} to {high:g}")
    return value


def choices(values: Sequence[str], name: str, allowed: Sequence[str]) -> list[str]:
    """Values of a repeatable or comma-separated parameter, each one of ``allowed``."""
    out: list[str] = []
    for raw in values:
        for item in raw.split(","):
            item = item.strip()
            if not item:
                continue
            if item not in allowed:
                raise problems.BadRequest(f"{name}={_show(item)} is not valid; use one of {', '.join(allowed)}")
            if item not in out:
                out.append(item)
    return out


# An unencoded "+" in a query string arrives as a space: "...T01:00:00 09:00".
_PLUS_AS_SPACE = re.compile(r"^(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def instant(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO-8601 instant with a UTC offset, as UTC."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    text = _PLUS_AS_SPACE.sub(r"\1+\2", raw.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise problems.BadRequest(
            f"{name}={_show(raw)} is not an ISO-8601 instant; write it like 2026-01-31T01:00:00+09:00"
        ) from None
    if value.tzinfo is None:
        raise problems.BadRequest(f"{name}={_show(raw)} has no UTC offset; add one, like {raw.strip()}Z or +09:00")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise problems.BadRequest(
            f"{name}={_show(raw)} is out of range; use an instant between years 1 and 9999"
        ) from None


def duration(
    query: Mapping[str, str], name: str, *, low: timedelta, high: timedelta, default: timedelta | None = None
) -> timedelta | None:
    """A duration like ``90s``, ``26h``, ``2d`` within [low, high]."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = durations.parse(raw)
    except errors.DurationError as exc:
        raise problems.BadRequest(f"{name}: {exc}") from None
    if not low <= value <= high:
        raise problems.BadRequest(
            f"{name}={_show(raw)} is out of range; "
            f"use a duration from {durations.format(low)} to {durations.format(high)}"
        )
    return value


def zone(query: Mapping[str, str], name: str, default: str) -> str:
    """An IANA time zone name, with a did-you-mean when it is unknown."""
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return config_mod.check_timezone(raw.strip())
    except ValueError as exc:  # pydantic's custom error is a ValueError carrying our message
        raise problems.BadRequest(f"{name}: {exc}") from None


def json_object(body: bytes, *, allowed: Sequence[str] = ()) -> dict[str, Any]:
    """A request body that is empty or a JSON object with only ``allowed`` keys."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise problems.BadRequest(f"the body is not valid JSON ({exc}); send a JSON object like {{}}") from None
    if not isinstance(data, dict):
        raise problems.BadRequest("the body must be a JSON object like {}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none yet"
        raise problems.BadRequest(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in the body; accepted: {accepted}"
        )
    return data


_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


def flag(query: Mapping[str, str], name: str) -> bool:
    """A yes/no parameter: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (absent: no)."""
    raw = query.get(name)
    if raw is None or raw.strip() == "":
        return False
    text = raw.strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise problems.BadRequest(f"{name}={_show(raw)} is not a yes or no; use {name}=1 or {name}=0")
