"""Dashboard users, sign-in sessions and API tokens, kept in the store.

* Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3
  passes), in the PHC string format, so the parameters can be raised later
  and old hashes still verify (:func:`verify_password` says when to re-hash).
* API tokens and session ids are 256 random bits shown once; the store keeps
  only their SHA-256. A slow KDF would add nothing against guessing 256 bits,
  and a per-request lookup must be fast.
* :class:`StoreAuth` is the :class:`~corral.web.auth.Authenticator` that reads
  ``Authorization: Bearer TOKEN`` or the session cookie.

As soon as one user or token exists, every request needs credentials, also on
127.0.0.1: on a shared host, loopback is reachable by every local account.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from corral import errors
from corral.clock import Clock, SystemClock
from corral.store import Store
from corral.web import auth as auth_mod

if TYPE_CHECKING:  # pragma: no cover
    from argon2 import PasswordHasher

SESSION_COOKIE = "corral_session"
SESSION_TTL = timedelta(days=7)
"""A sign-in lasts this long; then the person signs in again."""
TOKEN_PREFIX = "corral_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
"""Longer passwords are refused before hashing (hashing cost grows with length)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


def check_name(name: str, what: str = "user") -> str:
    """A user or token name: 1-64 of letters, digits, ``_ . @ -``."""
    if not _NAME_RE.match(name):
        shown = name if len(name) <= 70 else name[:67] + "..."
        raise errors.CorralError(
            f'"{shown}" is not a valid {what} name; use 1-64 letters, digits, _ . @ or -, '
            "starting with a letter or digit, like alice or ci-deploy"
        )
    return name


def check_role(role: str) -> str:
    if role not in auth_mod.ROLES:
        raise errors.CorralError(f'unknown role "{role}"; use one of {", ".join(auth_mod.ROLES)}')
    return role


def check_password(password: str) -> str:
    """Refuse passwords too short to resist guessing, or too long to hash cheaply."""
    if len(password) < MIN_PASSWORD:
        raise errors.CorralError(
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD} (a few random words will do)"
        )
    if len(password) > MAX_PASSWORD:
        raise errors.CorralError(f"the password has {len(password)} characters; use at most {MAX_PASSWORD}")
    return password


# ---------------------------------------------------------------------------
# Hashing


_hasher: PasswordHasher | None = None
_dummy_hash: str | None = None
_hasher_lock = threading.Lock()


def _argon2() -> PasswordHasher:
    global _hasher, _dummy_hash
    with _hasher_lock:
        if _hasher is None:
            from argon2 import PasswordHasher

            _hasher = PasswordHasher()
            _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        return _hasher


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` in PHC format."""
    return _argon2().hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; takes as long for an unknown user
    (``stored`` None), so timing does not tell which names exist."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _argon2()
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return hasher.verify(stored or _dummy_hash or "", password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    """SHA-256 hex of a token or session id: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh API token: ``corral_`` + 256 random bits (the prefix lets secret scanners find leaks)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------
# Operations used by the CLI and the sign-in page


def add_user(store: Store, name: str, role: str, password: str, *, now: datetime, replace: bool = False) -> None:
    check_name(name)
    check_role(role)
    check_password(password)
    store.add_user(name, role, hash_password(password), now=now, replace=replace)


def create_token(store: Store, name: str, role: str, *, now: datetime, by: str | None = None) -> tuple[int, str]:
    """Record a new API token; returns its id and the token itself (shown once, never stored)."""
    check_name(name, "token")
    check_role(role)
    token = new_token()
    return store.create_token(name, role, digest(token), now=now, by=by), token


def sign_in(store: Store, name: str, password: str, *, now: datetime) -> str | None:
    """A new session id for ``name`` if ``password`` is right, else None."""
    user = store.get_user(name) if _NAME_RE.match(name) else None
    if not verify_password(user["password_hash"] if user else None, password):
        return None
    session = secrets.token_urlsafe(32)
    store.create_session(digest(session), name, now=now, expires_at=now + SESSION_TTL)
    return session


def sign_out(store: Store, session: str) -> None:
    store.delete_session(digest(session))


class Throttle:
    """Refuses sign-in for a name after ``most`` failures within ``window``
    seconds, until the window has passed: slows password guessing to a crawl
    without locking the real person out for long."""

    def __init__(self, most: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.most = most
        self.window = window
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [at for at in self._failures.get(key, []) if now - at < self.window]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        with self._lock:
            now = self._clock()
            recent = self._recent(key.lower(), now)
            if len(recent) < self.most:
                return 0.0
            return max(0.0, self.window - (now - recent[0]))

    def failed(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key.lower(), now)
            self._failures.setdefault(key.lower(), []).append(now)
            if len(self._failures) > 10_000:  # a flood of made-up names: forget the oldest
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key.lower(), None)


# ---------------------------------------------------------------------------
# The authenticator


class StoreAuth:
    """Principals from API tokens (``Authorization: Bearer``) and sign-in sessions (cookie)."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.throttle = Throttle()

    def authenticate(self, request: HTTPConnection) -> auth_mod.Principal | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return None
            return self._token(value.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return self._session(cookie)
        return None

    def _token(self, token: str) -> auth_mod.Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        row = self.store.token_by_hash(digest(token))
        if row is None:
            return None
        return auth_mod.Principal(name=token_actor(row), role=row["role"])

    def _session(self, session: str) -> auth_mod.Principal | None:
        if len(session) > 200:
            return None
        hashed = digest(session)
        row = self.store.session_user(hashed, now=self.clock.now())
        if row is None:
            return None
        return auth_mod.Principal(name=row["name"], role=row["role"], session=hashed)


def token_actor(row: dict[str, Any]) -> str:
    """How a token is named in messages and the audit log: ``ci (token 3)``."""
    return f"{row['name']} (token {row['id']})"
