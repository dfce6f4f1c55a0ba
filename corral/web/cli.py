"""Commands for the dashboard: ``corral web``, ``corral users ...``, ``corral tokens ...``.

Registered at the bottom of :mod:`corral.cli`. Users and tokens live in the
store, so they work against any store a dashboard is served from; creating
the first one turns sign-in on (see :mod:`corral.web.accounts`).
"""

from __future__ import annotations

import getpass
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from corral.web import auth as auth_mod

F = TypeVar("F", bound=Callable[..., Any])

ROLE = click.Choice(auth_mod.ROLES)


# Shared with the rest of the CLI; corral.cli imports this module at its end,
# after ``common`` is defined.
from corral.cli import common as _common  # noqa: E402


def _ctx(config_path: str | None, db: str | None) -> Any:
    from corral.cli import Ctx  # the CLI module imports this one at its end

    return Ctx(config_path, db)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "cli"


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


# -- users -----------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Dashboard users: who may sign in, with which role (viewer, operator, admin)."""


@users.command(name="add")
@_common
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="viewer reads; operator also triggers, cancels, pauses; admin all.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--update", is_flag=True, help="Change the role and password of an existing user (ends its sessions).")
def users_add(config_path: str | None, db: str | None, name: str, role: str, password_stdin: bool, update: bool) -> None:
    """Create dashboard user NAME (asks for the password twice)."""
    from corral.web import accounts

    accounts.check_name(name)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts.check_password(password)
    ctx = _ctx(config_path, db)
    store = ctx.store
    first = not store.has_credentials()
    now = _now()
    accounts.add_user(store, name, role, password, now=now, replace=update)
    store.record_audit(actor=_cli_actor(), role=auth_mod.ADMIN, action="user_add", now=now, detail=f"{name} as {role}")
    click.echo(f"user {name} {'updated' if update else 'added'} with role {role}")
    if first:
        click.echo(
            "sign-in is now required on this store's dashboard; restart a running `corral up` or `corral web` "
            "for it to take effect",
            err=True,
        )


@users.command(name="list")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def users_list(config_path: str | None, db: str | None, as_json: bool) -> None:
    """List dashboard users and their roles."""
    rows = _ctx(config_path, db).store.list_users()
    if as_json:
        click.echo(json.dumps([{**r, "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"])} for r in rows], indent=2))
        return
    if not rows:
        click.echo("no users; add one with `corral users add NAME --role admin`")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['role']:<8}  since {_when(r['created_at'])}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- tokens -----------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """API tokens for scripts: send them as `Authorization: Bearer TOKEN`."""


@tokens.command(name="create")
@_common
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="viewer reads; operator also triggers, cancels, pauses; admin all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the token included).")
def tokens_create(config_path: str | None, db: str | None, name: str, role: str, as_json: bool) -> None:
    """Create an API token called NAME; it is printed once and never again."""
    from corral.web import accounts

    store = _ctx(config_path, db).store
    first = not store.has_credentials()
    now = _now()
    token_id, token = accounts.create_token(store, name, role, now=now, by=_cli_actor())
    store.record_audit(
        actor=_cli_actor(), role=auth_mod.ADMIN, action="token_create", now=now, detail=f"token {token_id} ({name}) as {role}"
    )
    if as_json:
        click.echo(json.dumps({"id": token_id, "name": name, "role": role, "token": token}, indent=2))
    else:
        click.echo(token)
        click.echo(
            f"token {token_id} ({name}, {role}) created; copy it now, corral keeps only its hash. "
            f"Revoke it with `corral tokens revoke {token_id}`.",
            err=True,
        )
    if first:
        click.echo(
            "sign-in is now required on this store's dashboard; restart a running `corral up` or `corral web` "
            "for it to take effect",
            err=True,
        )


@tokens.command(name="list")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tokens_list(config_path: str | None, db: str | None, as_json: bool) -> None:
    """List API tokens (never the tokens themselves)."""
    rows = _ctx(config_path, db).store.list_tokens()
    if as_json:
        out = [{**r, "created_at": _iso(r["created_at"]), "revoked_at": _iso(r["revoked_at"])} for r in rows]
        click.echo(json.dumps(out, indent=2))
        return
    if not rows:
        click.echo("no API tokens; create one with `corral tokens create NAME --role viewer`")
        return
    for r in rows:
        state = f"revoked {_when(r['revoked_at'])}" if r["revoked_at"] else "active"
        click.echo(f"{r['id']:>4}  {r['name']:<20}  {r['role']:<8}  created {_when(r['created_at'])}  {state}")


@tokens.command(name="revoke")
@_common
@click.argument("token_id", metavar="ID", type=click.IntRange(1))
def tokens_revoke(config_path: str | None, db: str | None, token_id: int) -> None:
    """Revoke API token ID; requests with it are refused at once."""
    store = _ctx(config_path, db).store
    now = _now()
    row = store.revoke_token(token_id, now=now)
    store.record_audit(
        actor=_cli_actor(), role=auth_mod.ADMIN, action="token_revoke", now=now, detail=f"token {token_id} ({row['name']})"
    )
    click.echo(f"token {token_id} ({row['name']}) revoked")


# -- web --------------------------------------------------------------------------------


@click.command()
@_common
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, or the job file's web.host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8377, or web.port; 0 picks a free one).")
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Inventory of `corral discover --json` for the Discovery page (default: newest *.json in .corral/inventories/ next to the job file).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def web(
    config_path: str | None, db: str | None, host: str | None, port: int | None, inventory: Path | None, verbose: bool
) -> None:
    """Serve the dashboard for a job file and store, without scheduling anything.

    Serving on an address other than loopback needs sign-in: create a user
    first with `corral users add NAME --role admin`.
    """
    from corral.web import serve_in_thread

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx = _ctx(config_path, db)
    cfg = ctx.cfg
    host = host or cfg.settings.web_host
    port = cfg.settings.web_port if port is None else port
    signed = ctx.store.has_credentials()
    server = serve_in_thread(ctx.config_path, ctx.store_url, host=host, port=port, inventory=inventory)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    how = "sign-in required" if signed else "no users: only this machine can reach it, and acts as admin"
    # flush=True: scripts (and tests) wait for this line to learn the port.
    print(f"corral dashboard on {server.url} ({how}); Ctrl-C stops it", flush=True)
    try:
        while server.running and not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stop.is_set():
        raise click.ClickException("the dashboard stopped unexpectedly; see the log above")
    click.echo("stopped", err=True)
