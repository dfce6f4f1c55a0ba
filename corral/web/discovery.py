"""The Discovery page and ``GET /api/discovery``: an inventory of ``corral discover --json``.

The file is the one given with ``--inventory`` (``corral web``, ``corral up``),
else the newest ``*.json`` in ``.corral/inventories/`` next to the job file.
It is re-read when it changes; findings are recomputed from the entries
(:func:`inventory.to_json`), as ``corral import`` does, so an inventory
written by an older corral shows today's findings.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from corral import errors
from corral.discover import inventory as inv
from corral.discover import parse
from corral.web import problems

INVENTORY_DIR = Path(".corral") / "inventories"
MAX_INVENTORY_BYTES = 64 * 1024 * 1024
"""A larger file is refused instead of loaded into the dashboard's memory."""
KINDS = ("job", "disabled", "invalid")
"""Entry kinds shown (``env`` lines are settings, not jobs)."""
QUERY_MAX = 200


class BadInventory(problems.HTTPProblem):
    """The inventory file cannot be shown; write it again with `corral discover ... --json FILE`."""

    status = 500
    """The operator's file, not the request, is wrong."""


def shown_time(text: str | None, tz: str | None = None) -> str:
    """``2026-03-02 02:30 KST`` from an ISO instant of the inventory, in ``tz`` when known."""
    if not text:
        return "-"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    where = parse.zone(tz)
    if where is not None:
        moment = moment.astimezone(where)
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def default_dir(config_path: Path) -> Path:
    return Path(config_path).parent / INVENTORY_DIR


@dataclass(frozen=True)
class Loaded:
    """An inventory as JSON-ready data (``inventory.to_json``), and where it came from."""

    path: Path
    data: dict[str, Any]


class InventorySource:
    """The inventory to show: ``path`` if given, else the newest JSON file in ``directory``."""

    def __init__(self, path: Path | None, directory: Path) -> None:
        self.path = Path(path) if path is not None else None
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._seen: tuple[str, int, int] | None = None
        self._loaded: Loaded | None = None

    def where(self) -> str:
        """Words for a page that has nothing to show."""
        if self.path is not None:
            return str(self.path)
        return f"the newest *.json in {self.directory}"

    def _pick(self) -> Path | None:
        if self.path is not None:
            return self.path
        try:
            found = [p for p in self.directory.glob("*.json") if p.is_file()]
        except OSError:
            return None
        return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name)) if found else None

    def load(self) -> Loaded | None:
        """The inventory, or None when there is none yet; :class:`errors.NotFound` for a
        given file that is missing, :class:`BadInventory` for one that is not an inventory."""
        path = self._pick()
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise errors.NotFound(
                f"inventory {path} cannot be read ({exc.strerror}); write one with "
                "`corral discover ... --json FILE` and pass it with --inventory FILE"
            ) from exc
        signature = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if signature == self._seen and self._loaded is not None:
                return self._loaded
            loaded = Loaded(path, _read(path, st.st_size))
            self._seen, self._loaded = signature, loaded
            return loaded


def _read(path: Path, size: int) -> dict[str, Any]:
    if size > MAX_INVENTORY_BYTES:
        raise BadInventory(f"inventory {path} is {size} bytes, over the {MAX_INVENTORY_BYTES} the dashboard loads")
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict):
            raise ValueError("the file is not a JSON object")
        return inv.to_json(inv.from_json(raw))
    except OSError as exc:
        raise errors.NotFound(f"inventory {path} cannot be read ({exc.strerror})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInventory(
            f"{path} is not an inventory of `corral discover --json` ({type(exc).__name__}: {exc})"
        ) from exc


@dataclass(frozen=True)
class Filter:
    """Which entries to show; every part given must match."""

    q: str = ""
    host: str = ""
    kind: str = ""
    finding: str = ""
    flagged: bool = False

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filter:
        kind = query.get("kind", "").strip()
        if kind and kind not in KINDS:
            raise problems.BadRequest(f"kind={kind[:40]!r} is not valid; use one of {', '.join(KINDS)}")
        finding = query.get("finding", "").strip()
        if finding and finding not in inv.FINDING_CODES:
            raise problems.BadRequest(
                f"finding={finding[:40]!r} is not a finding code; use one of {', '.join(inv.FINDING_CODES)}"
            )
        flagged = query.get("flagged", "").strip().lower() in ("1", "true", "yes", "on")
        return cls(
            q=query.get("q", "")[:QUERY_MAX].strip(),
            host=query.get("host", "")[:QUERY_MAX].strip(),
            kind=kind,
            finding=finding,
            flagged=flagged,
        )

    @property
    def active(self) -> bool:
        return bool(self.q or self.host or self.kind or self.finding or self.flagged)

    def accepts(self, entry: Mapping[str, Any]) -> bool:
        if self.host and entry["host"] != self.host:
            return False
        if self.kind and entry["kind"] != self.kind:
            return False
        codes = {f["code"] for f in entry["findings"]}
        if self.finding and self.finding not in codes:
            return False
        if self.flagged and not codes:
            return False
        if self.q:
            needle = self.q.lower()
            words = (entry["host"], entry.get("user") or "", entry["command"], entry["schedule"], entry["source"])
            if not any(needle in str(w).lower() for w in words):
                return False
        return True


@dataclass
class View:
    """What the page and the API show of one inventory."""

    loaded: Loaded | None
    where: str
    filter: Filter
    entries: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    per_host: dict[str, int] = field(default_factory=dict)
    finding_counts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return list(self.loaded.data["hosts"]) if self.loaded else []

    @property
    def collected_at(self) -> str | None:
        return str(self.loaded.data["collected_at"]) if self.loaded else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "inventory": str(self.loaded.path) if self.loaded else None,
            "looked_in": self.where,
            "collected_at": self.collected_at,
            "hosts": [dict(h, jobs=self.per_host.get(h["name"], 0)) for h in self.hosts],
            "findings": dict(self.finding_counts),
            "total_entries": self.total,
            "entries": self.entries,
        }


def view(source: InventorySource, wanted: Filter) -> View:
    loaded = source.load()
    out = View(loaded, source.where(), wanted)
    if loaded is None:
        return out
    shown = [e for e in loaded.data["entries"] if e["kind"] in KINDS]
    out.total = len(shown)
    out.per_host = dict(Counter(e["host"] for e in shown if e["kind"] == "job"))
    out.finding_counts = Counter(f["code"] for e in shown for f in e["findings"]).most_common()
    out.entries = [e for e in shown if wanted.accepts(e)]
    return out
