"""The SSH collector against simulated hosts: asyncssh servers on 127.0.0.1
that run the collector's script on a folder standing in for each host's /.

Many hosts at once, and one of each failure: unreachable, changed host key,
unknown host key (refused, then trusted with accept_new), refused key,
unreadable spool, a host that never answers. None stops the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import asyncssh
import pytest

from corral import cli
from corral.discover import collect, ssh
from corral.discover import inventory as inv
from tests import discover_sim as sim

NOW = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)
CRONTAB = "SHELL=/bin/sh\n0 3 * * * root /opt/backup.sh >/var/log/backup.log 2>&1\n"
USER_CRONTAB = 'MAILTO=""\nCRON_TZ=Asia/Seoul\n*/5 * * * * php /srv/shop/sync.php\n'


def host_files(index: int) -> dict[str, str]:
    return {
        "/etc/crontab": CRONTAB,
        "/etc/timezone": "UTC\n",
        f"/var/spool/cron/crontabs/app{index}": USER_CRONTAB,
    }


class Fleet:
    """A client key, known_hosts and an empty ssh config in a temp folder,
    and simulated hosts made from ``host_files``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.key_file = tmp / "id_ed25519"
        self.key.write_private_key(self.key_file)
        self.public = self.key.export_public_key("openssh").decode()
        self.known_hosts = tmp / "known_hosts"
        self.ssh_config = tmp / "ssh_config"
        self.ssh_config.write_text("")

    def options(self, **kw: object) -> ssh.Options:
        base: dict[str, object] = dict(
            ssh_config=(str(self.ssh_config),),
            known_hosts=str(self.known_hosts),
            client_keys=(str(self.key_file),),
            agent=False,
            connect_timeout=5,
            command_timeout=5,
        )
        base.update(kw)
        return ssh.Options(**base)  # type: ignore[arg-type]

    def host(self, name: str, index: int = 0, **kw: object) -> sim.SimHost:
        root = sim.write_root(self.tmp / "roots" / name, host_files(index))
        return sim.SimHost(name, root, **kw)  # type: ignore[arg-type]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield Fleet(tmp_path)


def target(host: sim.SimHost) -> ssh.Target:
    return ssh.Target(host.name, address="127.0.0.1", port=host.port)


async def read(fleet: Fleet, hosts: list[sim.SimHost], extra: list[ssh.Target], options: ssh.Options,
               trust: list[sim.SimHost] | None = None) -> list[ssh.HostResult]:  # fmt: skip
    await sim.start(hosts, fleet.public)
    try:
        if trust is not None:
            fleet.known_hosts.write_text("".join(sim.known_hosts_line(h) for h in trust))
        return await ssh.read_hosts([target(h) for h in hosts] + extra, options)
    finally:
        await sim.stop(hosts)


def test_many_hosts_and_every_failure_are_reported_side_by_side(fleet: Fleet) -> None:
    good = [fleet.host(f"web{i}", i) for i in range(6)]
    denied = fleet.host("nospool", 9, mode=sim.DENY_SPOOL)
    changed = fleet.host("changed")
    stranger = fleet.host("stranger")
    hosts = [*good, denied, changed, stranger]
    dead = ssh.Target("dead", address="127.0.0.1", port=sim.free_port())

    async def go() -> list[ssh.HostResult]:
        await sim.start(hosts, fleet.public)
        try:
            other_key = asyncssh.generate_private_key("ssh-ed25519")
            fleet.known_hosts.write_text(
                "".join(sim.known_hosts_line(h) for h in [*good, denied])
                + sim.known_hosts_line(changed, other_key)  # stranger: not listed at all
            )
            return await ssh.read_hosts([target(h) for h in hosts] + [dead], fleet.options(concurrency=4))
        finally:
            await sim.stop(hosts)

    results = asyncio.run(go())
    status = {r.host.name: r.host.status for r in results}
    assert status == {
        **{f"web{i}": inv.OK for i in range(6)},
        "nospool": inv.PERMISSION_DENIED,
        "changed": inv.HOST_KEY_MISMATCH,
        "stranger": inv.HOST_KEY_UNKNOWN,
        "dead": inv.UNREACHABLE,
    }
    by_name = {r.host.name: r for r in results}
    assert [(e.user, e.schedule, e.command) for e in by_name["web3"].entries if e.kind == "job"] == [
        ("root", "0 3 * * *", "/opt/backup.sh >/var/log/backup.log 2>&1"),
        ("app3", "*/5 * * * *", "php /srv/shop/sync.php"),
    ]
    assert by_name["web3"].host.timezone == "UTC"
    # the readable files of a host with a closed spool are still analysed
    assert [e.source for e in by_name["nospool"].entries if e.kind == "job"] == ["/etc/crontab"]
    assert "cannot read /var/spool/cron/crontabs (permission denied" in (by_name["nospool"].host.error or "")
    assert "does not match known_hosts" in (by_name["changed"].host.error or "")
    assert "ssh-keygen -R" in (by_name["changed"].host.error or "")
    assert "--accept-new" in (by_name["stranger"].host.error or "")
    assert by_name["dead"].host.error == f"cannot connect to 127.0.0.1:{dead.port}: connection refused"
    # nothing was trusted behind the user's back
    assert "stranger" not in fleet.known_hosts.read_text() and f":{stranger.port}]" not in fleet.known_hosts.read_text()


def test_accept_new_trusts_first_contact_records_it_and_still_refuses_a_changed_key(fleet: Fleet) -> None:
    newcomer = fleet.host("newcomer")
    changed = fleet.host("changed")

    async def go() -> list[ssh.HostResult]:
        await sim.start([newcomer, changed], fleet.public)
        try:
            fleet.known_hosts.write_text(sim.known_hosts_line(changed, asyncssh.generate_private_key("ssh-ed25519")))
            first = await ssh.read_hosts([target(newcomer), target(changed)], fleet.options(accept_new=True))
            # the second time the newcomer is known: no new acceptance
            again = await ssh.read_hosts([target(newcomer)], fleet.options())
            return [*first, *again]
        finally:
            await sim.stop([newcomer, changed])

    first, changed_result, again = asyncio.run(go())
    assert first.host.status == inv.OK
    assert first.accepted_key == newcomer.host_key.get_fingerprint("sha256")
    assert sim.known_hosts_line(newcomer) in fleet.known_hosts.read_text()
    assert changed_result.host.status == inv.HOST_KEY_MISMATCH
    assert again.host.status == inv.OK and again.accepted_key is None


def test_a_refused_key_is_auth_failed_and_a_silent_host_times_out(fleet: Fleet) -> None:
    silent = fleet.host("silent", mode=sim.HANG)
    locked = fleet.host("locked")

    async def go() -> list[ssh.HostResult]:
        await sim.start([silent], fleet.public)
        # locked only accepts some other key
        await sim.start([locked], asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode())
        try:
            fleet.known_hosts.write_text(sim.known_hosts_line(silent) + sim.known_hosts_line(locked))
            return await ssh.read_hosts([target(silent), target(locked)], fleet.options(command_timeout=0.5))
        finally:
            await sim.stop([silent, locked])

    silent_result, locked_result = asyncio.run(go())
    assert silent_result.host.status == inv.ERROR
    assert "took longer than 0.5 s" in (silent_result.host.error or "")
    assert locked_result.host.status == inv.AUTH_FAILED
    assert "refused authentication" in (locked_result.host.error or "")


def test_collect_to_saves_a_tree_that_reads_back_the_same(fleet: Fleet, tmp_path: Path) -> None:
    good = fleet.host("web1", 1)
    dead = ssh.Target("dead", address="127.0.0.1", port=sim.free_port())
    results = asyncio.run(read(fleet, [good], [dead], fleet.options(), trust=[good]))
    live = ssh.to_inventory(results, NOW)
    saved = tmp_path / "collected"
    collect.write_tree(ssh.files_by_host(results), saved)
    again = collect.collect_dir(saved, now=NOW)
    assert [(h.name, h.status, h.error, h.timezone) for h in again.hosts] == [
        (h.name, h.status, h.error, h.timezone) for h in sorted(live.hosts, key=lambda h: h.name)
    ]
    strip = lambda e: (e.host, e.source.removeprefix(e.host), e.line, e.kind, e.schedule, e.command)  # noqa: E731
    assert [strip(e) for e in again.entries] == [strip(e) for e in live.entries]


def test_discover_cli_reads_an_ansible_inventory_and_writes_json_html_and_a_collection(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = [fleet.host(f"app{i}", i) for i in range(3)]
    for host in hosts:
        host.port = sim.free_port()
    inventory_file = tmp_path / "hosts.ini"
    out_json, out_html, saved = tmp_path / "inv.json", tmp_path / "report.html", tmp_path / "saved"

    async def serve_and_run() -> int:
        await sim.start(hosts, fleet.public)
        try:
            fleet.known_hosts.write_text("".join(sim.known_hosts_line(h) for h in hosts))
            return await asyncio.to_thread(
                cli.run,
                [
                    "discover", "--inventory", str(inventory_file), "--json", str(out_json), "--html", str(out_html),
                    "--collect-to", str(saved), "--known-hosts", str(fleet.known_hosts), "--ssh-config",
                    str(fleet.ssh_config), "-i", str(fleet.key_file), "--concurrency", "2",
                ],
            )  # fmt: skip
        finally:
            await sim.stop(hosts)

    lines = ["[apps]"] + [f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}" for h in hosts]
    lines.append(f"ghost ansible_host=127.0.0.1 ansible_port={sim.free_port()}")
    inventory_file.write_text("\n".join(lines) + "\n")
    code = asyncio.run(serve_and_run())
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert {h["name"]: h["status"] for h in data["hosts"]} == {"app0": "ok", "app1": "ok", "app2": "ok", "ghost": "unreachable"}
    assert "4 host(s) read, 1 failed" in err
    html = out_html.read_text()
    assert "<script" not in html and "ghost" in html and "unreachable" in html
    assert (saved / "ghost" / ".corral" / "host.json").exists()
