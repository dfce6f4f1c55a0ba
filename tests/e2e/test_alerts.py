"""Alerts from a real engine, configured in the job file, sent to a local HTTP sink."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from corral import metrics
from corral.store import Store
from corral.store import tables as t
from tests.e2e.helpers import running_engine, wait_for, write_config
from tests.integration.test_notify import Sink

pytestmark = pytest.mark.slow


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def _start(engine: object, store: Store, job: str) -> int:
    now = datetime.now(timezone.utc)
    rid = store.create_run(job=job, state="pending", trigger="manual", scheduled_for=now, now=now, admitted=False)
    assert rid is not None
    engine.wake()  # type: ignore[attr-defined]
    return rid


def test_a_failing_job_alerts_once_and_its_success_sends_recovery(tmp_path: Path, sink: Sink) -> None:
    path = write_config(
        tmp_path,
        f"""
notify:
  dashboard_url: http://corral.test:8377
  channels:
    hook: {{type: webhook, url: "{sink.url}", secret: {{secret: s3cret}}}}
jobs:
  nightly:
    run: "if [ -f ok ]; then echo all good; else echo step one; echo boom: disk full; exit 3; fi"
""",
    )
    with running_engine(path) as (engine, store):
        runs = []
        for _ in range(2):
            rid = _start(engine, store, "nightly")
            wait_for(lambda: store.get_run(rid).state in t.FINAL_STATES, what="run ends")  # noqa: B023
            runs.append(rid)
        wait_for(lambda: len(sink.requests) == 1, what="the failure alert")
        (tmp_path / "ok").write_text("")
        ok = _start(engine, store, "nightly")
        wait_for(lambda: store.get_run(ok).state == t.SUCCEEDED, what="success")
        wait_for(lambda: len(sink.requests) == 2, what="the recovery alert")
        assert metrics._loop_lag is not None
    bodies = [json.loads(body) for _, body in sink.requests]
    assert [b["kind"] for b in bodies] == ["failure", "recovery"]
    failure = bodies[0]
    assert failure["job"] == "nightly" and failure["run_id"] == runs[0]
    assert failure["link"] == f"http://corral.test:8377/runs/{runs[0]}"
    text = str(failure["text"])
    assert f"run {runs[0]} of nightly failed" in text and "ran for" in text
    assert "boom: disk full" in text and "boom: disk full" in str(failure["log_tail"])
    assert isinstance(failure["duration_seconds"], float)
    assert bodies[1]["run_id"] == ok and "recovered" in str(bodies[1]["text"])
    assert "s3cret" not in json.dumps(bodies)
