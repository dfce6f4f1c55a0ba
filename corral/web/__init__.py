"""The dashboard and JSON API: ``create_app`` builds it, ``serve_in_thread`` serves it.

Reads go through the store's named queries and the job file (re-read when
it changes); every change goes through :mod:`corral.web.actions`.

The names below are imported on first use, so ``corral.web.cli`` (loaded by
every ``corral`` command) does not pull in Starlette, Jinja2 and uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from corral.web.app import create_app
    from corral.web.auth import Authenticator, Principal
    from corral.web.server import WebServer, serve_in_thread

__all__ = ["Authenticator", "Principal", "WebServer", "create_app", "serve_in_thread"]

_HOMES = {
    "create_app": "corral.web.app",
    "Authenticator": "corral.web.auth",
    "Principal": "corral.web.auth",
    "WebServer": "corral.web.server",
    "serve_in_thread": "corral.web.server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'corral.web' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
