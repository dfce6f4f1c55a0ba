"""What stands between the network and the handlers.

:class:`Guard` is one ASGI middleware that, for every HTTP request, in order:

1. adds the security headers to whatever response goes out (errors included)
   and turns an unexpected exception into a plain 500;
2. refuses a ``Host`` that is not a loopback name while no authentication is
   configured (a page on another site that rebinds its DNS name to 127.0.0.1
   would otherwise be same-origin with the dashboard);
3. reads the body, at most ``max_body`` bytes (413 beyond);
4. finds the principal (401 without valid credentials when auth is on);
5. for POST and the other unsafe methods, checks that the request comes from
   the dashboard itself (403 otherwise): see :class:`CsrfTokens`.

Handlers then find the principal, the CSRF token for their forms and the
body in the request scope (:func:`principal_of`, :func:`csrf_token_of`,
:func:`body_of`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral import errors
from corral.web import auth as auth_mod
from corral.web import problems

log = logging.getLogger("corral.web")

MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes."""

CSRF_COOKIE = "corral_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/static/", "/healthz", "/ping/")
"""Paths served without credentials: assets, the liveness probe and heartbeat
pings (their UUID is the secret; they change nothing but a monitor's pings)."""
SIGN_IN_PATHS = frozenset({"/login"})
"""Paths served with or without credentials: the sign-in page and its form."""

SECURITY_HEADERS: dict[str, str] = {
    # No inline script or style anywhere: every script and stylesheet is a file
    # under /static, and the SVG charts use presentation attributes and classes.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # Not "no-referrer": with it Chromium sends "Origin: null" on form posts,
    # which the origin check must refuse. same-origin leaks nothing to other sites.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

ProblemRenderer = Callable[[Scope, int, str, Mapping[str, str] | None], Response]
"""Builds the error response (JSON or HTML) for a scope, status and message."""


# ---------------------------------------------------------------------------
# Where the app may listen


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: auth_mod.Authenticator | None) -> None:
    """Refuse to serve a non-loopback ``host`` without authentication."""
    if auth is not None or is_loopback(host):
        return
    raise errors.CorralError(
        f"refusing to serve the dashboard on {host} without authentication: anyone who can reach "
        "that address could trigger, cancel and pause jobs. Serve it on 127.0.0.1 (the default: drop "
        "--host and the job file's web.host) and reach it from elsewhere through an SSH tunnel "
        "(ssh -L 8377:127.0.0.1:8377 THIS-HOST) or a reverse proxy that does its own login; or configure "
        "authentication: create a user with `corral users add NAME --role admin` (or an API token with "
        "`corral tokens create NAME --role viewer`) against the same store, then start again"
    )


def _host_name(host_header: str) -> str:
    """The name part of a Host header (``[::1]:8377`` -> ``::1``)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


# ---------------------------------------------------------------------------
# CSRF


class CsrfTokens:
    """Signed double-submit tokens.

    A token is ``NONCE.MAC`` where MAC = HMAC-SHA256(secret, principal, NONCE).
    It is set as an HttpOnly, SameSite=Strict cookie and written into every
    form; a POST is accepted when the form field (or the ``X-CSRF-Token``
    header) equals the cookie *and* the MAC is valid for the principal. A
    cross-site page can neither read the token nor, lacking the secret, mint
    one (which plain double-submit would allow to anyone able to set a
    cookie for the host, e.g. another service on localhost).
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, binding: str, nonce: str) -> str:
        digest = hmac.new(self._secret, f"{binding}\x00{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")

    def issue(self, binding: str) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac(binding, nonce)}"

    def valid(self, binding: str, token: str | None) -> bool:
        if not token or token.count(".") != 1 or len(token) > 128:
            return False
        nonce, mac = token.split(".")
        return hmac.compare_digest(mac, self._mac(binding, nonce))

    def accepts(self, binding: str, cookie: str | None, submitted: str | None) -> bool:
        """True if ``submitted`` is the valid token held in the cookie."""
        if not cookie or not submitted:
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode()) and self.valid(binding, cookie)


# ---------------------------------------------------------------------------
# Reading what the guard left in the scope


def principal_of(scope: Scope) -> auth_mod.Principal | None:
    return scope.get("corral.principal")


def require_principal(scope: Scope) -> auth_mod.Principal:
    """The principal of a request that must have one (401 otherwise)."""
    principal = principal_of(scope)
    if principal is None:
        raise problems.Unauthorized()
    return principal


def csrf_token_of(scope: Scope) -> str:
    return str(scope.get("corral.csrf", ""))


def body_of(scope: Scope) -> bytes:
    return bytes(scope.get("corral.body", b""))


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of an urlencoded form body (first value of each)."""
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=50)
    except ValueError as exc:  # more fields than any corral form has
        raise problems.BadRequest(f"the form has too many fields ({exc})") from None
    return {key: values[0] for key, values in fields.items() if values}


def wants_json(scope: Scope) -> bool:
    """API paths answer JSON; pages answer HTML unless the client asks for JSON."""
    path: str = scope.get("path", "")
    if path.startswith("/api/") or path == "/api" or path == "/healthz":
        return True
    accept = Headers(scope=scope).get("accept", "")
    return "application/json" in accept and "text/html" not in accept


# ---------------------------------------------------------------------------
# The middleware


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: auth_mod.Authenticator | None,
        csrf: CsrfTokens,
        problem: ProblemRenderer,
        loopback_only: bool,
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.auth = auth
        self.csrf = csrf
        self.problem = problem
        self.loopback_only = loopback_only
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = self._secure(scope, message)
            await send(message)

        try:
            self._check_host(scope)
            body = await self._read_body(scope, receive)
            if body is None:
                return  # the client went away
            scope["corral.body"] = body
            await self._identify(scope)
            if scope["method"] not in SAFE_METHODS and not scope["path"].startswith("/ping/"):
                self._check_origin(scope)
                self._check_csrf(scope)
            await self.app(scope, _replay(body, receive), send_secured)
        except _Refused as refused:
            if started:
                return
            if refused.status in (301, 302, 303, 307, 308):
                redirect = Response(status_code=refused.status, headers=dict(refused.headers or {}))
                await redirect(scope, receive, send_secured)
            else:
                await self.problem(scope, refused.status, refused.message, refused.headers)(
                    scope, receive, send_secured
                )
        except errors.CorralError as exc:  # from a step above, e.g. an authenticator whose store is down
            if not started:
                await self.problem(scope, problems.status_of(exc), str(exc), None)(scope, receive, send_secured)
        except Exception:
            log.exception("error while serving %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = self.problem(scope, 500, "internal error in corral; the details are in its log", None)
                await response(scope, receive, send_secured)

    # -- steps ------------------------------------------------------------------------

    def _check_host(self, scope: Scope) -> None:
        if not self.loopback_only:
            return
        host = Headers(scope=scope).get("host", "")
        if not is_loopback(_host_name(host)):
            raise _Refused(
                400,
                f"refusing a request for host {host!r}: without authentication the dashboard answers only "
                "to localhost and loopback addresses (this blocks DNS-rebinding attacks); open it as "
                "http://127.0.0.1:PORT/",
            )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        if scope["method"] in SAFE_METHODS:
            return b""
        limit = self.max_body
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise _Refused(400, f"Content-Length {declared!r} is not a number of bytes")
            if int(declared) > limit:
                raise _Refused(413, f"the request body has {int(declared)} bytes; at most {limit} are accepted")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"the request body is larger than {limit} bytes, the most accepted")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _identify(self, scope: Scope) -> None:
        path: str = scope["path"]
        if self.auth is None:
            principal: auth_mod.Principal | None = auth_mod.LOCAL
        elif path.startswith(PUBLIC_PREFIXES):
            principal = None
        else:
            principal = await run_in_threadpool(self.auth.authenticate, HTTPConnection(scope))
            if principal is None and path not in SIGN_IN_PATHS:
                if scope["method"] in ("GET", "HEAD") and not wants_json(scope):
                    # A person opening a page: show the sign-in form, then come back.
                    target = path + (f"?{scope['query_string'].decode('latin-1')}" if scope.get("query_string") else "")
                    raise _Refused(303, "sign in first", {"location": "/login?" + urlencode({"next": target})})
                raise _Refused(
                    401,
                    "sign in first: this dashboard needs credentials (a session from /login, "
                    "or an API token as Authorization: Bearer TOKEN from `corral tokens create`)",
                    {"www-authenticate": 'Bearer realm="corral"'},
                )
        scope["corral.principal"] = principal
        binding = principal.binding if principal is not None else ""
        cookie = _cookie(scope, CSRF_COOKIE)
        if cookie is not None and self.csrf.valid(binding, cookie):
            scope["corral.csrf"] = cookie
        else:
            scope["corral.csrf"] = self.csrf.issue(binding)
            scope["corral.csrf_new"] = True

    def _check_origin(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, headers.get("host", "")):
            raise _Refused(
                403,
                f"cross-origin request from {origin!r} to host {headers.get('host', '')!r} refused; act from the "
                "dashboard's own pages (behind a reverse proxy, have it pass the original Host header)",
            )
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site"):
            raise _Refused(403, f"{site} request refused; act from the dashboard's own pages")

    def _check_csrf(self, scope: Scope) -> None:
        principal = principal_of(scope)
        binding = principal.binding if principal is not None else ""
        cookie = _cookie(scope, CSRF_COOKIE)
        headers = Headers(scope=scope)
        submitted = headers.get(CSRF_HEADER)
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if submitted is None and content_type == "application/x-www-form-urlencoded":
            submitted = form_fields(body_of(scope)).get(CSRF_FIELD)
        if self.csrf.accepts(binding, cookie, submitted):
            return
        path: str = scope["path"]
        if path.startswith("/api/"):
            # A cross-site page cannot send a JSON body without a CORS preflight,
            # which this app never approves; so a JSON request is a same-origin
            # script or a program like curl, never a forged form.
            if content_type == "application/json":
                return
            raise _Refused(
                403,
                "refused a state-changing request without CSRF protection: send it with "
                "Content-Type: application/json (a body of {} will do)",
            )
        raise _Refused(
            403,
            "the form's CSRF token is missing or out of date (corral may have restarted); "
            "reload the page and try again",
        )

    def _secure(self, scope: Scope, message: Message) -> Message:
        headers = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1").lower() not in SECURITY_HEADERS]
        names = {k.decode("latin-1").lower() for k, _ in headers}
        for name, value in SECURITY_HEADERS.items():
            headers.append((name.encode(), value.encode()))
        if "cache-control" not in names and not scope["path"].startswith("/static/"):
            headers.append((b"cache-control", b"no-store"))
        content_type = dict((k.decode("latin-1").lower(), v) for k, v in headers).get("content-type", b"")
        if scope.get("corral.csrf_new") and content_type.startswith(b"text/html"):
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            cookie = f"{CSRF_COOKIE}={scope['corral.csrf']}; Path=/; HttpOnly; SameSite=Strict{secure}"
            headers.append((b"set-cookie", cookie.encode("latin-1")))
        return {**message, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    done = False

    async def replay() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _cookie(scope: Scope, name: str) -> str | None:
    raw = Headers(scope=scope).get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed Cookie header is as good as none
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(origin: str, host_header: str) -> bool:
    """Does ``origin`` (scheme://host[:port]) name the host this request was sent to?"""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
        requested = urlsplit(f"//{host_header}")
        host_port = requested.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or not requested.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname == requested.hostname and (origin_port or default) == (host_port or default)
