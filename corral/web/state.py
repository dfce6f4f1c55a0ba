"""What every handler needs, kept on ``app.state.web``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from corral.clock import Clock
from corral.store import Store
from corral.web import auth as auth_mod
from corral.web.discovery import InventorySource
from corral.web.jobfile import LiveJobFile


@dataclass
class Web:
    jobfile: LiveJobFile
    store: Store
    templates: Jinja2Templates
    clock: Clock
    auth: auth_mod.Authenticator | None
    inventory: InventorySource


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def now_of(request: Request) -> datetime:
    """The request's one reading of the clock."""
    return web_of(request).clock.now()
