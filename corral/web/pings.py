"""``/ping/<uuid>`` (also ``/start``, ``/fail``, ``/<exit code>``): heartbeat
pings from jobs corral watches but does not run (issue 6, item 4).

No credentials: the UUID is the secret (see docs/alerts.md). GET and POST both
work, so a crontab line can use ``curl -fsS -m 10 --retry 3 URL``. A POST body
(the tail of the job's output, as ``corral wrap`` sends it) is kept, cut to its
last :data:`BODY_KEEP` bytes; the dashboard's guard already refuses bodies over
its limit (64 KiB) with 413. The answer is ``OK`` (200), or 404 for an unknown
id: a ping never learns anything else about the store.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from corral import monitor
from corral.web.actions import wake_engine
from corral.web.security import body_of
from corral.web.state import web_of

PREFIX = "/ping/"
"""Served without credentials, CSRF token or origin check (corral.web.security)."""
BODY_KEEP = 10_000
"""Bytes of a ping's body kept in the store (its end: the last lines of output)."""


def ping(request: Request) -> Response:
    raw = request.path_params["uuid"]
    suffix = request.path_params.get("suffix", "")
    try:
        ping_id = str(uuid.UUID(raw))
    except ValueError:
        return PlainTextResponse("not a ping id: /ping/<uuid> takes a UUID\n", status_code=404)
    web = web_of(request)
    now = web.clock.now()
    try:
        parsed = monitor.parse_ping(suffix, now)
    except monitor.BadPing as exc:
        return PlainTextResponse(f"{exc}\n", status_code=400)
    body = body_of(request.scope) if request.method == "POST" else b""
    text = body[-BODY_KEEP:].decode("utf-8", "replace") if body else None
    remote = request.client.host if request.client else None
    job = web.store.record_ping(ping_id, parsed.kind, parsed.exit_code, now=now, remote=remote, body=text)
    if job is None and _sync(web, now):
        # A monitor the engine has not seen yet (the job file just gained it).
        job = web.store.record_ping(ping_id, parsed.kind, parsed.exit_code, now=now, remote=remote, body=text)
    if job is None:
        return PlainTextResponse("no monitor has this ping id\n", status_code=404)
    wake_engine(web.store)  # the monitor's state follows the ping now, not at the next poll
    return PlainTextResponse("OK\n")


def _sync(web: object, now: object) -> bool:
    """Give the job file's monitor-only jobs their store rows; True if it has any."""
    cfg = getattr(web.jobfile.current(), "config", None)  # type: ignore[attr-defined]
    if cfg is None:
        return False
    given = {name: job.monitor.id for name, job in cfg.jobs.items() if job.monitor is not None}
    if not given:
        return False
    web.store.sync_monitors(given, now=now)  # type: ignore[attr-defined]
    return True


def routes() -> list[BaseRoute]:
    methods = ["GET", "POST", "HEAD"]
    return [
        Route("/ping/{uuid}", ping, methods=methods),
        Route("/ping/{uuid}/{suffix}", ping, methods=methods),
    ]
