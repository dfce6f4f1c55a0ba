"""The OpenAPI 3.1 description of the JSON API, written by hand.

``tests/integration/test_web.py`` checks that every API route is described
here and every path described here is routed.
"""

from __future__ import annotations

from typing import Any

from corral.store import tables as t
from corral.web import events as events_api

_ERROR = {"$ref": "#/components/responses/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema,
    }


_JOB_NAME = _param(
    "name", "path", "Job name as in the job file.", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"}
)
_RUN_ID = _param("id", "path", "Run id (a whole number; 400 otherwise).", {"type": "integer", "minimum": 1})
_EMPTY_BODY = {
    "required": False,
    "description": (
        "Empty or a JSON object. State-changing requests must be sent with Content-Type: application/json "
        "(or carry the dashboard's X-CSRF-Token header); others are refused with 403."
    ),
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False}}},
}

_TRIGGER_BODY = {
    "required": False,
    "description": _EMPTY_BODY["description"],
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "params": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "boolean"]},
                        "description": "Values of the job's declared parameters by name.",
                    }
                },
            }
        }
    },
}

_RUN = {
    "type": "object",
    "description": "One run: a slot's outcome or a manual start. Instants are ISO-8601 with offset (UTC).",
    "required": [
        "id",
        "job",
        "state",
        "reason",
        "message",
        "scheduled_for",
        "started_at",
        "ended_at",
        "exit_code",
        "attempt",
    ],
    "properties": {
        "id": {"type": "integer"},
        "job": {"type": "string"},
        "state": {"type": "string", "enum": list(t.ALL_STATES)},
        "reason": {
            "type": ["string", "null"],
            "description": "Why it was skipped, cancelled or failed to start (e.g. overlap, min_gap, paused).",
        },
        "message": {"type": ["string", "null"], "description": "The same in words, naming the cause."},
        "trigger": {"type": "string", "description": "schedule, manual, retry, ..."},
        "slot_key": {"type": ["string", "null"]},
        "scheduled_for": {"type": "string", "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "admitted": {
            "type": "boolean",
            "description": "False until the engine has applied the overlap policy to a manual run.",
        },
        "catchup": {"type": "boolean"},
        "not_before": {"type": ["string", "null"], "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "duration": {"type": ["number", "null"], "description": "Seconds from start to end."},
        "exit_code": {"type": ["integer", "null"]},
        "signal": {"type": ["integer", "null"]},
        "attempt": {"type": "integer"},
        "retry_of": {"type": ["integer", "null"]},
        "node": {"type": ["string", "null"]},
        "pid": {"type": ["integer", "null"]},
        "pgid": {"type": ["integer", "null"]},
        "proc_start": {"type": ["number", "null"]},
        "peak_rss": {"type": ["integer", "null"], "description": "Bytes, whole process tree."},
        "cpu_seconds": {"type": ["number", "null"]},
        "log_path": {"type": ["string", "null"]},
        "log_bytes": {"type": ["integer", "null"]},
        "log_dropped": {"type": ["integer", "null"], "description": "Bytes dropped from the head by the log size cap."},
        "stop_requested": {"type": ["string", "null"]},
        "params": {"type": ["object", "null"]},
    },
}

_JOB = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "schedule": {"type": "string", "description": "The schedule in plain words."},
        "timezone": {"type": "string"},
        "next_run": {"type": ["string", "null"], "format": "date-time", "description": "In the job's time zone."},
        "next_run_note": {"type": ["string", "null"]},
        "overlap": {"type": "string", "enum": ["skip", "queue_one", "queue_all", "replace", "allow"]},
        "enabled": {"type": "boolean"},
        "paused": {"type": "boolean"},
        "paused_at": {"type": ["string", "null"], "format": "date-time"},
        "paused_by": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": ["enabled", "paused", "disabled"]},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "last_run": {"oneOf": [_ref("Run"), {"type": "null"}], "description": "The latest run that was not skipped."},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Runs by state."},
        "success_rate": {
            "type": ["number", "null"],
            "description": "succeeded / (succeeded + failed + timed_out + lost).",
        },
        "skipped": {"type": "integer"},
        "active_runs": {"type": "integer"},
        "recent_durations": {
            "type": "array",
            "items": {"type": "number"},
            "description": "Seconds, last 30, oldest first.",
        },
    },
}

_JOB_DETAIL = {
    "allOf": [
        _ref("Job"),
        {
            "type": "object",
            "properties": {
                "schedules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string"},
                            "text": {"type": "string"},
                            "description": {"type": "string"},
                        },
                    },
                },
                "next_runs": {
                    "type": "array",
                    "items": {"type": "string", "format": "date-time"},
                    "description": "Next 5 fire times in the job's time zone.",
                },
                "next_runs_note": {"type": ["string", "null"]},
                "schedule_interval_seconds": {"type": ["number", "null"]},
                "max_concurrent": {
                    "type": ["integer", "null"],
                    "description": "Cap on overlapping runs (null: no cap).",
                },
                "min_gap_seconds": {"type": ["number", "null"]},
                "timeout_seconds": {"type": ["number", "null"]},
                "start_deadline_seconds": {"type": ["number", "null"]},
                "catchup": {
                    "type": "object",
                    "properties": {"mode": {"type": "string"}, "window_seconds": {"type": "number"}},
                },
                "retries": {"type": "integer"},
                "durations": {
                    "type": "object",
                    "properties": {
                        "p50_seconds": {"type": ["number", "null"]},
                        "p95_seconds": {"type": ["number", "null"]},
                        "samples": {"type": "integer"},
                    },
                },
                "active": {"type": "array", "items": _ref("Run")},
                "recent_runs": {"type": "array", "items": _ref("Run"), "description": "Last 20 runs, newest first."},
                "source": {"type": "string", "description": "The job's YAML as written in the job file."},
                "params": {
                    "type": "array",
                    "description": "Parameters a trigger may give (POST .../trigger with {\"params\": {...}}).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"type": "string", "enum": ["string", "int", "bool", "choice"]},
                            "default": {"type": ["string", "integer", "boolean", "null"]},
                            "required": {"type": "boolean"},
                            "choices": {"type": "array", "items": {"type": "string"}},
                            "description": {"type": "string"},
                        },
                    },
                },
                "steps": {
                    "type": "array",
                    "description": "A pipeline job's steps and what each needs (empty for a plain job).",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "needs": {"type": "array", "items": {"type": "string"}}},
                    },
                },
                "config_error": {"type": ["string", "null"]},
            },
        },
    ]
}

_SLOT = {
    "type": "object",
    "properties": {
        "scheduled_for": {"type": "string", "format": "date-time"},
        "outcome": {"type": "string", "enum": ["run", "skipped", "queued"]},
        "reason": {"type": ["string", "null"]},
        "message": {"type": ["string", "null"]},
        "starts_at": {"type": ["string", "null"], "format": "date-time"},
        "ends_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

_FORECAST = {
    "type": "object",
    "properties": {
        "job": {"type": "string"},
        "duration_seconds": {"type": "number"},
        "duration_basis": {
            "type": "string",
            "enum": ["given", "p95", "default"],
            "description": "default = 1 hour, for a job without history.",
        },
        "from": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "days": {"type": "number"},
        "truncated": {
            "type": "boolean",
            "description": "The horizon was shortened to keep the simulation quick (very frequent jobs).",
        },
        "slots": {"type": "array", "items": _ref("Slot")},
        "slots_run": {"type": "integer"},
        "slots_skipped": {"type": "integer"},
        "effective_cadence_seconds": {"type": ["number", "null"]},
        "nominal_interval_seconds": {"type": ["number", "null"]},
        "suggestions": {"type": "array", "items": {"type": "string"}},
    },
}

_LOG = {
    "type": "object",
    "required": ["offset", "next_offset", "size", "text"],
    "properties": {
        "offset": {"type": "integer"},
        "next_offset": {
            "type": "integer",
            "description": "Pass as offset to read on; stops before a character cut by the range.",
        },
        "size": {
            "type": "integer",
            "description": "Current size of the log. Below your offset: the log was capped, read again from 0.",
        },
        "text": {"type": "string", "description": "The bytes as UTF-8 text; invalid bytes become U+FFFD."},
        "exists": {"type": "boolean"},
        "run": {"type": "integer"},
        "state": {"type": "string"},
        "active": {"type": "boolean", "description": "The run may still write more."},
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/api/openapi.json``."""
    ok_run = _json(_ref("Run"), "The run.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "corral",
            "version": "1",
            "description": (
                "Jobs, runs, logs and forecasts of a corral job file and store. Errors are "
                '{"error": "...", "status": N} with 400 for a bad parameter or id, 401 without credentials, '
                "403 for a missing role or CSRF protection, 404 for an unknown job or run (with a did-you-mean), "
                "405 for a wrong method, 409 for a run that already ended, 413 for a body over 64 KB."
            ),
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the store answers and the job file is loaded.",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Healthy."), "503": _ERROR},
                }
            },
            "/api/openapi.json": {
                "get": {"summary": "This document.", "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")}}
            },
            "/api/jobs": {
                "get": {
                    "summary": "Every job of the job file with its schedule, next run, state and recent outcomes.",
                    "parameters": [
                        _param(
                            "q",
                            "query",
                            "Only jobs whose name, description or labels contain this.",
                            {"type": "string"},
                        )
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "config_error": {
                                        "type": ["string", "null"],
                                        "description": "Set when the job file on disk is broken; "
                                        "the jobs are then the last good ones.",
                                    },
                                    "now": {"type": "string", "format": "date-time"},
                                },
                            },
                            "The jobs, by name.",
                        ),
                        "400": _ERROR,
                    },
                }
            },
            "/api/jobs/{name}": {
                "get": {
                    "summary": "One job: schedule in words, next 5 fire times, p50/p95, recent runs, its YAML.",
                    "parameters": [_JOB_NAME],
                    "responses": {"200": _json(_ref("JobDetail"), "The job."), "404": _ERROR},
                }
            },
            "/api/jobs/{name}/forecast": {
                "get": {
                    "summary": "Simulate the schedule and overlap policy: which slots would run or be skipped.",
                    "parameters": [
                        _JOB_NAME,
                        _param(
                            "days", "query", "How far ahead (0.01 to 31, default 7).", {"type": "number", "default": 7}
                        ),
                        _param(
                            "duration",
                            "query",
                            "Assumed run time like 90s, 26h (default: the job's p95, or 1h).",
                            {"type": "string"},
                        ),
                    ],
                    "responses": {"200": _json(_ref("Forecast"), "The forecast."), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/jobs/{name}/trigger": {
                "post": {
                    "summary": "Start a run now (the job's overlap policy still applies).",
                    "description": (
                        "Parameters the job declares (`params:` in the job file) are given as "
                        '{"params": {"name": value}}; values are checked against their type (string, int, bool, '
                        "choice), missing ones take their default, and an unknown, missing required or "
                        "mistyped one is a 400 naming it. They reach the job only as CORRAL_PARAM_<NAME> "
                        "environment variables, never through a shell."
                    ),
                    "parameters": [_JOB_NAME],
                    "requestBody": _TRIGGER_BODY,
                    "responses": {
                        "201": _json(_ref("Run"), "The new pending run, not yet admitted by the engine."),
                        "400": _ERROR,
                        "403": _ERROR,
                        "404": _ERROR,
                        "413": _ERROR,
                    },
                }
            },
            "/api/jobs/{name}/pause": {
                "post": {
                    "summary": "Pause: slots are recorded as skipped (reason paused) until resumed.",
                    "parameters": [_JOB_NAME],
                    "requestBody": _EMPTY_BODY,
                    "responses": {
                        "200": _json(_ref("PauseState"), "The job's pause state."),
                        "403": _ERROR,
                        "404": _ERROR,
                    },
                }
            },
            "/api/jobs/{name}/resume": {
                "post": {
                    "summary": "Resume a paused job.",
                    "parameters": [_JOB_NAME],
                    "requestBody": _EMPTY_BODY,
                    "responses": {
                        "200": _json(_ref("PauseState"), "The job's pause state."),
                        "403": _ERROR,
                        "404": _ERROR,
                    },
                }
            },
            **events_api.OPENAPI_PATHS,  # /api/events (issue 6)
            "/api/runs": {
                "get": {
                    "summary": "Runs, newest first, with cursor pagination.",
                    "parameters": [
                        _param("job", "query", "Only this job.", {"type": "string"}),
                        _param(
                            "state",
                            "query",
                            "Only these states (repeat or comma-separate).",
                            {"type": "array", "items": {"type": "string", "enum": list(t.ALL_STATES)}},
                        ),
                        _param(
                            "limit", "query", "Page size, 1 to 1000 (default 50).", {"type": "integer", "default": 50}
                        ),
                        _param(
                            "before", "query", "Cursor: runs with a smaller id (pass next_before).", {"type": "integer"}
                        ),
                        _param(
                            "since",
                            "query",
                            "Slot at or after this ISO-8601 instant.",
                            {"type": "string", "format": "date-time"},
                        ),
                        _param(
                            "until",
                            "query",
                            "Slot at or before this ISO-8601 instant.",
                            {"type": "string", "format": "date-time"},
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "runs": {"type": "array", "items": _ref("Run")},
                                    "next_before": {
                                        "type": ["integer", "null"],
                                        "description": "Pass as before= for the next page; null on the last page.",
                                    },
                                },
                            },
                            "A page of runs.",
                        ),
                        "400": _ERROR,
                        "404": _ERROR,
                    },
                }
            },
            "/api/runs/{id}": {
                "get": {
                    "summary": "One run.",
                    "parameters": [_RUN_ID],
                    "responses": {"200": ok_run, "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/runs/{id}/log": {
                "get": {
                    "summary": "A byte range of the run's log (stdout and stderr), as text; "
                    "poll with next_offset to follow it.",
                    "parameters": [
                        _RUN_ID,
                        _param(
                            "offset",
                            "query",
                            "First byte (default 0).",
                            {"type": "integer", "minimum": 0, "default": 0},
                        ),
                        _param(
                            "limit",
                            "query",
                            "Most bytes to return, 1 to 1048576 (default 65536).",
                            {"type": "integer", "default": 65536},
                        ),
                    ],
                    "responses": {"200": _json(_ref("LogChunk"), "The range."), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/runs/{id}/cancel": {
                "post": {
                    "summary": "Cancel: a waiting run ends now; "
                    "a running one is stopped by its node (TERM, then KILL).",
                    "parameters": [_RUN_ID],
                    "requestBody": _EMPTY_BODY,
                    "responses": {"200": ok_run, "400": _ERROR, "403": _ERROR, "404": _ERROR, "409": _ERROR},
                }
            },
            "/api/runs/{id}/retry": {
                "post": {
                    "summary": "Start a new attempt of an ended run, linked to it, with the same parameters.",
                    "parameters": [
                        _RUN_ID,
                        _param(
                            "from_failed",
                            "query",
                            "1: keep the steps that succeeded and rerun only the others (pipeline jobs).",
                            {"type": "string", "enum": ["0", "1", "true", "false"], "default": "0"},
                        ),
                    ],
                    "requestBody": _EMPTY_BODY,
                    "responses": {
                        "201": _json(_ref("Run"), "The new pending run."),
                        "400": _ERROR,
                        "403": _ERROR,
                        "404": _ERROR,
                        "409": _ERROR,
                    },
                }
            },
            "/api/runs/{id}/steps": {
                "get": {
                    "summary": "A pipeline run's steps (job-file order, with needs), its outputs and result.",
                    "parameters": [_RUN_ID],
                    "responses": {"200": _json(_ref("RunSteps"), "The steps."), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/discovery": {
                "get": {
                    "summary": "The discovery inventory shown on /discovery: hosts, entries and findings.",
                    "description": (
                        "The file given with --inventory, else the newest *.json in .corral/inventories/ next "
                        "to the job file; inventory is null when there is none. Findings are recomputed."
                    ),
                    "parameters": [
                        _param("q", "query", "Only entries whose host, user, command, schedule or source contain this.", {"type": "string"}),
                        _param("host", "query", "Only this host.", {"type": "string"}),
                        _param("kind", "query", "Only this kind.", {"type": "string", "enum": ["job", "disabled", "invalid"]}),
                        _param("finding", "query", "Only entries with this finding code.", {"type": "string"}),
                        _param("flagged", "query", "1: only entries with findings.", {"type": "string"}),
                    ],
                    "responses": {"200": _json(_ref("Discovery"), "The inventory."), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/runs/{id}/log/stream": {
                "get": {
                    "summary": "The run's log as Server-Sent Events: what is written, then new output live, "
                    "until the run ends.",
                    "description": (
                        "Events: `log` (data: a LogChunk; the event id is next_offset, so a reconnecting "
                        "EventSource resumes through Last-Event-ID), `reset` (the log was capped; it starts "
                        "again from 0), `state` ({state, active}) and `end` ({state, next_offset}; the server "
                        "then closes the stream). Comment lines keep idle connections open. Secret env values "
                        "of the job are masked."
                    ),
                    "parameters": [
                        _RUN_ID,
                        _param(
                            "offset",
                            "query",
                            "First byte (default 0; a Last-Event-ID header wins).",
                            {"type": "integer", "minimum": 0, "default": 0},
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "An event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                        "404": _ERROR,
                    },
                }
            },
            "/api/audit": {
                "get": {
                    "summary": "Who triggered, cancelled, paused or resumed what, newest first.",
                    "parameters": [
                        _param("job", "query", "Only entries about this job.", {"type": "string"}),
                        _param("actor", "query", "Only entries by this user or token.", {"type": "string"}),
                        _param(
                            "limit", "query", "Most entries, 1 to 500 (default 50).", {"type": "integer", "default": 50}
                        ),
                        _param(
                            "before",
                            "query",
                            "Only entries with a smaller id: pass next_before to page back.",
                            {"type": "integer", "minimum": 1},
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "entries": {"type": "array", "items": _ref("AuditEntry")},
                                    "next_before": {"type": ["integer", "null"]},
                                },
                            },
                            "A page of entries.",
                        ),
                        "400": _ERROR,
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Run": _RUN,
                "Job": _JOB,
                "JobDetail": _JOB_DETAIL,
                "Slot": _SLOT,
                "Forecast": _FORECAST,
                "LogChunk": _LOG,
                "AuditEntry": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "at": {"type": "string", "format": "date-time"},
                        "actor": {"type": "string", "description": "User name, or NAME (token ID), or local."},
                        "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
                        "action": {"type": "string", "enum": ["trigger", "cancel", "pause", "resume", "retry"]},
                        "job": {"type": ["string", "null"]},
                        "run_id": {"type": ["integer", "null"]},
                        "detail": {"type": ["string", "null"]},
                    },
                },
                "RunSteps": {
                    "type": "object",
                    "properties": {
                        "run": {"type": "integer"},
                        "job": {"type": "string"},
                        "state": {"type": "string"},
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "state": {"type": "string"},
                                    "needs": {"type": "array", "items": {"type": "string"}},
                                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                                    "ended_at": {"type": ["string", "null"], "format": "date-time"},
                                    "duration": {"type": ["number", "null"]},
                                    "exit_code": {"type": ["integer", "null"]},
                                    "attempt": {"type": "integer"},
                                    "peak_rss": {"type": ["integer", "null"]},
                                    "cpu_seconds": {"type": ["number", "null"]},
                                    "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "kept_from": {"type": ["integer", "null"], "description": "Step row carried over by a retry from failed."},
                                },
                            },
                        },
                        "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
                        "result": {
                            "type": ["object", "null"],
                            "properties": {"verdict": {"type": "string"}, "note": {"type": ["string", "null"]}},
                        },
                    },
                },
                "Discovery": {
                    "type": "object",
                    "properties": {
                        "inventory": {"type": ["string", "null"], "description": "Path of the file shown."},
                        "looked_in": {"type": "string"},
                        "collected_at": {"type": ["string", "null"], "format": "date-time"},
                        "hosts": {"type": "array", "items": {"type": "object"}},
                        "findings": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "total_entries": {"type": "integer"},
                        "entries": {"type": "array", "items": {"type": "object"}, "description": "As in `corral discover --json`."},
                    },
                },
                "PauseState": {
                    "type": "object",
                    "properties": {
                        "job": {"type": "string"},
                        "paused": {"type": "boolean"},
                        "paused_at": {"type": ["string", "null"], "format": "date-time"},
                        "paused_by": {"type": ["string", "null"]},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {
                        "error": {"type": "string", "description": "What was wrong and what to do."},
                        "status": {"type": "integer"},
                    },
                },
            },
            "responses": {"Error": _json(_ref("Error"), "What was wrong with the request, and what to do.")},
        },
    }
