"""Typed job parameters (``params:``): checking given values, and the environment.

Pure: ``corral trigger JOB --param k=v`` and the worker both call
:func:`resolve`. Values reach a job only as ``CORRAL_PARAM_<NAME>``
environment variables, never pasted into a shell string, so quotes, ``;``,
``$()`` and newlines in a value are just characters.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from corral import errors
from corral.spec import ParamSpec

Value = str | int | bool
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_INT = re.compile(r"^[+-]?\d+$")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` from the command line into a mapping (the first ``=`` splits)."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise errors.ParamError(f'--param {pair!r} is not NAME=VALUE; write it like --param region=eu')
        out[name.strip()] = value
    return out


def convert(param: ParamSpec, value: Any) -> Value:
    """``value`` (text from a command line, or a typed value from YAML or the store)
    as the parameter's type; ParamError saying what is valid otherwise."""
    if param.type == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.match(value.strip()):
            return int(value.strip())
        raise errors.ParamError(f"parameter {param.name}: {value!r} is not a whole number, like 3 or -1")
    if param.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise errors.ParamError(f"parameter {param.name}: {value!r} is not true or false (also yes/no, 1/0)")
    if not isinstance(value, str) or isinstance(value, bool):
        raise errors.ParamError(f"parameter {param.name}: {value!r} is not text")
    if param.type == "choice" and value not in param.choices:
        close = difflib.get_close_matches(value, list(param.choices), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise errors.ParamError(
            f"parameter {param.name}: {value!r} is not one of {', '.join(param.choices)}{hint}"
        )
    return value


def resolve(params: Sequence[ParamSpec], given: Mapping[str, Any], *, job: str) -> dict[str, Value]:
    """Every parameter's value: the given one (checked) or its default.

    Unknown names and missing required parameters are errors; all problems
    are reported in one message."""
    known = {param.name: param for param in params}
    problems: list[str] = []
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            if close:
                problems.append(f'unknown parameter "{name}"; did you mean "{close[0]}"?')
            elif known:
                problems.append(f'unknown parameter "{name}"; job {job} takes {", ".join(known)}')
            else:
                problems.append(f'unknown parameter "{name}"; job {job} takes no parameters')
    values: dict[str, Value] = {}
    for param in params:
        if param.name in given:
            try:
                values[param.name] = convert(param, given[param.name])
            except errors.ParamError as exc:
                problems.append(str(exc))
        elif param.default is not None:
            values[param.name] = param.default
        else:
            problems.append(f"parameter {param.name} is required; pass --param {param.name}=VALUE")
    if problems:
        raise errors.ParamError("; ".join(problems))
    return values


def text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env(values: Mapping[str, Value]) -> dict[str, str]:
    """``CORRAL_PARAM_<NAME>`` variables for a run's processes."""
    return {f"CORRAL_PARAM_{name.upper()}": text(value) for name, value in values.items()}
