"""Every file of the corpus parses to exactly the entries recorded next to it.

The corpus (tests/data/discover/corpus) holds crontabs, cron.d files,
anacrontabs, systemd unit sets and `systemctl list-timers` outputs written
for these tests. Each one is paired with ``<name>.expected.json``; a change in
what the parser produces, describes or predicts fails here.

After a deliberate change, rewrite the expectations and review the diff:
    CORRAL_UPDATE_EXPECTED=1 .venv/bin/pytest tests/unit/discover/test_discover_corpus.py
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from corral.discover import parse
from corral.discover.parse import Entry

CORPUS = Path(__file__).resolve().parents[2] / "data" / "discover" / "corpus"
AFTER = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)
"""Next runs count from Saturday 2025-03-08 12:00 UTC, the eve of New York's spring-forward."""
HOST_TZ = "Asia/Seoul"
UPDATE = os.environ.get("CORRAL_UPDATE_EXPECTED") == "1"
EXPECTED_SUFFIX = ".expected.json"


def _cases() -> list[tuple[str, Path]]:
    cases: list[tuple[str, Path]] = []
    for kind in ("spool", "system", "anacrontab", "list-timers"):
        for path in sorted((CORPUS / kind).iterdir()):
            if not path.name.endswith(EXPECTED_SUFFIX):
                cases.append((kind, path))
    for path in sorted((CORPUS / "systemd").iterdir()):
        if path.is_dir():
            cases.append(("systemd", path))
    return cases


def _parse(kind: str, path: Path) -> list[Entry]:
    source = path.relative_to(CORPUS).as_posix()
    if kind == "systemd":
        files = {item.name: item.read_text(encoding="utf-8") for item in sorted(path.iterdir())}
        return parse.parse_systemd_units(files, host="h", source_dir=source)
    # newline="" keeps carriage returns, as cron sees them
    with path.open(encoding="utf-8", newline="") as handle:
        text = handle.read()
    if kind == "spool":
        user = path.name.rsplit("--", 1)[1]
        return parse.parse_crontab(text, host="h", source=source, user=user)
    if kind == "system":
        return parse.parse_crontab(text, host="h", source=source, system=True)
    if kind == "anacrontab":
        return parse.parse_anacrontab(text, host="h", source=source)
    return parse.parse_list_timers(text, host="h", source=source)


def _snapshot(entry: Entry) -> dict[str, Any]:
    upcoming = parse.next_run(entry, AFTER, HOST_TZ)
    return {
        "source": entry.source,
        "line": entry.line,
        "kind": entry.kind,
        "user": entry.user,
        "schedule": entry.schedule,
        "cron": list(entry.cron),
        "command": entry.command,
        "stdin": entry.stdin,
        "env": dict(entry.env),
        "mailto": entry.mailto,
        "timezone": entry.timezone,
        "reason": entry.reason,
        "details": dict(entry.details),
        "notes": list(entry.notes),
        "description": parse.schedule_description(entry),
        "next_run": upcoming.isoformat() if upcoming else None,
        "runtime": parse.guess_runtime(entry.command) if entry.kind != parse.ENV else "",
    }


def _expected_path(path: Path) -> Path:
    return path.parent / (path.name + EXPECTED_SUFFIX)


CASES = _cases()


def test_the_corpus_has_at_least_40_files() -> None:
    files = [p for p in CORPUS.rglob("*") if p.is_file() and not p.name.endswith(EXPECTED_SUFFIX)]
    assert len(files) >= 40, len(files)


def test_every_corpus_case_has_its_expectations() -> None:
    missing = [str(path) for _, path in CASES if not _expected_path(path).exists()]
    assert UPDATE or not missing, missing


@pytest.mark.parametrize(("kind", "path"), CASES, ids=[p.relative_to(CORPUS).as_posix() for _, p in CASES])
def test_corpus_file_parses_as_expected(kind: str, path: Path) -> None:
    actual = [_snapshot(entry) for entry in _parse(kind, path)]
    expected_path = _expected_path(path)
    if UPDATE:
        expected_path.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    assert actual == expected
