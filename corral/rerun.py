"""A new attempt of a finished run: ``corral retry`` and the dashboard's Retry buttons.

One function for both so they create the same run (same trigger, attempt,
``retry_of`` link and parameters) and refuse the same cases with the same
words. The caller wakes the engine and reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from corral import errors, pipeline
from corral.spec import JobSpec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run


@dataclass(frozen=True)
class Retry:
    """The new run's id and, for ``from_failed``, which steps it reruns and keeps."""

    run_id: int
    rerun: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        """``; reruns b, c, keeps a`` (empty for a whole retry)."""
        if not self.rerun:
            return ""
        return f"; reruns {', '.join(self.rerun)}" + (f", keeps {', '.join(self.kept)}" if self.kept else "")


def retry(store: Store, job: JobSpec, old: Run, *, from_failed: bool, now: datetime) -> Retry:
    """Create a pending attempt ``old.attempt + 1`` of ``old``, linked to it, with its parameters.

    With ``from_failed`` the worker keeps the steps that succeeded and reruns
    the others. Raises :class:`errors.Conflict` while ``old`` is still active
    or when every step succeeded, :class:`errors.CorralError` when
    ``from_failed`` is asked of a job without steps.
    """
    if old.active:
        raise errors.Conflict(f"run {old.id} of {old.job} is still {old.state}; retry it once it has ended")
    rerun: list[str] = []
    kept: list[str] = []
    if from_failed:
        if not job.steps:
            raise errors.CorralError(
                f"job {job.name} has no steps, so there is nothing to keep; use `corral retry {old.id}` to run it again"
            )
        before = {step.name: step.state for step in store.get_steps(old.id)}
        rerun = pipeline.to_rerun(job.steps, before, from_failed=True)
        if not rerun:
            raise errors.Conflict(
                f"every step of run {old.id} succeeded; nothing to rerun (use `corral retry {old.id}` to run all)"
            )
        kept = [s.name for s in job.steps if s.name not in rerun]
    new_id = store.create_run(
        job=job.name,
        state=t.PENDING,
        trigger="rerun_failed" if from_failed else "rerun",
        scheduled_for=now,
        now=now,
        admitted=False,
        attempt=old.attempt + 1,
        retry_of=old.id,
        params=json.loads(old.params) if old.params else None,
        message=f"retry of run {old.id}" + (" from its failed steps" if from_failed else ""),
    )
    if new_id is None:  # only slot runs can collide; a retry always inserts
        raise errors.StoreError(f"the store did not record the retry of run {old.id}")
    return Retry(new_id, tuple(rerun), tuple(kept))
