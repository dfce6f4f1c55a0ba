"""``corral monitors``: the monitor-only jobs, their state and ping URLs
(issue 6, item 4). Registered on the main group at the bottom of :mod:`corral.cli`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from corral import monitor
from corral.cli import Ctx, common


@click.command(name="monitors")
@common
@click.option("--url", "base_url", default=None, metavar="URL", help="The dashboard's address, for full ping URLs (default: notify.dashboard_url).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def monitors(config_path: str | None, db: str | None, base_url: str | None, as_json: bool) -> None:
    """List monitor-only jobs: state now, next ping due, last ping and ping URL.

    Makes (and stores) the ping id of a job that has none yet."""
    ctx = Ctx(config_path, db)
    now = datetime.now(timezone.utc)
    watcher = monitor.Watcher(ctx.store, ctx.cfg.jobs)
    ids = watcher.ping_ids(now)
    rows = ctx.store.monitors()
    base = (base_url or ctx.cfg.notify.dashboard_url or "$CORRAL_URL").rstrip("/")
    out = []
    for name, job in sorted(watcher.jobs.items()):
        row = rows[name]
        st = monitor.row_status(job, row, now)
        out.append(
            {
                "job": name,
                "state": st.state,
                "reason": st.reason,
                "expected_at": st.expected_at.isoformat() if st.expected_at else None,
                "last_ping_at": row["last_ping_at"].isoformat() if row.get("last_ping_at") else None,
                "ping_url": f"{base}/ping/{ids[name]}",
            }
        )
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if not out:
        click.echo("no monitor-only jobs (a job with monitor: {grace: 10m} and a schedule)")
    for item in out:
        click.echo(f"{item['job']}: {item['state']} ({item['reason']})")
        click.echo(f"  last ping: {item['last_ping_at'] or 'never'}")
        click.echo(f"  ping URL:  {item['ping_url']}")
