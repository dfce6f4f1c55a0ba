"""How long `corral discover` takes to read 50 hosts over SSH.

Run: .venv/bin/python bench/bench_discover_hosts.py [HOSTS] [CONCURRENCY] [DELAY_S]
Each simulated host (an asyncssh server on 127.0.0.1, tests/discover_sim.py)
waits DELAY_S before it runs the collector's script on its own folder of
crontabs. Target (issue 4): 50 hosts, concurrency 10, 200 ms each, under 10 s.
The floor is HOSTS / CONCURRENCY * DELAY_S (1 s for the defaults); the rest is
SSH handshakes, the script and the parsing.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncssh  # noqa: E402

from corral.discover import ssh  # noqa: E402
from tests import discover_sim as sim  # noqa: E402

CRONTAB = """SHELL=/bin/sh
PATH=/usr/local/bin:/usr/bin:/bin
17 * * * * root cd / && run-parts --report /etc/cron.hourly
0 3 * * * root /opt/backup/bin/nightly > /var/log/backup.log 2>&1
"""
USER = """MAILTO=ops@example.com
CRON_TZ=Asia/Seoul
*/5 * * * * cd /var/www/app && php artisan schedule:run >> /dev/null 2>&1
0 4 1 * * /opt/digger/bin/monthly-stats --month=last
30 2 * * * /usr/bin/python3 /opt/etl/load_orders.py --full
"""


async def main(count: int, concurrency: int, delay: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(tmp / "id")
        hosts = []
        for index in range(count):
            root = sim.write_root(
                tmp / f"host{index:02d}",
                {"/etc/crontab": CRONTAB, "/var/spool/cron/crontabs/app": USER, "/etc/timezone": "Asia/Seoul\n"},
            )
            hosts.append(sim.SimHost(f"host{index:02d}", root, delay=delay))
        await sim.start(hosts, key.export_public_key("openssh").decode())
        try:
            (tmp / "known_hosts").write_text("".join(sim.known_hosts_line(host) for host in hosts))
            (tmp / "ssh_config").write_text("")
            options = ssh.Options(
                concurrency=concurrency,
                ssh_config=(str(tmp / "ssh_config"),),
                known_hosts=str(tmp / "known_hosts"),
                client_keys=(str(tmp / "id"),),
                agent=False,
            )
            targets = [ssh.Target(host.name, address="127.0.0.1", port=host.port) for host in hosts]
            started = time.perf_counter()
            results = await ssh.read_hosts(targets, options)
            elapsed = time.perf_counter() - started
        finally:
            await sim.stop(hosts)
    ok = sum(1 for result in results if result.host.status == "ok")
    jobs = sum(1 for result in results for entry in result.entries if entry.kind == "job")
    floor = count / concurrency * delay
    print(
        f"{count} hosts, concurrency {concurrency}, {delay * 1000:.0f} ms per host: {elapsed:.2f} s "
        f"({ok} ok, {jobs} jobs; floor {floor:.1f} s; target < 10 s: {'PASS' if elapsed < 10 and ok == count else 'FAIL'})"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            int(args[0]) if len(args) > 0 else 50,
            int(args[1]) if len(args) > 1 else 10,
            float(args[2]) if len(args) > 2 else 0.2,
        )
    )
