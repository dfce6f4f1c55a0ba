"""``corral events``: read the event feed after a sequence number, optionally following it.

Registered on the main group at the bottom of :mod:`corral.cli`.
"""

from __future__ import annotations

import json
import time

import click

from corral.cli import Ctx, common
from corral.store.queries import Event

FOLLOW_POLL = 0.5
"""Seconds between looks at the feed with --follow."""


def _line(event: Event) -> str:
    run = f"run {event.run_id}" if event.run_id is not None else "-"
    change = f"{event.old_state or '-'} -> {event.new_state or '-'}"
    extra = " ".join(x for x in (event.reason, event.message) if x)
    when = event.at.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    return f"{event.seq:>8}  {when}  {event.type:<18} {event.job:<20} {run:<12} {change:<22} {extra}".rstrip()


@click.command(name="events")
@common
@click.option("--after", type=click.IntRange(0), default=None, help="Print events with a sequence number above N (default: the last 20).")
@click.option("--job", help="Only events of this job.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until interrupted.")
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True, help="At most this many per read.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
def events(
    config_path: str | None,
    db: str | None,
    after: int | None,
    job: str | None,
    follow: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Print the event feed: every change of a run's or a job's state, numbered
    without gaps. Poll with --after N (the last number you saw) to miss nothing."""
    ctx = Ctx(config_path, db)
    store = ctx.store
    store.publish_events()
    cursor = after if after is not None else max(0, store.last_event_seq() - 20)
    while True:
        batch = store.events_after(cursor, limit)
        for event in batch:
            cursor = event.seq
            if job is not None and event.job != job:
                continue
            click.echo(json.dumps(event.as_dict()) if as_json else _line(event))
        if len(batch) == limit:
            continue
        if not follow:
            return
        time.sleep(FOLLOW_POLL)
        store.publish_events()
