"""Server-rendered pages. Everything is readable without JavaScript; the one
script (``static/corral.js``) only tails the log of an active run and asks
before cancelling.

Buttons are forms that POST with the CSRF token and come back here with a
303 redirect to the page they were on (``next``), plus a notice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from corral import durations, errors, masking
from corral.discover import inventory as inventory_mod
from corral.store import Store
from corral.web import accounts, actions, api, charts, inputs, problems, security, views
from corral.web import auth as auth_mod
from corral.web import discovery as discovery_mod
from corral.web.jobfile import Snapshot
from corral.web.state import web_of

log = logging.getLogger("corral.web")

LOG_PAGE_BYTES = 256 * 1024
"""How much of a log the run page shows (the tail); the rest is one click away."""
HISTORY_PAGE = 50
JOBS_PAGE = 200  # jobs per page of the jobs page: keeps it light with thousands of jobs
FORECAST_ROWS = 48
STALE_HEARTBEAT = timedelta(seconds=90)
"""Three missed heartbeats (``corral up`` beats every 30 s): probably dead."""

NOTICES = {
    "triggered": "Run {run} triggered; it starts as soon as the job's overlap policy allows.",
    "retried": "Run {run} created as a retry; it starts as soon as the job's overlap policy allows.",
    "cancelled": "Run {run} cancelled.",
    "stopping": "Run {run} is being stopped (TERM, then KILL after the job's kill_grace).",
    "paused": "Job paused: its slots are recorded as skipped (reason paused) until it is resumed.",
    "resumed": "Job resumed.",
    "signed_out": "Signed out.",
}


def _notice(request: Request) -> str | None:
    template = NOTICES.get(request.query_params.get("notice", ""))
    if template is None:
        return None
    run = request.query_params.get("run", "")
    return template.format(run=run if run.isdigit() and len(run) < 20 else "?")


def engine_status(store: Store, now: datetime) -> dict[str, Any]:
    """Is a ``corral up`` working on this store? (Triggered runs wait for one.)"""
    nodes = store.live_nodes()
    if not nodes:
        return {"ok": False, "text": "No corral up is running on this store: triggered runs wait until one starts."}
    node = nodes[0]
    age = now - node["heartbeat_at"]
    where = f"{node['hostname']} (pid {node['pid']})"
    if age > STALE_HEARTBEAT:
        return {
            "ok": False,
            "text": (
                f"corral up on {where} last reported {views.relative(node['heartbeat_at'], now)}; it may have stopped."
            ),
        }
    more = f" and {len(nodes) - 1} more" if len(nodes) > 1 else ""
    return {"ok": True, "text": f"corral up running on {where}{more}."}


def failing_channels(store: Any, config: Any, now: datetime) -> list[str]:
    """Notification channels that failed or are retrying lately, in doctor's words."""
    from corral import doctor

    names = list(getattr(getattr(config, "notify", None), "channels", {}) or {})
    if not names:
        return []
    checks = doctor.channels(store.list_deliveries(limit=1000), names, now)
    return [f"{c.name}: {c.detail}" for c in checks if c.status in ("warn", "fail")]


def render(request: Request, snap: Snapshot, template: str, context: dict[str, Any], status: int = 200) -> Response:
    web = web_of(request)
    now = context.get("now") or web.clock.now()
    base = {
        "now": now,
        "csrf": security.csrf_token_of(request.scope),
        "principal": security.principal_of(request.scope),
        "banner": snap.error,
        "notice": _notice(request),
        "engine": engine_status(web.store, now),
        "failing_channels": failing_channels(web.store, snap.config, now),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "settings": snap.config.settings,
    }
    base.update(context)
    return web.templates.TemplateResponse(request, template, base, status_code=status)


# -- reading ------------------------------------------------------------------------


def jobs(request: Request) -> Response:
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    query = request.query_params.get("q", "")[:200]
    matching = len(views.matching_jobs(snap.config, query))
    pages = max(1, -(-matching // JOBS_PAGE))
    page = min(inputs.integer(request.query_params, "page", 1, 1, inputs.MAX_ID) or 1, pages)
    rows = views.job_rows(snap.config, web.store, now, query=query, offset=(page - 1) * JOBS_PAGE, limit=JOBS_PAGE)
    return render(
        request,
        snap,
        "jobs.html",
        {
            "now": now, "rows": rows, "query": query, "total": len(snap.config.jobs),
            "matching": matching, "page": page, "pages": pages,
        },
    )  # fmt: skip


def job(request: Request) -> Response:
    return _job_page(request)


def _job_page(
    request: Request, *, param_error: str | None = None, given: dict[str, str] | None = None, status: int = 200
) -> Response:
    """The job page; after a refused parameter form, with the reason and the values as typed."""
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    spec = views.find_job(snap.config, request.path_params["name"])
    before = inputs.integer(request.query_params, "before", None, 1, inputs.MAX_ID)
    detail = views.job_detail(snap.config, web.store, spec, now)
    found = web.store.list_runs(job=spec.name, limit=HISTORY_PAGE + 1, before_id=before)
    history = found[:HISTORY_PAGE]
    stats = detail.stats
    chart = charts.duration_chart(
        views.duration_samples(web.store, spec),
        p50=stats.p50,
        p95=stats.p95,
        interval=detail.interval.total_seconds() if detail.interval else None,
    )
    outlook = views.forecast_for(spec, stats, now, days=7, duration=None)
    return render(
        request,
        snap,
        "job.html",
        {
            "now": now,
            "job": spec,
            "detail": detail,
            "row": detail.row,
            "history": history,
            "next_before": history[-1].id if len(found) > HISTORY_PAGE else None,
            "before": before,
            "chart": chart,
            "outlook": outlook,
            "outlook_chart": views.forecast_chart(outlook, spec.timezone, "forecast"),
            "outlook_rows": outlook.forecast.slots[:FORECAST_ROWS],
            "param_error": param_error,
            # After a refused form the URL is .../trigger: buttons must come back to the job page.
            **({"here": f"/jobs/{spec.name}"} if param_error is not None else {}),
            "param_values": {
                p.name: given[p.name] if given is not None and p.name in given else _shown_default(p.default)
                for p in spec.params
            },
        },
        status=status,
    )


def _shown_default(value: str | int | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run(request: Request) -> Response:
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    found = web.store.get_run(inputs.run_id(request.path_params["id"]))
    spec = snap.config.jobs.get(found.job)
    zone = spec.timezone if spec is not None else snap.config.settings.timezone
    path = api.log_file(request, found)
    size = path.stat().st_size if path.is_file() else 0
    start = views.log_tail_start(size, path, LOG_PAGE_BYTES)
    secrets = views.log_secrets(snap.config, found.job)
    log = views.read_log(path, start, max(1, size - start), secrets=secrets, live=found.active)
    elapsed = None
    if found.started_at is not None:
        elapsed = ((found.ended_at or now) - found.started_at).total_seconds()
    steps = views.run_steps(snap.config, web.store, found)
    retry_failed = (
        spec is not None
        and bool(spec.steps)
        and not found.active
        and any(row.step.state != "succeeded" for row in steps.steps)
    )
    return render(
        request,
        snap,
        "run.html",
        {
            "now": now,
            "run": found,
            "job": spec,
            "zone": zone,
            "log": log,
            "log_skipped": start,
            "elapsed": elapsed,
            "steps": steps,
            "graph": steps.graph,
            "can_retry": spec is not None and not found.active and found.state != "skipped",
            "retry_failed": retry_failed,
            "search": _search_log(path, size, request.query_params.get("q", "")[:200], secrets),
        },
    )


SEARCH_MAX_BYTES = 64 * 1024 * 1024
SEARCH_MAX_HITS = 2000


def _search_log(path: Path, size: int, query: str, secrets: Any) -> dict[str, Any] | None:
    """Lines of the log containing ``query`` (case-insensitive), numbered, secrets masked."""
    if not query:
        return None
    if not path.is_file():
        return {"query": query, "hits": [], "count": 0, "truncated": False}
    start = max(0, size - SEARCH_MAX_BYTES)
    text = views.read_log(path, start, max(1, size - start), secrets=secrets).text
    needle = query.casefold()
    hits = [(n, line) for n, line in enumerate(text.splitlines(), 1) if needle in line.casefold()]
    return {"query": query, "hits": hits[:SEARCH_MAX_HITS], "count": len(hits), "truncated": len(hits) > SEARCH_MAX_HITS}


def run_log(request: Request) -> Response:
    """The whole log as plain text (never rendered as HTML: nosniff + text/plain)."""
    web = web_of(request)
    found = web.store.get_run(inputs.run_id(request.path_params["id"]))
    path = api.log_file(request, found)
    if not path.is_file():
        raise errors.NotFound(f"run {found.id} of {found.job} has no log ({found.state})")
    return _plain_log(path, views.log_secrets(web.jobfile.current().config, found.job), f"run {found.id} of {found.job}")


def step_log(request: Request) -> Response:
    """One step's whole log as plain text (the path comes from the store, never from the URL)."""
    web = web_of(request)
    found = web.store.get_run(inputs.run_id(request.path_params["id"]))
    name = request.path_params["step"]
    step = next((s for s in web.store.get_steps(found.id) if s.name == name), None)
    if step is None:
        raise errors.NotFound(f"run {found.id} of {found.job} has no step {name[:64]!r}")
    if not step.log_path or not Path(step.log_path).is_file():
        raise errors.NotFound(f"step {step.name} of run {found.id} has no log ({step.state})")
    secrets = views.log_secrets(web.jobfile.current().config, found.job)
    return _plain_log(Path(step.log_path), secrets, f"step {step.name} of run {found.id}")


def _plain_log(path: Path, secrets: tuple[bytes, ...], what: str) -> Response:
    if not secrets:
        return FileResponse(path, media_type="text/plain; charset=utf-8", content_disposition_type="inline")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise errors.NotFound(f"{what} has no readable log: {exc.strerror}") from exc

    def blocks() -> Iterator[bytes]:
        with fh:
            yield from masking.masked_blocks(fh, secrets)

    return StreamingResponse(blocks(), media_type="text/plain; charset=utf-8")


def timeline(request: Request) -> Response:
    web = web_of(request)
    now = web.clock.now()
    snap = web.jobfile.current()
    query = request.query_params
    day = timedelta(hours=24)
    span = inputs.duration(query, "range", low=timedelta(hours=1), high=timedelta(days=14), default=day) or day
    zone = inputs.zone(query, "tz", snap.config.settings.timezone)
    view = views.timeline(snap.config, web.store, now, span=span, zone=zone)
    return render(
        request,
        snap,
        "timeline.html",
        {"now": now, "tl": view, "range": query.get("range") or "24h", "zone": zone},
    )


def discovery(request: Request) -> Response:
    web = web_of(request)
    snap = web.jobfile.current()
    wanted = discovery_mod.Filter.of(request.query_params)
    view = discovery_mod.view(web.inventory, wanted)
    return render(request, snap, "discovery.html", {"inv": view, "want": wanted, "codes": inventory_mod.FINDING_CODES})


# -- acting --------------------------------------------------------------------------


def _is_local(target: str) -> bool:
    """Whether ``target`` is a path on this site (never another host, never a header break)."""
    parts = urlsplit(target)
    return (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and not parts.scheme
        and not parts.netloc
        and not any(c in target for c in "\r\n\\")
    )


def _back(request: Request, default: str, **notice: str | int) -> Response:
    """303 to the form's ``next`` (a path on this site only), with a notice."""
    target = security.form_fields(security.body_of(request.scope)).get("next", "")
    parts = urlsplit(target)
    local = _is_local(target)
    path = parts.path if local else default
    kept = [(k, v) for k, v in parse_qs(parts.query).items() if k not in ("notice", "run")] if local else []
    query = [(k, x) for k, values in kept for x in values] + [(k, str(v)) for k, v in notice.items()]
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)


PARAM_FIELD = "param."
"""Form fields ``param.NAME`` carry the values of the job's parameters."""


def trigger(request: Request) -> Response:
    web = web_of(request)
    spec = views.find_job(web.jobfile.current().config, request.path_params["name"])
    fields = security.form_fields(security.body_of(request.scope))
    types = {p.name: p.type for p in spec.params}
    given: dict[str, str] = {}
    for key, value in fields.items():
        if not key.startswith(PARAM_FIELD):
            continue
        name = key[len(PARAM_FIELD) :]
        if value == "" and types.get(name, "string") != "string":
            continue  # an emptied number or choice field: its default applies (or "required" is reported)
        given[name] = value
    try:
        created = actions.trigger(
            web.store, spec, security.require_principal(request.scope), web.clock.now(), params=given
        )
    except errors.ParamError as exc:
        if not spec.params:
            raise  # no form to show it on: the error page says it
        # The form again, with what was wrong and the values as they were typed.
        typed = {k[len(PARAM_FIELD) :]: v for k, v in fields.items() if k.startswith(PARAM_FIELD)}
        return _job_page(request, param_error=str(exc), given=typed, status=400)
    return _back(request, f"/jobs/{spec.name}", notice="triggered", run=created.id)


def retry(request: Request) -> Response:
    web = web_of(request)
    principal = security.require_principal(request.scope)
    fields = security.form_fields(security.body_of(request.scope))
    from_failed = inputs.flag(fields, "from_failed")
    old = web.store.get_run(inputs.run_id(request.path_params["id"]))
    spec = views.find_job(web.jobfile.current().config, old.job)
    made = actions.retry(web.store, spec, old, from_failed, principal, web.clock.now())
    return _back(request, f"/runs/{made.id}", notice="retried", run=made.id)


def pause(request: Request) -> Response:
    return _set_paused(request, True)


def resume(request: Request) -> Response:
    return _set_paused(request, False)


def _set_paused(request: Request, paused: bool) -> Response:
    web = web_of(request)
    spec = views.find_job(web.jobfile.current().config, request.path_params["name"])
    actions.set_paused(web.store, spec, paused, security.require_principal(request.scope), web.clock.now())
    return _back(request, f"/jobs/{spec.name}", notice="paused" if paused else "resumed")


def cancel(request: Request) -> Response:
    web = web_of(request)
    principal = security.require_principal(request.scope)
    stopped = actions.cancel(web.store, inputs.run_id(request.path_params["id"]), principal, web.clock.now())
    code = "cancelled" if stopped.state == "cancelled" else "stopping"
    return _back(request, f"/runs/{stopped.id}", notice=code, run=stopped.id)


# -- signing in and out ---------------------------------------------------------------


def _login_page(request: Request, *, error: str | None, name: str, target: str, status: int = 200) -> Response:
    web = web_of(request)
    return render(
        request,
        web.jobfile.current(),
        "login.html",
        {
            "error": error,
            "name": name,
            "next": target if _is_local(target) else "/",
            "store_auth": isinstance(web.auth, accounts.StoreAuth),
            "auth_on": web.auth is not None,
        },
        status=status,
    )


def login_form(request: Request) -> Response:
    target = request.query_params.get("next", "/")[:2000]
    principal = security.principal_of(request.scope)
    if principal is not None and principal is not auth_mod.LOCAL and _is_local(target) and "notice" not in request.query_params:
        return RedirectResponse(target, status_code=303)  # already signed in
    return _login_page(request, error=None, name="", target=target)


def login(request: Request) -> Response:
    web = web_of(request)
    fields = security.form_fields(security.body_of(request.scope))
    name = fields.get("name", "").strip()[:200]
    password = fields.get("password", "")
    target = fields.get("next", "/")
    if not isinstance(web.auth, accounts.StoreAuth):
        raise problems.BadRequest(
            "this dashboard has no users to sign in as; create one with `corral users add NAME --role admin`"
        )
    wait = web.auth.throttle.wait(name)
    if wait > 0:
        log.warning("sign-in for %r refused: too many wrong passwords", name)
        message = f"Too many wrong passwords for this name; try again in {durations.format(max(1, round(wait)))}."
        return _login_page(request, error=message, name=name, target=target, status=429)
    now = web.clock.now()
    session = accounts.sign_in(web.store, name, password, now=now)
    if session is None:
        web.auth.throttle.failed(name)
        log.warning("failed sign-in for %r", name)
        return _login_page(request, error="Wrong name or password.", name=name, target=target, status=401)
    web.auth.throttle.succeeded(name)
    log.info("%s signed in", name)
    response = RedirectResponse(target if _is_local(target) else "/", status_code=303)
    response.set_cookie(
        accounts.SESSION_COOKIE,
        session,
        max_age=int(accounts.SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def logout(request: Request) -> Response:
    web = web_of(request)
    session = request.cookies.get(accounts.SESSION_COOKIE)
    if session:
        accounts.sign_out(web.store, session)
    principal = security.principal_of(request.scope)
    if principal is not None:
        log.info("%s signed out", principal.name)
    response = RedirectResponse("/login?notice=signed_out", status_code=303)
    response.delete_cookie(
        accounts.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
    return response


# -- audit log -------------------------------------------------------------------------

AUDIT_PAGE = 100


def audit(request: Request) -> Response:
    web = web_of(request)
    snap = web.jobfile.current()
    query = request.query_params
    job_name = query.get("job") or None
    before = inputs.integer(query, "before", None, 1, inputs.MAX_ID)
    found = web.store.list_audit(job=job_name, limit=AUDIT_PAGE + 1, before_id=before)
    entries = found[:AUDIT_PAGE]
    return render(
        request,
        snap,
        "audit.html",
        {
            "entries": entries,
            "job_filter": job_name,
            "next_before": entries[-1].id if len(found) > AUDIT_PAGE else None,
            "zone": snap.config.settings.timezone,
        },
    )
