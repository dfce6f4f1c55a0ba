"""Simulated SSH hosts for discovery tests and the bench: asyncssh servers
on 127.0.0.1 that run the collector's script with ``/bin/sh`` against a
folder standing in for the host's ``/``.

Each host can answer slowly, refuse the spool (as a non-root login on
Debian would see it), hang, or present another host key.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

DENY_SPOOL = "deny_spool"
HANG = "hang"
RUN = "run"


@dataclass
class SimHost:
    name: str
    root: Path
    delay: float = 0.0
    mode: str = RUN
    host_key: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    port: int = 0
    server: Any = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_MARK = re.compile(rb"^M=(\S+)$", re.MULTILINE)


def _process_factory(host: SimHost) -> Any:
    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        script = await process.stdin.read()
        # the host's "/" is its folder (what Target.root would say, set here so
        # a client that knows nothing of it, like the CLI, reads the right files)
        script = script.replace(b"\nR=''\n", b"\nR=" + shlex.quote(str(host.root)).encode() + b"\n", 1)
        if host.mode == HANG:
            await asyncio.sleep(3600)
        if host.delay:
            await asyncio.sleep(host.delay)
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-s",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await child.communicate(script)
        if host.mode == DENY_SPOOL:
            found = _MARK.search(script)
            assert found is not None
            marker = found.group(1).strip(b"'")
            spool = re.escape(marker) + rb" F /var/spool/cron/crontabs/.*?\n" + re.escape(marker) + rb" Z\n"
            out = re.sub(spool, b"", out, flags=re.DOTALL)
            denied = marker + b" E /var/spool/cron/crontabs\npermission denied (listing the directory)\n"
            out = out.replace(marker + b" END\n", denied + marker + b" END\n")
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(child.returncode or 0)

    return handle


async def start(hosts: list[SimHost], client_public_key: str) -> None:
    """Start a server per host (port 0 picks a free one; ``host.port`` is set)."""
    authorized = asyncssh.import_authorized_keys(client_public_key)
    for host in hosts:
        host.server = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            host.port,
            server_host_keys=[host.host_key],
            authorized_client_keys=authorized,
            process_factory=_process_factory(host),
            encoding=None,
        )
        host.port = host.server.sockets[0].getsockname()[1]


async def stop(hosts: list[SimHost]) -> None:
    for host in hosts:
        if host.server is not None:
            host.server.close()
            await host.server.wait_closed()


def known_hosts_line(host: SimHost, key: asyncssh.SSHKey | None = None) -> str:
    algorithm, blob = (key or host.host_key).export_public_key("openssh").decode().split()[:2]
    return f"[127.0.0.1]:{host.port} {algorithm} {blob}\n"


def write_root(root: Path, files: dict[str, str]) -> Path:
    """Lay ``files`` (server path -> text) out under ``root``."""
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root
