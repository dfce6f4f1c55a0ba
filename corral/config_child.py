"""The job file for ``corral up``: where it is, and checking it in a child process.

Checking a job file needs YAML, pydantic and the models of :mod:`corral.config`:
about 15 MB that ``corral up`` would keep for months to use once per edit of
the file. So ``corral up`` checks the file in a short-lived child process
(``python -m corral.config_child PATH``), which sends back the finished
:class:`~corral.spec.Config` (or the list of problems) pickled. Short-lived
commands call :func:`corral.config.load` directly.

This module imports nothing heavy: it is imported by ``corral up`` itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral import errors
from corral.spec import Config

log = logging.getLogger("corral.config_child")

DEFAULT_FILE = "corral.yaml"

CHILD_TIMEOUT = 600.0
"""Seconds a child may take to check the file before it is read in this process instead."""


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """The job file to read: ``CORRAL_CONFIG`` if set, else ``./corral.yaml``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("CORRAL_CONFIG") or DEFAULT_FILE)


def load_in_child(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """What :func:`corral.config.load` returns or raises, computed in a child
    process so that this one never imports the checker.

    If the child cannot be used (it cannot start, it crashed, its answer does
    not unpickle), the file is read in this process: the same result, only
    with the checker's memory kept."""
    env = None if environ is None or environ is os.environ else dict(environ)
    try:
        # -P: the job file's directory (the cwd) must not shadow modules of the child.
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "corral.config_child", os.fspath(path)],
            capture_output=True,
            env=env,
            timeout=CHILD_TIMEOUT,
        )
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1])
        kind, value = pickle.loads(proc.stdout)
        if kind not in ("config", "problems"):
            raise RuntimeError(f"unexpected answer {kind!r}")
    except Exception as exc:  # noqa: BLE001 - any failure of the child means: do it here
        log.warning("could not check the job file in a child process (%s); checking it in this one", exc)
        from corral import config

        return config.load(path, environ=environ)
    if kind == "problems":
        raise errors.ConfigError(value)
    return value  # type: ignore[no-any-return]


def _child(argv: list[str]) -> int:
    """``python -m corral.config_child PATH``: the pickled result of config.load on stdout."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may reach the pickle's stream
    from corral import config

    answer: tuple[str, Any]
    try:
        answer = ("config", config.load(argv[0]))
    except errors.ConfigError as exc:
        answer = ("problems", exc.problems)
    out.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
