"""``corral doctor``: print the health checks of :mod:`corral.doctor`.

Registered on the main group at the bottom of :mod:`corral.cli`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import click

from corral import doctor as doctor_mod
from corral.cli import common


@click.command(name="doctor")
@common
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
def doctor(config_path: str | None, db: str | None, as_json: bool) -> None:
    """Check the job file, the store and its schema, the running `corral up`,
    notification channels and log disk space; exit 1 if anything fails."""
    from corral import config as config_mod

    path = Path(config_path) if config_path else config_mod.default_path(os.environ)
    checks = doctor_mod.run_checks(path, db, environ=os.environ, now=datetime.now(timezone.utc))
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            click.echo(f"{c.status:<5} {c.name:<18} {c.detail}")
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)
