"""``corral publish``: copy a finished item from staging into the final store,
verified and atomically (see :mod:`corral.publish` and docs/publish.md).

Registered on the main group at the bottom of :mod:`corral.cli`.
"""

from __future__ import annotations

import sys
from types import TracebackType

import click

from corral import errors, publish as publish_mod


class _Bar:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: int | None = None

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def begin(self, name: str, total_bytes: int) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)  # type: ignore[arg-type]
        self._task = self._progress.add_task(name, total=total_bytes or None)

    def advance(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)  # type: ignore[arg-type]


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in publish_mod.VERIFY_KINDS]
    if bad or not kinds:
        raise click.BadParameter(
            f"{value!r}: use a comma-separated list of {', '.join(publish_mod.VERIFY_KINDS)}"
        )
    return kinds


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


@click.command(name="publish")
@click.argument("src", type=click.Path(path_type=str))
@click.argument("dest", type=click.Path(path_type=str))
@click.option(
    "--verify",
    default="count,bytes",
    show_default=True,
    help="Checks before the rename: any of count, bytes, sha256, comma-separated.",
)
@click.option(
    "--delete-source",
    is_flag=True,
    help="Delete SRC once it is published and the rename is durable.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Swap out an existing DEST (kept until the new one is in place).",
)
@click.option(
    "--each",
    is_flag=True,
    help="Publish every item inside the folder SRC into DEST, skipping items already there.",
)
@click.option(
    "--depth",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="With --each: items are SRC/a (1) or SRC/category/slug (2).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: only when stderr is a terminal).",
)
def publish(
    src: str,
    dest: str,
    verify: str,
    delete_source: bool,
    replace: bool,
    each: bool,
    depth: int,
    progress: bool | None,
) -> None:
    """Publish SRC as DEST: copy into DEST.partial-<id> beside it, verify against
    SRC, fsync, rename into place in one step, and only then delete SRC if asked.
    Refuses to overwrite DEST without --replace. A leftover partial from a
    crashed run is resumed."""
    kinds = _kinds(verify)
    if depth != 1 and not each:
        raise errors.PublishError("--depth only applies with --each")
    show = sys.stderr.isatty() if progress is None else progress
    bar = _Bar() if show else None
    results: list[publish_mod.Published] = []

    # Each item is printed as it finishes, so a later failure keeps the record.
    def tell(r: publish_mod.Published) -> None:
        results.append(r)
        if r.outcome == "skipped":
            line = f"skipped   {r.dest} ({r.note or 'already published'})"
        else:
            resumed = (
                f", {r.resumed_files} kept from an interrupted run"
                if r.resumed_files
                else ""
            )
            gone = ", source deleted" if r.source_deleted else ""
            line = f"{r.outcome:<9} {r.dest} ({r.files} files, {_size(r.bytes)}{resumed}{gone})"
        # While the bar is live, rich sends stdout above it.
        click.echo(line)

    if bar is not None:
        bar.__enter__()
    try:
        common = dict(
            verify=kinds, delete_source=delete_source, replace=replace, progress=bar
        )
        if each:
            publish_mod.publish_each(src, dest, depth=depth, on_item=tell, **common)  # type: ignore[arg-type]
        else:
            tell(publish_mod.publish(src, dest, **common))  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if each:
        done = sum(1 for r in results if r.outcome != "skipped")
        click.echo(f"{done} published, {len(results) - done} skipped")
