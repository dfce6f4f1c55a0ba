"""The dashboard application: routes, the shared state, errors as responses."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import Scope

from corral import durations, errors
from corral.clock import Clock, SystemClock
from corral.config import NO_CAP
from corral.store import open_store
from corral.web import accounts, api, discovery, events, pages, pings, problems, security, views
from corral.web import auth as auth_mod
from corral.web.jobfile import LiveJobFile
from corral.web.state import Web

HERE = Path(__file__).parent


def needs(role: str, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Let ``endpoint`` run only for principals whose role includes ``role``."""

    @functools.wraps(endpoint)
    def checked(request: Request) -> Response:
        principal = security.principal_of(request.scope)
        if principal is None:
            raise problems.Unauthorized()
        if not principal.may(role):
            raise problems.Forbidden(f"{principal.name} has role {principal.role}; this needs {role}")
        return endpoint(request)

    return checked


def _routes() -> list[BaseRoute]:
    viewer, operator = auth_mod.VIEWER, auth_mod.OPERATOR
    return [
        Route("/login", pages.login_form, name="login"),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", needs(viewer, pages.logout), methods=["POST"]),
        Route("/audit", needs(viewer, pages.audit), name="audit"),
        Route("/", needs(viewer, pages.jobs), name="jobs"),
        Route("/jobs/{name}", needs(viewer, pages.job), name="job"),
        Route("/jobs/{name}/trigger", needs(operator, pages.trigger), methods=["POST"]),
        Route("/jobs/{name}/pause", needs(operator, pages.pause), methods=["POST"]),
        Route("/jobs/{name}/resume", needs(operator, pages.resume), methods=["POST"]),
        Route("/runs/{id}", needs(viewer, pages.run), name="run"),
        Route("/runs/{id}/log", needs(viewer, pages.run_log), name="run_log"),
        Route("/runs/{id}/steps/{step}/log", needs(viewer, pages.step_log), name="step_log"),
        Route("/runs/{id}/cancel", needs(operator, pages.cancel), methods=["POST"]),
        Route("/runs/{id}/retry", needs(operator, pages.retry), methods=["POST"]),
        Route("/discovery", needs(viewer, pages.discovery), name="discovery"),
        Route("/timeline", needs(viewer, pages.timeline), name="timeline"),
        Route("/healthz", api.healthz),
        Route("/api/openapi.json", needs(viewer, api.openapi_doc)),
        Route("/api/jobs", needs(viewer, api.jobs)),
        Route("/api/jobs/{name}", needs(viewer, api.job)),
        Route("/api/jobs/{name}/forecast", needs(viewer, api.job_forecast)),
        Route("/api/jobs/{name}/trigger", needs(operator, api.trigger), methods=["POST"]),
        Route("/api/jobs/{name}/pause", needs(operator, api.pause), methods=["POST"]),
        Route("/api/jobs/{name}/resume", needs(operator, api.resume), methods=["POST"]),
        Route("/api/runs", needs(viewer, api.runs)),
        Route("/api/runs/{id}", needs(viewer, api.run)),
        Route("/api/runs/{id}/log", needs(viewer, api.run_log)),
        Route("/api/runs/{id}/cancel", needs(operator, api.cancel), methods=["POST"]),
        Route("/api/runs/{id}/retry", needs(operator, api.retry), methods=["POST"]),
        Route("/api/runs/{id}/steps", needs(viewer, api.run_steps)),
        Route("/api/discovery", needs(viewer, api.discovery)),
        Route("/api/runs/{id}/log/stream", needs(viewer, api.run_log_stream)),
        Route("/api/audit", needs(viewer, api.audit)),
        *events.routes(needs, viewer),  # /api/events, /metrics (issue 6)
        *pings.routes(),  # /ping/<uuid>: no credentials, the UUID is the secret (issue 6)
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = views.local
    env.filters["duration"] = durations.format
    env.filters["clean_log"] = views.strip_ansi
    env.filters["count"] = views.count
    env.filters["inventory_time"] = discovery.shown_time
    env.globals["relative"] = views.relative
    env.globals["NO_CAP"] = NO_CAP
    return Jinja2Templates(env=env)


def _problem_renderer(templates: Jinja2Templates) -> security.ProblemRenderer:
    def render(scope: Scope, status: int, message: str, headers: Mapping[str, str] | None) -> Response:
        if security.wants_json(scope):
            return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
        request = Request(scope)
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "status": status,
                "message": message,
                "notice": None,
                "banner": None,
                "engine": None,
                "csrf": "",
                "principal": None,
            },
            status_code=status,
            headers=headers,
        )

    return render


_STATUS_WORDS = {
    404: "nothing here",
    405: "method not allowed",
}


def _http_message(request: Request, exc: HTTPException) -> str:
    path = request.url.path
    if exc.status_code == 404:
        if path.startswith("/api/"):
            return f"no API endpoint at {path}; /api/openapi.json lists them"
        return f"no page at {path}; start from / (jobs) or /timeline"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return f"{request.method} is not allowed on {path}; use {allowed or 'another method'}"
    return exc.detail or _STATUS_WORDS.get(exc.status_code, "the request cannot be served")


def create_app(
    config_path: Path,
    store_url: str,
    *,
    auth: auth_mod.Authenticator | None = None,
    host: str = "127.0.0.1",
    clock: Clock | None = None,
    csrf_secret: bytes | None = None,
    inventory: Path | None = None,
) -> Starlette:
    """The dashboard and JSON API for the jobs of ``config_path`` and the runs in ``store_url``.

    ``auth`` decides who is asking; when None, the users and API tokens of
    the store are used if it has any (:class:`accounts.StoreAuth`), else
    every request is the local admin. ``host`` is where the app will be
    served: a non-loopback host needs authentication
    (:class:`errors.CorralError` otherwise), and without it the app answers
    only requests addressed to a loopback name. ``clock`` fixes "now" for
    tests. ``inventory`` is the discovery inventory the Discovery page shows
    (default: the newest ``*.json`` in ``.corral/inventories/`` next to the job file).
    """
    jobfile = LiveJobFile(Path(config_path))
    store = open_store(store_url)
    try:
        if auth is None and store.has_credentials():
            auth = accounts.StoreAuth(store, clock)
        security.check_bind(host, auth)
    except BaseException:
        store.close()
        raise
    templates = _templates()
    render_problem = _problem_renderer(templates)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    def on_corral_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, errors.CorralError):
            raise exc
        return render_problem(request.scope, problems.status_of(exc), str(exc), None)

    def on_http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):
            raise exc
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
        return render_problem(request.scope, exc.status_code, _http_message(request, exc), headers or None)

    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(
                security.Guard,
                auth=auth,
                csrf=security.CsrfTokens(csrf_secret),
                problem=render_problem,
                loopback_only=auth is None,
            )
        ],
        exception_handlers={errors.CorralError: on_corral_error, HTTPException: on_http_error},
        lifespan=lifespan,
    )
    app.state.web = Web(
        jobfile=jobfile, store=store, templates=templates, clock=clock or SystemClock(), auth=auth,
        inventory=discovery.InventorySource(inventory, discovery.default_dir(Path(config_path))),
    )
    return app
