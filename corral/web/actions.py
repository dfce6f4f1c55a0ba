"""What the buttons and the API's POSTs do, in one place for both.

Each action changes the store through its named functions, writes who did
it to the audit log (``/audit``, ``GET /api/audit``), then wakes a running
``corral up`` so it acts at once instead of at its next poll. The audit entry
follows the change instead of sharing its transaction: a failed change
leaves no entry, and a crash between the two loses one entry at most.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from corral import errors, rerun
from corral import params as params_mod
from corral.engine import notify_running_engines
from corral.spec import JobSpec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Run
from corral.web.auth import Principal

log = logging.getLogger("corral.web")


def wake_engine(store: Store) -> None:
    """Wake a running ``corral up`` on this host: it acts on the change now."""
    try:
        notify_running_engines(store)
    except Exception:  # noqa: BLE001 - the change is stored; the engine also polls
        log.warning("could not wake the running corral; it will notice within its poll interval", exc_info=True)


def _audit(
    store: Store,
    by: Principal,
    action: str,
    now: datetime,
    *,
    job: str | None = None,
    run_id: int | None = None,
    detail: str | None = None,
) -> None:
    store.record_audit(actor=by.name, role=by.role, action=action, now=now, job=job, run_id=run_id, detail=detail)


def trigger(
    store: Store, job: JobSpec, by: Principal, now: datetime, params: Mapping[str, Any] | None = None
) -> Run:
    """A manual run of ``job``, waiting for the engine to apply its overlap policy.

    ``params`` (text from a form, or typed JSON values) are checked against
    the job's declared parameters by :func:`params.resolve`; a bad or unknown
    one raises :class:`errors.ParamError` and nothing is created. The values
    reach the job's processes only as ``CORRAL_PARAM_*`` environment variables.
    """
    if job.monitor is not None:
        raise errors.Conflict(f"{job.name} is a monitor-only job: corral does not run it, it watches its pings (docs/alerts.md); replace monitor with run to let corral run it")
    values = params_mod.resolve(job.params, params or {}, job=job.name)
    run_id = store.create_run(
        job=job.name, state=t.PENDING, trigger="manual", scheduled_for=now, now=now, admitted=False,
        params=values or None,
    )
    if run_id is None:  # only slot runs can collide; a manual one always inserts
        raise RuntimeError(f"the store did not record a manual run of {job.name}")
    log.info("%s triggered run %s of %s", by.name, run_id, job.name)
    given = ", ".join(f"{k}={params_mod.text(v)}" for k, v in values.items())
    detail = "manual run" + (f" with {given}" if given else "")
    _audit(store, by, "trigger", now, job=job.name, run_id=run_id, detail=detail[:500])
    wake_engine(store)
    return store.get_run(run_id)


def cancel(store: Store, run_id: int, by: Principal, now: datetime) -> Run:
    """Cancel a waiting run, or ask the node running it to stop it."""
    run = store.request_stop(run_id, "cancel", now=now)
    log.info("%s cancelled run %s of %s (%s)", by.name, run.id, run.job, run.state)
    detail = "cancelled before it started" if run.state == t.CANCELLED else "asked the node running it to stop it"
    _audit(store, by, "cancel", now, job=run.job, run_id=run.id, detail=detail)
    wake_engine(store)
    return run


def retry(store: Store, job: JobSpec, old: Run, from_failed: bool, by: Principal, now: datetime) -> Run:
    """A new attempt of the ended run ``old`` (see :func:`corral.rerun.retry`)."""
    made = rerun.retry(store, job, old, from_failed=from_failed, now=now)
    log.info("%s retried run %s of %s as run %s%s", by.name, old.id, job.name, made.run_id, made.note)
    how = "from its failed steps" if from_failed else "all of it"
    _audit(store, by, "retry", now, job=job.name, run_id=made.run_id, detail=f"retry of run {old.id}, {how}{made.note}")
    wake_engine(store)
    return store.get_run(made.run_id)


def set_paused(store: Store, job: JobSpec, paused: bool, by: Principal, now: datetime) -> None:
    store.set_paused(job.name, paused, now=now, by=by.name)
    log.info("%s %s %s", by.name, "paused" if paused else "resumed", job.name)
    _audit(store, by, "pause" if paused else "resume", now, job=job.name)
    wake_engine(store)
