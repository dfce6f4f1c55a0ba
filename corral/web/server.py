"""Serving the app with uvicorn in a daemon thread of ``corral up``."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn

from corral import errors
from corral.web import auth as auth_mod
from corral.web.app import create_app

log = logging.getLogger("corral.web")

START_TIMEOUT = 10.0


class WebServer:
    """A running dashboard; ``stop()`` ends it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        address = sock.getsockname()
        self.host: str = address[0]
        self.port: int = address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bind here, not in uvicorn, so a busy port is a clear error for the caller."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise errors.CorralError(
            f"cannot serve the dashboard on {host}: {exc.strerror}; use an address like 127.0.0.1"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; another program uses it, pick another with --port" if exc.errno in (98, 48) else ""
        raise errors.CorralError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}{hint}") from exc
    sock.setblocking(False)
    return sock


def serve_in_thread(
    config_path: Path,
    store_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8377,
    auth: auth_mod.Authenticator | None = None,
    inventory: Path | None = None,
) -> WebServer:
    """Serve the dashboard on ``host:port`` from a daemon thread; returns once it listens.

    Raises :class:`errors.CorralError` for a non-loopback host without
    ``auth``, a busy port, or a job file or store that cannot be used.
    """
    app = create_app(Path(config_path), store_url, auth=auth, host=host, inventory=inventory)
    sock = _listen(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,  # keep corral's logging as it is
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - SystemExit from uvicorn included: report it, do not die silently
            failure.append(exc)
            log.error("the dashboard stopped: %r", exc)

    thread = threading.Thread(target=run, name="corral-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            cause = failure[0] if failure else None
            raise errors.CorralError(f"the dashboard did not start on {host}:{port}: {cause!r}") from cause
        time.sleep(0.01)
    handle = WebServer(server, thread, sock)
    log.info("dashboard on %s", handle.url)
    return handle
