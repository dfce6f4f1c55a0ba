"""The JSON API under ``/api`` (described by ``/api/openapi.json``).

Handlers are plain functions run in a worker thread (the store is
synchronous). Bad input raises :mod:`corral.web.problems` errors or the
store's ``NotFound``/``Conflict``; the app turns them into ``{"error": ...}``
with the matching status.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from pathlib import Path

from starlette.requests import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from corral import errors
from corral.config import NAME_PATTERN
from corral.store import tables as t
from corral.store import Store
from corral.store.queries import Run
from corral.web import actions, inputs, openapi, problems, security, views
from corral.web import discovery as discovery_mod
from corral.web.auth import Principal
from corral.web.state import web_of
from corral.worker import log_path_for

RUNS_MAX_LIMIT = 1000
LOG_DEFAULT_LIMIT = 64 * 1024
LOG_MAX_LIMIT = 1024 * 1024
FORECAST_MAX_DAYS = 31.0
_NAME_RE = re.compile(NAME_PATTERN)


def _only(request: Request, allowed: Iterable[str]) -> Mapping[str, str]:
    """The query parameters, refusing any the endpoint does not know (a typo
    like ``?stat=failed`` would otherwise be silently ignored)."""
    known = tuple(allowed)
    for key in request.query_params:
        if key not in known:
            accepted = ", ".join(known) if known else "none"
            raise problems.BadRequest(f"unknown query parameter {key!r}; accepted: {accepted}")
    return request.query_params


def _run_id(request: Request) -> int:
    return inputs.run_id(request.path_params["id"])


def log_file(request: Request, run: Run) -> Path:
    """Where ``run``'s output is (recorded path, else where the worker would put it)."""
    if run.log_path:
        return Path(run.log_path)
    settings = web_of(request).jobfile.current().config.settings
    return log_path_for(settings, run.job, run.id)


# -- health and description ------------------------------------------------------


def healthz(request: Request) -> Response:
    web = web_of(request)
    snap = web.jobfile.current()
    try:
        engines = len(web.store.live_nodes())
    except errors.StoreError:
        return JSONResponse({"status": "unavailable", "store": "unreachable"}, status_code=503)
    return JSONResponse(
        {
            "status": "ok",
            "store": "ok",
            "jobs": len(snap.config.jobs),
            "config_ok": snap.error is None,
            "engines": engines,
        }
    )


def openapi_doc(request: Request) -> Response:
    _only(request, ())
    return JSONResponse(openapi.document())


# -- jobs ----------------------------------------------------------------------------


def jobs(request: Request) -> Response:
    query = _only(request, ("q",))
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    rows = views.job_rows(snap.config, web.store, now, query=query.get("q", ""))
    return JSONResponse({"jobs": [r.as_dict() for r in rows], "config_error": snap.error, "now": now.isoformat()})


def job(request: Request) -> Response:
    _only(request, ())
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    spec = views.find_job(snap.config, request.path_params["name"])
    detail = views.job_detail(snap.config, web.store, spec, now)
    recent = web.store.list_runs(job=spec.name, limit=20)
    data = detail.as_dict(recent)
    data["config_error"] = snap.error
    return JSONResponse(data)


def job_forecast(request: Request) -> Response:
    query = _only(request, ("days", "duration"))
    web = web_of(request)
    now = web.clock.now()
    spec = views.find_job(web.jobfile.current().config, request.path_params["name"])
    days = inputs.number(query, "days", 7.0, 0.01, FORECAST_MAX_DAYS)
    duration = inputs.duration(query, "duration", low=timedelta(seconds=1), high=timedelta(days=31))
    view = views.forecast_for(spec, views.duration_stats(web.store, spec.name), now, days=days, duration=duration)
    return JSONResponse(view.as_dict())


def trigger(request: Request) -> Response:
    _only(request, ())
    web = web_of(request)
    spec = views.find_job(web.jobfile.current().config, request.path_params["name"])
    body = inputs.json_object(security.body_of(request.scope), allowed=("params",))
    given = body.get("params")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise problems.BadRequest('params must be a JSON object of name to value, like {"params": {"region": "eu"}}')
    run = actions.trigger(web.store, spec, _principal(request), web.clock.now(), params=given)
    return JSONResponse(run.as_dict(), status_code=201, headers={"Location": f"/api/runs/{run.id}"})


def pause(request: Request) -> Response:
    return _set_paused(request, True)


def resume(request: Request) -> Response:
    return _set_paused(request, False)


def _set_paused(request: Request, paused: bool) -> Response:
    _only(request, ())
    web = web_of(request)
    spec = views.find_job(web.jobfile.current().config, request.path_params["name"])
    inputs.json_object(security.body_of(request.scope))
    actions.set_paused(web.store, spec, paused, _principal(request), web.clock.now())
    state = web.store.job_states().get(spec.name, {})
    paused_at = state.get("paused_at")
    return JSONResponse(
        {
            "job": spec.name,
            "paused": bool(state.get("paused")),
            "paused_at": paused_at.isoformat() if paused_at else None,
            "paused_by": state.get("paused_by"),
        }
    )


def _principal(request: Request) -> Principal:
    return security.require_principal(request.scope)


# -- runs --------------------------------------------------------------------------


def runs(request: Request) -> Response:
    query = _only(request, ("job", "state", "limit", "before", "since", "until"))
    web = web_of(request)
    job_name = query.get("job") or None
    if job_name is not None and not _NAME_RE.match(job_name):
        raise problems.BadRequest(
            f"job={job_name[:80]!r} is not a job name; "
            "names are lower-case letters, digits and . _ - like nightly-batch"
        )
    states = inputs.choices(request.query_params.getlist("state"), "state", t.ALL_STATES)
    limit = inputs.integer(query, "limit", 50, 1, RUNS_MAX_LIMIT) or 50
    before = inputs.integer(query, "before", None, 1, inputs.MAX_ID)
    since = inputs.instant(query, "since")
    until = inputs.instant(query, "until")
    if since is not None and until is not None and since > until:
        raise problems.BadRequest("since is after until; swap them")
    found = web.store.list_runs(
        job=job_name, states=states or None, limit=limit + 1, before_id=before, since=since, until=until
    )
    page = found[:limit]
    if job_name is not None and not page and before is None:
        cfg = web.jobfile.current().config
        if job_name not in cfg.jobs and not web.store.list_runs(job=job_name, limit=1):
            views.find_job(cfg, job_name)  # 404 with a did-you-mean: probably a typo
    return JSONResponse(
        {"runs": [r.as_dict() for r in page], "next_before": page[-1].id if len(found) > limit else None}
    )


def run(request: Request) -> Response:
    _only(request, ())
    return JSONResponse(web_of(request).store.get_run(_run_id(request)).as_dict())


def run_log(request: Request) -> Response:
    query = _only(request, ("offset", "limit"))
    web = web_of(request)
    found = web.store.get_run(_run_id(request))
    offset = inputs.integer(query, "offset", 0, 0, inputs.MAX_ID) or 0
    limit = inputs.integer(query, "limit", LOG_DEFAULT_LIMIT, 1, LOG_MAX_LIMIT) or LOG_DEFAULT_LIMIT
    secrets = views.log_secrets(web.jobfile.current().config, found.job)
    chunk = views.read_log(log_file(request, found), offset, limit, secrets=secrets, live=found.active)
    data = chunk.as_dict()
    data.update({"run": found.id, "state": found.state, "active": found.active})
    return JSONResponse(data)


def cancel(request: Request) -> Response:
    _only(request, ())
    web = web_of(request)
    run_id = _run_id(request)
    inputs.json_object(security.body_of(request.scope))
    return JSONResponse(actions.cancel(web.store, run_id, _principal(request), web.clock.now()).as_dict())


def retry(request: Request) -> Response:
    """A new attempt of an ended run (``?from_failed=1``: only its steps that did not succeed)."""
    query = _only(request, ("from_failed",))
    web = web_of(request)
    from_failed = inputs.flag(query, "from_failed")
    inputs.json_object(security.body_of(request.scope))
    old = web.store.get_run(_run_id(request))
    spec = views.find_job(web.jobfile.current().config, old.job)
    made = actions.retry(web.store, spec, old, from_failed, _principal(request), web.clock.now())
    return JSONResponse(made.as_dict(), status_code=201, headers={"Location": f"/api/runs/{made.id}"})


def run_steps(request: Request) -> Response:
    """A pipeline run's steps (job-file order, with their needs), outputs and result."""
    _only(request, ())
    web = web_of(request)
    found = web.store.get_run(_run_id(request))
    view = views.run_steps(web.jobfile.current().config, web.store, found)
    return JSONResponse(view.as_dict())


# -- discovery inventory ----------------------------------------------------------------


def discovery(request: Request) -> Response:
    query = _only(request, ("q", "host", "kind", "finding", "flagged"))
    web = web_of(request)
    found = discovery_mod.view(web.inventory, discovery_mod.Filter.of(query))
    return JSONResponse(found.as_dict())


# -- live log tail (Server-Sent Events) ----------------------------------------------

STREAM_POLL = 0.5
"""Seconds between looks at the log file and the run's state."""
STREAM_KEEPALIVE = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""
STREAM_CHUNK = 64 * 1024


def _event(kind: str, data: dict[str, object], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def run_log_stream(request: Request) -> Response:
    """The run's log from ``offset`` (or the ``Last-Event-ID`` a reconnecting
    browser sends), then new output as it is written, until the run ends.

    Events: ``log`` ({offset, next_offset, size, text}; its id is next_offset,
    so a reconnect resumes where it stopped), ``reset`` (the log was capped:
    start over from 0), ``state`` (the run changed state) and ``end`` (the run
    is final and everything was sent; the server closes the stream).
    """
    query = _only(request, ("offset",))
    web = web_of(request)
    found = web.store.get_run(_run_id(request))
    offset = inputs.integer(query, "offset", 0, 0, inputs.MAX_ID) or 0
    resume = request.headers.get("last-event-id", "").strip()
    if resume.isascii() and resume.isdigit() and len(resume) < 19:
        offset = int(resume)
    path = log_file(request, found)
    secrets = views.log_secrets(web.jobfile.current().config, found.job)
    events = _tail(web.store, found, path, offset, secrets)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _tail(store: Store, run: Run, path: Path, offset: int, secrets: tuple[bytes, ...]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    state = run.state
    active = run.active
    quiet_since = loop.time()
    yield b"retry: 2000\n\n"
    yield _event("state", {"state": state, "active": active})
    while True:
        chunk = await run_in_threadpool(views.read_log, path, offset, STREAM_CHUNK, secrets=secrets, live=active)
        if chunk.exists and chunk.size < offset:
            offset = 0
            yield _event("reset", {"size": chunk.size}, 0)
            continue
        if chunk.next_offset > offset:
            offset = chunk.next_offset
            quiet_since = loop.time()
            yield _event("log", chunk.as_dict(), offset)
            if offset < chunk.size:
                continue  # more is already written: send it at once
        if not active:
            yield _event("end", {"state": state, "next_offset": offset})
            return
        await asyncio.sleep(STREAM_POLL)
        try:
            now_run = await run_in_threadpool(store.get_run, run.id)
        except errors.CorralError:
            yield b": store unavailable, retrying\n\n"
            continue
        if now_run.state != state:
            state, active = now_run.state, now_run.active
            yield _event("state", {"state": state, "active": active})
            # A final state: the loop reads what is left (no longer held back), then ends.
        elif loop.time() - quiet_since > STREAM_KEEPALIVE:
            quiet_since = loop.time()
            yield b": keep-alive\n\n"


# -- audit log -------------------------------------------------------------------------

AUDIT_MAX_LIMIT = 500


def audit(request: Request) -> Response:
    query = _only(request, ("job", "actor", "limit", "before"))
    web = web_of(request)
    limit = inputs.integer(query, "limit", 50, 1, AUDIT_MAX_LIMIT) or 50
    before = inputs.integer(query, "before", None, 1, inputs.MAX_ID)
    job_name = query.get("job") or None
    if job_name is not None and not _NAME_RE.match(job_name):
        raise problems.BadRequest(f"job={job_name[:80]!r} is not a job name; names are like nightly-batch")
    actor = query.get("actor") or None
    if actor is not None and len(actor) > 128:
        raise problems.BadRequest("actor is longer than any name (128 characters); pass a user or token name")
    found = web.store.list_audit(job=job_name, actor=actor, limit=limit + 1, before_id=before)
    page = found[:limit]
    return JSONResponse(
        {"entries": [e.as_dict() for e in page], "next_before": page[-1].id if len(found) > limit else None}
    )
