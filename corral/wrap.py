"""``corral wrap --ping URL -- command...``: run a legacy job as it is and
report it to a monitor-only job (issue 6, item 4).

It pings ``URL/start``, runs the command with its output passed through
unchanged (stdout to stdout, stderr to stderr), then POSTs ``URL/<exit code>``
with the last lines of the output as the body, and exits with the command's
own status. A ping that cannot be delivered is reported on stderr and never
changes that status: watching a job must not break it.

Registered on the main group at the bottom of :mod:`corral.cli`.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import IO

import click

TAIL_LINES = 50
TAIL_BYTES = 10_000
"""What the server keeps of a ping's body (corral.web.pings.BODY_KEEP)."""
ATTEMPTS = 3


def send(url: str, body: bytes | None, *, timeout: float, attempts: int = ATTEMPTS) -> str | None:
    """POST ``body`` to ``url`` (retrying a few times); the error, or None when sent."""
    error = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(2.0**attempt / 2, 5.0))
        request = urllib.request.Request(
            url, data=body or b"", method="POST", headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "corral-wrap"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's ping URL
                response.read()
                return None
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} from {url}"
            if 400 <= exc.code < 500:
                return error  # a wrong URL does not get better by asking again
        except (urllib.error.URLError, OSError) as exc:
            error = f"{url}: {getattr(exc, 'reason', exc)}"
    return error


def _pump(source: IO[bytes], sink: IO[bytes], tail: collections.deque[bytes], lock: threading.Lock) -> None:
    for line in iter(source.readline, b""):
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):
            pass
        with lock:
            tail.append(line)
    source.close()


def tail_text(lines: collections.deque[bytes], limit: int = TAIL_BYTES) -> bytes:
    return b"".join(lines)[-limit:]


def run(command: list[str], ping: str, *, tail_lines: int = TAIL_LINES, timeout: float = 10.0) -> int:
    """Run ``command`` between a start ping and an exit-code ping; its exit status."""
    base = ping.rstrip("/")
    problem = send(f"{base}/start", None, timeout=timeout)
    if problem:
        click.echo(f"corral wrap: start ping not delivered: {problem}", err=True)
    tail: collections.deque[bytes] = collections.deque(maxlen=tail_lines)
    lock = threading.Lock()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"corral wrap: cannot run {command[0]!r}: {exc.strerror or exc}\n".encode()
        sys.stderr.buffer.write(message)
        tail.append(message)
    else:
        forward = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

        def relay(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        if threading.current_thread() is threading.main_thread():
            for sig in forward:
                signal.signal(sig, relay)
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer, tail, lock), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer, tail, lock), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        try:
            status = proc.wait()
        finally:
            for pump in pumps:
                pump.join(timeout=5)
            if threading.current_thread() is threading.main_thread():
                for sig, handler in forward.items():
                    signal.signal(sig, handler)
        code = status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says
    with lock:
        body = tail_text(tail)
    problem = send(f"{base}/{min(code, 255)}", body, timeout=timeout)
    if problem:
        click.echo(f"corral wrap: exit ping not delivered: {problem}", err=True)
    return code


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--ping", "ping_url", required=True, metavar="URL", help="The monitor's ping URL, like https://corral.example/ping/<uuid>.")
@click.option("--tail", "tail_lines", type=click.IntRange(0, 1000), default=TAIL_LINES, show_default=True, help="Lines of output to send with the exit code.")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=10.0, show_default=True, help="Seconds per ping attempt.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def wrap(ping_url: str, tail_lines: int, timeout: float, command: tuple[str, ...]) -> None:
    """Run COMMAND and report it to a monitor-only job: a start ping, then the
    exit code and the last lines of its output. Exits with COMMAND's status.

    \b
    In a crontab:  0 3 * * *  corral wrap --ping https://corral.example/ping/<uuid> -- /opt/backup.sh
    """
    if not ping_url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{ping_url!r} is not an http(s) URL", param_hint="--ping")
    # SystemExit, not click's Exit: ``corral.cli.run`` (standalone_mode=False) would drop its code.
    sys.exit(run(list(command), ping_url, tail_lines=tail_lines, timeout=timeout))
