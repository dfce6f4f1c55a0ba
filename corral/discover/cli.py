"""``corral discover`` and ``corral import``.

Registered on the main group by one line each at the bottom of
:mod:`corral.cli`; our errors (``DiscoverError``, ``ImportFailed``) are
``CorralError`` subclasses, so ``corral.cli.run`` prints them as one line
and exits 1.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral import errors
from corral.discover import collect
from corral.discover import inventory as inv

if TYPE_CHECKING:  # pragma: no cover - typing only
    from corral.discover import ssh

# asyncssh (under ssh) and Jinja2 (under report) load only when a command
# needs them, so every other corral command starts as fast as before.
OVERLAP_CHOICES = ("skip", "queue_one", "queue_all", "replace", "allow")

_STATUS_STYLE = {inv.OK: "green", inv.PERMISSION_DENIED: "yellow"}


def _targets(hosts: tuple[str, ...], inventory_files: tuple[str, ...], hosts_files: tuple[str, ...]) -> list[ssh.Target]:
    from corral.discover import ssh

    targets: list[ssh.Target] = []
    for path in inventory_files:
        targets.extend(ssh.read_ansible_inventory(path))
    for path in hosts_files:
        targets.extend(ssh.read_hosts_file(path))
    targets.extend(ssh.parse_target(host) for host in hosts)
    seen: set[str] = set()
    unique = []
    for target in targets:  # the same host named twice is read once
        if target.name not in seen:
            seen.add(target.name)
            unique.append(target)
    return unique


def _progress(total: int) -> tuple[Any, Any]:
    """(on_done callback, progress object or None): a rich bar on a terminal only."""
    if total == 0 or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("reading hosts"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("hosts", total=total, last="")

    def done(result: ssh.HostResult) -> None:
        bar.update(task, advance=1, last=f"{result.host.name}: {result.host.status}")

    return done, bar


def _print_table(inventory: inv.Inventory) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=max(120, Console().width))
    found = inv.findings(inventory)
    table = Table(title=f"{sum(1 for e in inventory.entries if e.kind == 'job')} job(s) on {len(inventory.hosts)} host(s)")
    for column in ("host", "user", "source", "schedule", "next run", "command", "findings"):
        table.add_column(column, overflow="fold")
    from corral.discover import parse

    for entry, items in zip(inventory.entries, found):
        if entry.kind == parse.ENV:
            continue
        tz = inventory.host_timezone(entry.host)
        upcoming = parse.next_run(entry, inventory.collected_at, tz)
        zone = parse.zone(entry.timezone or tz)
        when = upcoming.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if upcoming and zone else "-"
        schedule = entry.schedule if entry.kind != parse.INVALID else f"[red]{entry.schedule}[/] (invalid)"
        if entry.kind == parse.DISABLED:
            schedule = f"[dim]{entry.schedule} (disabled)[/]"
        table.add_row(
            entry.host,
            entry.user or "-",
            f"{entry.source}:{entry.line}",
            schedule,
            when,
            _escape(entry.command[:120]),
            ", ".join(sorted({item.code.replace("_", " ") for item in items})),
        )
    console.print(table)
    for host in inventory.hosts:
        if host.status != inv.OK or host.file_errors:
            style = _STATUS_STYLE.get(host.status, "red")
            console.print(f"[{style}]{host.name}: {host.status}[/]" + (f": {_escape(host.error)}" if host.error else ""))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise collect.DiscoverError(f"cannot write {path}: {exc.strerror or exc}") from exc


@click.command(name="discover")
@click.argument("hosts", nargs=-1, metavar="[HOST]...")
@click.option("--inventory", "inventory_files", multiple=True, metavar="FILE", help="Ansible inventory (INI or YAML); ansible_host, ansible_port and ansible_user are honoured. Repeatable.")
@click.option("--hosts-file", "hosts_files", multiple=True, metavar="FILE", help="File of hosts, one [user@]host[:port] per line. Repeatable.")
@click.option("--local", is_flag=True, help="Also read this machine (no SSH).")
@click.option("--from-dir", "from_dirs", multiple=True, metavar="DIR", help="Analyse files collected earlier (DIR/<host>/etc/crontab ...). Repeatable.")
@click.option("--json", "json_file", metavar="FILE", help="Write the inventory as JSON (input of corral import).")
@click.option("--html", "html_file", metavar="FILE", help="Write a self-contained HTML report.")
@click.option("--collect-to", metavar="DIR", help="Save the files read over SSH as DIR/<host>/..., for --from-dir later.")
@click.option("--accept-new", is_flag=True, help="Trust hosts seen for the first time and add their key to known_hosts (ssh's StrictHostKeyChecking=accept-new). Changed keys are still refused.")
@click.option("--sudo", is_flag=True, help="Read the files through `sudo -n` (needs passwordless sudo; user crontabs are usually root-only).")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=10, show_default=True, help="Hosts read at the same time.")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True, metavar="S", help="Seconds to connect and log in, per host.")
@click.option("--command-timeout", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True, metavar="S", help="Seconds to read the files, per host.")
@click.option("--known-hosts", metavar="FILE", help="known_hosts file (default: UserKnownHostsFile of ~/.ssh/config, else ~/.ssh/known_hosts).")
@click.option("--ssh-config", metavar="FILE", help="ssh config file (default ~/.ssh/config).")
@click.option("-i", "--identity", "identities", multiple=True, metavar="FILE", help="Private key to use (default: the agent and ~/.ssh keys). Repeatable.")
@click.option("--quiet", is_flag=True, help="Do not print the table.")
def discover(
    hosts: tuple[str, ...],
    inventory_files: tuple[str, ...],
    hosts_files: tuple[str, ...],
    local: bool,
    from_dirs: tuple[str, ...],
    json_file: str | None,
    html_file: str | None,
    collect_to: str | None,
    accept_new: bool,
    sudo: bool,
    concurrency: int,
    connect_timeout: float,
    command_timeout: float,
    known_hosts: str | None,
    ssh_config: str | None,
    identities: tuple[str, ...],
    quiet: bool,
) -> None:
    """Find the batch jobs on hosts: crontabs of every user, /etc/crontab and
    cron.d, anacrontab, run-parts scripts and systemd timers.

    Prints a table of entries with findings; --json and --html save the
    inventory. A host that cannot be read is listed with its status and
    error; the others go on. Exit status 1 only when nothing could be read.
    """
    from corral.discover import report, ssh

    now = datetime.now(timezone.utc)
    targets = _targets(hosts, inventory_files, hosts_files)
    if not targets and not local and not from_dirs:
        raise click.UsageError("nothing to read: name hosts, or pass --inventory, --hosts-file, --local or --from-dir")
    if collect_to and not targets:
        raise click.UsageError("--collect-to saves what is read over SSH; name hosts to read")
    parts: list[inv.Inventory] = []
    for directory in from_dirs:
        parts.append(collect.collect_dir(directory, now=now))
    if local:
        parts.append(collect.collect_local(now=now))
    if targets:
        options = ssh.Options(
            accept_new=accept_new,
            sudo=sudo,
            concurrency=concurrency,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            ssh_config=(ssh_config,) if ssh_config else None,
            known_hosts=known_hosts,
            client_keys=identities or None,
        )
        on_done, bar = _progress(len(targets))
        if bar is not None:
            with bar:
                found, results = ssh.collect_ssh(targets, options, now=now, on_done=on_done)
        else:
            found, results = ssh.collect_ssh(targets, options, now=now)
        parts.append(found)
        for result in results:
            if result.accepted_key:
                click.echo(
                    f"accepted new host key of {result.host.name}: {result.accepted_key} (added to known_hosts)",
                    err=True,
                )
        if collect_to:
            written = collect.write_tree(ssh.files_by_host(results), collect_to)
            click.echo(f"saved {len(written)} file(s) of {len(results)} host(s) under {collect_to}", err=True)
    inventory = inv.merge(parts, collected_at=now)
    names = [host.name for host in inventory.hosts]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise collect.DiscoverError(
            f"the same host name comes from several sources: {', '.join(repeated)}; read each host once"
        )
    if json_file:
        _write(json_file, json.dumps(inv.to_json(inventory), indent=2, ensure_ascii=False) + "\n")
    if html_file:
        _write(html_file, report.render(inventory))
    if not quiet:
        _print_table(inventory)
    ok = [host for host in inventory.hosts if host.status in (inv.OK, inv.PERMISSION_DENIED)]
    failed = len(inventory.hosts) - len(ok)
    jobs = sum(1 for entry in inventory.entries if entry.kind == "job")
    click.echo(
        f"{len(inventory.hosts)} host(s) read, {failed} failed; {jobs} job(s) found"
        + (f"; inventory in {json_file}" if json_file else "")
        + (f"; report in {html_file}" if html_file else ""),
        err=True,
    )
    if inventory.hosts and not ok:
        raise click.exceptions.Exit(1)


@click.command(name="import")
@click.argument("inventory_file", metavar="INVENTORY.json", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, metavar="FILE", help="Job file to write (use - for stdout).")
@click.option("--overlap", type=click.Choice(OVERLAP_CHOICES), default="skip", show_default=True, help="Overlap policy of every imported job.")
@click.option("--monitor-only", is_flag=True, help="Write monitor-only jobs (monitor: {grace, id}): the legacy crontab keeps running them and pings corral (corral wrap --ping).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_(inventory_file: str, output: str, overlap: str, monitor_only: bool, force: bool) -> None:
    """Write a job file from a `corral discover --json` inventory: one job
    per cron line, with its schedule, timezone, environment and
    labels {host, user}. Lines corral cannot reproduce are listed, with why,
    at the end of the file."""
    from corral.discover import importer

    try:
        data = json.loads(Path(inventory_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise collect.DiscoverError(f"cannot read {inventory_file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise collect.DiscoverError(f"{inventory_file} is not JSON ({exc}); pass the file written by corral discover --json") from exc
    try:
        inventory = inv.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise collect.DiscoverError(f"{inventory_file} is not a corral discover inventory: {exc}") from exc
    result = importer.import_inventory(inventory, overlap=overlap, monitor_only=monitor_only, origin=Path(inventory_file).name)
    if output == "-":
        click.echo(result.text, nl=False)
    else:
        target = Path(output)
        if target.exists() and not force:
            raise errors.CorralError(f"{output} already exists; pass --force to overwrite it, or choose another -o")
        _write(output, result.text)
    click.echo(
        f"{len(result.jobs)} job(s) imported, {len(result.skipped)} entr{'y' if len(result.skipped) == 1 else 'ies'} left out"
        + (f" (listed at the end of {output})" if result.skipped and output != "-" else "")
        + (f"; check it with: corral validate -c {output}" if output != "-" else ""),
        err=True,
    )


__all__ = ["discover", "import_"]
