"""``GET /api/events?after=N``: the event feed over HTTP, and ``GET /metrics``.

A consumer keeps the ``seq`` of the last event it handled and asks for the
ones after it; ``next_after`` in the answer is what to send next time. The
sequence is gapless (docs/events.md), so this never skips or repeats an event.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from corral.config import NAME_PATTERN
from corral.web import inputs, problems
from corral.web.state import web_of

EVENTS_DEFAULT_LIMIT = 500
EVENTS_MAX_LIMIT = 5000
_NAME_RE = re.compile(NAME_PATTERN)

Needs = Callable[[str, Callable[[Request], Response]], Callable[[Request], Response]]


_EVENT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer", "description": "Gapless sequence number, increasing in commit order."},
        "type": {"type": "string", "enum": ["run.created", "run.transition", "run.stop_requested", "job.paused", "job.resumed", "monitor.transition"]},
        "job": {"type": "string"},
        "run_id": {"type": ["integer", "null"]},
        "old_state": {"type": ["string", "null"]},
        "new_state": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
        "at": {"type": "string", "format": "date-time"},
        "payload_hash": {"type": "string", "description": "SHA-256 of type, job, run, states and reason."},
    },
}

OPENAPI_PATHS: dict[str, object] = {
    "/api/events": {
        "get": {
            "summary": "The event feed after a sequence number (never skips or repeats an event).",
            "parameters": [
                {"name": "after", "in": "query", "description": "Last seq seen (default 0).", "schema": {"type": "integer", "default": 0}},
                {"name": "limit", "in": "query", "description": "1 to 5000 (default 500).", "schema": {"type": "integer", "default": 500}},
                {"name": "job", "in": "query", "description": "Only this job's events.", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "Events in seq order; send next_after as after next time.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "events": {"type": "array", "items": _EVENT_SCHEMA},
                                    "next_after": {"type": "integer"},
                                    "more": {"type": "boolean"},
                                },
                            }
                        }
                    },
                }
            },
        }
    }
}
"""Merged into ``/api/openapi.json`` by :mod:`corral.web.openapi`."""


def events(request: Request) -> Response:
    query = request.query_params
    for key in query:
        if key not in ("after", "limit", "job"):
            raise problems.BadRequest(f"unknown query parameter {key!r}; accepted: after, limit, job")
    after = inputs.integer(query, "after", 0, 0, inputs.MAX_ID) or 0
    limit = inputs.integer(query, "limit", EVENTS_DEFAULT_LIMIT, 1, EVENTS_MAX_LIMIT) or EVENTS_DEFAULT_LIMIT
    job = query.get("job") or None
    if job is not None and not _NAME_RE.match(job):
        raise problems.BadRequest(f"job={job[:80]!r} is not a job name; names look like nightly-batch")
    store = web_of(request).store
    store.publish_events()  # number what is committed; never waits for another publisher
    batch = store.events_after(after, limit)
    next_after = batch[-1].seq if batch else after
    shown = [e.as_dict() for e in batch if job is None or e.job == job]
    return JSONResponse({"events": shown, "next_after": next_after, "more": len(batch) == limit})


def metrics(request: Request) -> Response:
    from corral import metrics as metrics_mod

    web = web_of(request)
    body = metrics_mod.render(web.store, web.jobfile.current().config, now=web.clock.now())
    return Response(body, media_type=metrics_mod.CONTENT_TYPE)


def routes(needs: Needs, role: str) -> list[BaseRoute]:
    """The routes of this module, guarded by ``needs(role, ...)``."""
    return [
        Route("/api/events", needs(role, events)),
        Route("/metrics", needs(role, metrics)),
    ]
