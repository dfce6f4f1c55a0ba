"""Job-after-job triggers (``trigger: {after: JOB, on: success|failure|always}``).

Pure: which final states a trigger fires on, which jobs a finished run starts,
and trigger loops (a job file is rejected when following triggers from a job
can lead back to it).

A run started by a trigger has trigger ``upstream``. The upstream run's id is
kept in the run's ``params`` JSON under :data:`UPSTREAM_KEY` (parameter names
start with a letter, so it never collides with one; a new column would need a
migration) and reaches the process as ``CORRAL_UPSTREAM_RUN_ID``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral import pipeline
from corral.spec import JobSpec

TRIGGER = "upstream"
"""The ``trigger`` of runs started because another job's run ended."""
UPSTREAM_KEY = "_upstream_run"
"""Key of the upstream run id in a triggered run's ``params`` JSON."""
ENV = "CORRAL_UPSTREAM_RUN_ID"

ON_STATES: dict[str, tuple[str, ...]] = {
    "success": ("succeeded",),
    "failure": ("failed", "timed_out", "lost"),
    "always": ("succeeded", "failed", "timed_out", "lost"),
}
"""Final states each ``on`` fires for. Cancelled and skipped runs never fire:
a person stopped the chain, or nothing ran."""


def fires(on: str, state: str) -> bool:
    return state in ON_STATES.get(on, ())


@dataclass(frozen=True)
class Start:
    """A run to create: ``job`` because run ``upstream_run`` of ``upstream_job`` ended in ``state``."""

    job: str
    upstream_job: str
    upstream_run: int
    state: str
    on: str

    @property
    def message(self) -> str:
        return f"started after run {self.upstream_run} of {self.upstream_job} {self.state} (trigger on: {self.on})"

    @property
    def params(self) -> dict[str, Any]:
        return {UPSTREAM_KEY: self.upstream_run}


def starts(jobs: Mapping[str, JobSpec], ended: Iterable[tuple[str, int, str]]) -> list[Start]:
    """The runs to create for runs that ended, as ``(job, run id, final state)``.

    One run per downstream job and upstream run, even when several of its
    triggers match; disabled jobs start nothing."""
    out: list[Start] = []
    seen: set[tuple[str, int]] = set()
    ended = list(ended)
    for job in jobs.values():
        if not job.triggers or not job.enabled:
            continue
        for upstream_job, run_id, state in ended:
            for trig in job.triggers:
                if trig.after == upstream_job and fires(trig.on, state) and (job.name, run_id) not in seen:
                    seen.add((job.name, run_id))
                    out.append(Start(job.name, upstream_job, run_id, state, trig.on))
    return out


def find_loop(graph: Sequence[tuple[str, Sequence[str]]]) -> list[str] | None:
    """A loop of ``(job, [jobs it runs after])`` as ``[a, b, ..., a]`` in the
    order runs would follow (a's end starts b ...), or None."""
    cycle = pipeline.find_cycle(graph)
    return None if cycle is None else list(reversed(cycle))


def upstream_of(params_json: str | None) -> int | None:
    """The upstream run id kept in a run's ``params`` JSON, if any."""
    if not params_json:
        return None
    try:
        value = json.loads(params_json).get(UPSTREAM_KEY)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def user_params(given: Mapping[str, Any]) -> dict[str, Any]:
    """The job's own parameters of a run's ``params`` (corral's keys start with ``_``)."""
    return {key: value for key, value in given.items() if not key.startswith("_")}
