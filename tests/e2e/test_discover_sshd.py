"""Discovery against a real OpenSSH server on 127.0.0.1.

The test makes its own host key, user key, authorized_keys and sshd_config
(no PAM, a free port, ``-D -e`` so it stays in the foreground and logs to
stderr), starts ``/usr/sbin/sshd`` and stops it by PID. The crontabs live in
a temp folder the collector reads through ``Target.root``. The client finds
the host through an ssh config alias (HostName, Port, User, IdentityFile),
as ``~/.ssh/config`` would give it.

Needs Debian's ``openssh-server``; skipped when /usr/sbin/sshd is missing.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral import cli
from corral.discover import collect
from corral.discover import inventory as inv
from corral.discover import ssh
from tests.discover_sim import free_port, write_root
from tests.e2e.helpers import wait_for

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(
    not SSHD.exists() or shutil.which("ssh-keygen") is None,
    reason="needs OpenSSH's sshd and ssh-keygen (Debian: apt-get install openssh-server)",
)


@dataclass
class Server:
    port: int
    host_pub: str
    user: str
    key: Path
    ssh_config: Path
    known_hosts: Path
    root: Path


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Server]:
    if os.geteuid() == 0:
        # sshd running as root wants its privilege-separation directory, which
        # the Debian service creates at boot; an empty root-owned folder is all it is.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    etc = tmp_path / "sshd"
    etc.mkdir()
    keygen(etc / "host_key")
    keygen(etc / "user_key")
    shutil.copy(etc / "user_key.pub", etc / "authorized_keys")
    os.chmod(etc / "authorized_keys", 0o600)
    port = free_port()
    (etc / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {etc / "host_key"}
PidFile none
UsePAM no
AuthorizedKeysFile {etc / "authorized_keys"}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
"""
    )
    log = open(etc / "sshd.log", "wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(etc / "sshd_config")], stdout=log, stderr=log)
    try:
        wait_for(lambda: listening(port) or process.poll() is not None, timeout=10, what="sshd to listen")
        if process.poll() is not None:
            pytest.fail(f"sshd exited: {(etc / 'sshd.log').read_text()}")
        user = getpass.getuser()
        client = tmp_path / "client"
        client.mkdir()
        ssh_config = client / "config"
        ssh_config.write_text(
            f"Host crontab-box\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
            f"  IdentityFile {etc / 'user_key'}\n  IdentitiesOnly yes\n"
        )
        root = write_root(
            tmp_path / "box",
            {
                "/etc/crontab": "SHELL=/bin/sh\n15 2 * * * root /opt/nightly.sh > /var/log/nightly.log 2>&1\n",
                "/etc/cron.d/reports": "CRON_TZ=Asia/Seoul\n0 9 1 * * report /usr/bin/php /srv/report/monthly.php\n",
                "/var/spool/cron/crontabs/digger": "MAILTO=ops@example.com\n*/10 * * * * /opt/digger/bin/pull\n",
                "/etc/timezone": "Europe/Berlin\n",
            },
        )
        host_pub = (etc / "host_key.pub").read_text().split()
        yield Server(port, " ".join(host_pub[:2]), user, etc / "user_key", ssh_config, client / "known_hosts", root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def options(server: Server, **kw: object) -> ssh.Options:
    return ssh.Options(
        ssh_config=(str(server.ssh_config),), known_hosts=str(server.known_hosts), agent=False, **kw  # type: ignore[arg-type]
    )


def test_a_real_sshd_host_is_read_through_an_ssh_config_alias(sshd: Server) -> None:
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\n")
    box = ssh.Target("crontab-box", root=str(sshd.root))
    inventory, results = ssh.collect_ssh([box], options(sshd))
    host = inventory.hosts[0]
    assert (host.name, host.status, host.error, host.timezone) == ("crontab-box", inv.OK, None, "Europe/Berlin")
    jobs = [(e.source, e.user, e.schedule, e.command, e.timezone) for e in inventory.entries if e.kind == "job"]
    assert jobs == [
        ("/etc/crontab", "root", "15 2 * * *", "/opt/nightly.sh > /var/log/nightly.log 2>&1", None),
        ("/etc/cron.d/reports", "report", "0 9 1 * *", "/usr/bin/php /srv/report/monthly.php", "Asia/Seoul"),
        ("/var/spool/cron/crontabs/digger", "digger", "*/10 * * * *", "/opt/digger/bin/pull", None),
    ]
    assert results[0].accepted_key is None


def test_a_real_sshd_host_unknown_at_first_is_trusted_only_with_accept_new(sshd: Server) -> None:
    box = ssh.Target("crontab-box", root=str(sshd.root))
    refused, _ = ssh.collect_ssh([box], options(sshd))
    assert refused.hosts[0].status == inv.HOST_KEY_UNKNOWN
    assert not sshd.known_hosts.exists()
    accepted, results = ssh.collect_ssh([box], options(sshd, accept_new=True))
    assert accepted.hosts[0].status == inv.OK
    assert results[0].accepted_key and results[0].accepted_key.startswith("SHA256:")
    assert sshd.known_hosts.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\n"


ORDINARY_USER = "corral-ssh-test"


def ordinary_login(server: Server) -> Server:
    """When the tests run as root (root reads any spool), log in as an ordinary
    account instead, created here if missing, so a closed spool is really closed."""
    if os.geteuid() != 0:
        return server
    import pwd

    try:
        pwd.getpwnam(ORDINARY_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", ORDINARY_USER], check=True
        )
    # A new system account is locked ("!"), and sshd refuses locked accounts even
    # for key logins; "*" means "no password" without the lock.
    subprocess.run(["usermod", "-p", "*", ORDINARY_USER], check=True)
    # sshd reads authorized_keys as the user logging in.
    keys = server.key.parent / "authorized_keys"
    keys.chmod(0o644)
    # The ordinary account must be able to walk down to its keys and the fake root.
    for folder in [server.root, keys.parent, *server.root.parents]:
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o005)
    config = server.ssh_config.parent / "config-ordinary"
    config.write_text(server.ssh_config.read_text().replace(f"User {server.user}", f"User {ORDINARY_USER}"))
    return Server(server.port, server.host_pub, ORDINARY_USER, server.key, config, server.known_hosts, server.root)


def test_a_real_sshd_host_with_a_closed_spool_reports_permission_denied(sshd: Server) -> None:
    sshd = ordinary_login(sshd)
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\n")
    spool = sshd.root / "var" / "spool" / "cron" / "crontabs"
    spool.chmod(0o300)
    try:
        inventory, _ = ssh.collect_ssh([ssh.Target("crontab-box", root=str(sshd.root))], options(sshd))
    finally:
        spool.chmod(0o755)
    assert inventory.hosts[0].status == inv.PERMISSION_DENIED
    assert [e.source for e in inventory.entries if e.kind == "job"] == ["/etc/crontab", "/etc/cron.d/reports"]


def test_discover_then_import_from_a_real_sshd_host(
    sshd: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\n")
    # the CLI has no root prefix: collect to a folder first, then analyse it like any saved collection
    inventory, results = ssh.collect_ssh([ssh.Target("crontab-box", root=str(sshd.root))], options(sshd))
    saved = tmp_path / "saved"
    collect.write_tree(ssh.files_by_host(results), saved)
    out = tmp_path / "inv.json"
    assert cli.run(["discover", "--from-dir", str(saved), "--json", str(out), "--quiet"]) == 0
    assert cli.run(["import", str(out), "-o", str(tmp_path / "corral.yaml")]) == 0
    assert cli.run(["validate", "-c", str(tmp_path / "corral.yaml")]) == 0
    capsys.readouterr()
    assert cli.run(["next", "pull", "-n", "2", "--from", "2025-06-02T10:01:00Z", "--json", "-c", str(tmp_path / "corral.yaml")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["timezone"] == "Europe/Berlin" and data["next"] == ["2025-06-02T12:10:00+02:00", "2025-06-02T12:20:00+02:00"]
