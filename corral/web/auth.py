"""Who is asking, and what they may do.

Without an authenticator every request comes from :data:`LOCAL`, which is
only safe because the app then answers on a loopback address alone (see
:func:`corral.web.security.check_bind`). Users, sign-in sessions and API
tokens kept in the store (:mod:`corral.web.accounts`) plug in through
:class:`Authenticator`; each route says which role it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover - keeps `corral --help` free of Starlette
    from starlette.requests import HTTPConnection

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES: tuple[str, ...] = (VIEWER, OPERATOR, ADMIN)
"""Each role may do everything the roles before it may."""


@dataclass(frozen=True)
class Principal:
    """A person or token the request acts for."""

    name: str
    role: str
    session: str | None = None
    """The hash of the sign-in session the request came with (None for tokens and LOCAL)."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; use one of {', '.join(ROLES)}")

    def may(self, role: str) -> bool:
        """True if this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def binding(self) -> str:
        """What CSRF tokens are bound to: the person and, when signed in, the session."""
        return f"{self.name}\x00{self.session or ''}"


LOCAL = Principal(name="local", role=ADMIN)
"""Everyone who can reach a loopback-only dashboard without authentication."""


class Authenticator(Protocol):
    """Turns a request's credentials into a principal.

    ``authenticate`` is called from a worker thread for every request outside
    ``/static`` and ``/healthz``, so it may look things up in a store. It
    returns None when the request carries no valid credentials (the app
    answers 401).
    """

    def authenticate(self, request: HTTPConnection) -> Principal | None: ...
