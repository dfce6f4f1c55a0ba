"""Errors that end a web request, each with its HTTP status.

Handlers raise these (or the store's ``errors.NotFound`` / ``errors.Conflict``);
:func:`status_of` decides the status code in one place, so no bad input can
turn into a 500.
"""

from __future__ import annotations

from corral import errors


class HTTPProblem(errors.CorralError):
    """The request cannot be served."""

    status = 400


class BadRequest(HTTPProblem):
    """A parameter of the request is not valid."""

    status = 400


class Unauthorized(HTTPProblem):
    """Sign in first: this dashboard needs credentials."""

    status = 401


class Forbidden(HTTPProblem):
    """You may not do this."""

    status = 403


class PayloadTooLarge(HTTPProblem):
    """The request body is too large."""

    status = 413


def status_of(exc: errors.CorralError) -> int:
    """The HTTP status that tells a client what went wrong with ``exc``."""
    if isinstance(exc, HTTPProblem):
        return exc.status
    if isinstance(exc, errors.NotFound):
        return 404
    if isinstance(exc, errors.Conflict):
        return 409
    if isinstance(exc, errors.StoreError):
        return 503
    if isinstance(exc, errors.ConfigError):
        return 500
    # ScheduleError, DurationError and the like come from values in the request.
    return 400
