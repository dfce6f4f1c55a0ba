"""The built-in publish step: a pipeline collects into staging, then publishes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from corral import config, errors
from corral.store import tables as t
from tests.e2e.helpers import running_engine, wait_for, write_config

JOB = """
jobs:
  collect-publish:
    steps:
      - name: collect
        run: "mkdir -p staging/news/a1 && echo one > staging/news/a1/page.html && echo two > staging/news/a1/meta.json"
      - name: publish
        needs: collect
        uses: publish
        with: {src: staging, dest: final, each: true, depth: 2, verify: [count, bytes, sha256]}
"""


def test_a_publish_step_becomes_a_corral_publish_command_without_a_shell(tmp_path: Path) -> None:
    cfg = config.load(write_config(tmp_path, JOB))
    step = cfg.jobs["collect-publish"].steps[1]
    assert not step.shell
    assert step.command[1:] == (
        "-m", "corral", "publish", "staging", "final", "--verify", "count,bytes,sha256",
        "--each", "--depth", "2", "--no-progress",
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{name: p, uses: publish}", 'step "p": uses: publish needs with: {src: STAGING, dest: FINAL}'),
        ("{name: p, run: 'true', uses: publish, with: {src: a, dest: b}}", "not both"),
        ("{name: p, uses: publish, with: {src: a}}", "dest"),
        ("{name: p, uses: copy, with: {src: a, dest: b}}", "publish"),
    ],
)
def test_publish_step_mistakes_are_named(tmp_path: Path, step: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        config.load(write_config(tmp_path, f"jobs:\n  j:\n    steps:\n      - {step}\n"))
    assert message in str(caught.value)


@pytest.mark.slow
def test_a_pipeline_publishes_what_it_collected(tmp_path: Path) -> None:
    path = write_config(tmp_path, JOB)
    with running_engine(path) as (engine, store):
        now = datetime.now(timezone.utc)
        rid = store.create_run(job="collect-publish", state="pending", trigger="manual", scheduled_for=now, now=now,
                               admitted=False)
        engine.wake()
        run = wait_for(lambda: (r := store.get_run(rid)).state in t.FINAL_STATES and r, timeout=30)  # type: ignore[arg-type]
    assert run.state == t.SUCCEEDED, run.message
    assert (tmp_path / "final" / "news" / "a1" / "page.html").read_text() == "one\n"
    assert not list(tmp_path.glob("final/**/*.partial-*"))
