"""Job-file checks of trigger and wait_for (issue 3)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from corral import config, errors
from corral.spec import TriggerSpec, WaitCondition

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems_of(text: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as caught:
        config.loads(textwrap.dedent(text), environ={})
    return [str(problem) for problem in caught.value.problems]


def test_a_loop_of_triggers_is_named_in_the_order_runs_would_follow() -> None:
    assert problems_of(
        """
        jobs:
          collect: {run: x, trigger: {after: publish}}
          encode: {run: x, trigger: {after: collect}}
          publish: {run: x, trigger: [{after: encode, on: always}]}
        """
    ) == [
        'corral.yaml:4: job "encode": trigger: triggers form a loop: collect -> encode -> publish -> collect '
        "(each one's end starts the next), so runs would start each other forever; remove one of these triggers"
    ]


def test_a_job_triggered_after_itself_is_a_loop() -> None:
    assert problems_of("jobs:\n  again: {run: x, trigger: {after: again, on: failure}}\n") == [
        'corral.yaml:2: job "again": trigger: job "again" is triggered after itself, so every run would start '
        "another; remove this trigger"
    ]


def test_unknown_jobs_get_a_did_you_mean() -> None:
    assert problems_of(
        """
        jobs:
          collect: {run: x}
          publish:
            run: x
            trigger: {after: colect}
            wait_for:
              - {job_idle: collcet}
              - {job_idle: nothing-like-it}
        """
    ) == [
        'corral.yaml:6: job "publish": trigger.after: runs after "colect", which is not a job in this file; '
        'did you mean "collect"?',
        'corral.yaml:8: job "publish": wait_for: waits for job "collcet", which is not a job in this file; '
        'did you mean "collect"?',
        'corral.yaml:9: job "publish": wait_for: waits for job "nothing-like-it", which is not a job in this file; '
        "jobs are collect, publish",
    ]


def test_bad_trigger_and_condition_keys_are_precise() -> None:
    assert problems_of(
        """
        jobs:
          collect: {run: x}
          publish:
            run: x
            trigger: {after: collect, on: sucess, when: later}
            wait_for:
              poll: 0s
              conditions:
                - {pid: /run/collector.pid}
                - {path: /data/ready, tcp: "db:5432"}
                - {tcp: db}
        """
    ) == [
        'corral.yaml:6: job "publish": trigger: unknown key "when"; valid keys are after, on',
        'corral.yaml:6: job "publish": trigger.on: "sucess" is not one of success, failure, always; '
        'did you mean "success"?',
        'corral.yaml:8: job "publish": wait_for.poll: poll must be longer than 0, like 5s or 1h',
    ]
    assert problems_of(
        """
        jobs:
          publish:
            run: x
            trigger: [collect]
            wait_for:
              - {pid: /run/collector.pid}
              - {path: /data/ready, tcp: "db:5432"}
              - {tcp: db}
              - {path: /x, timeout: soon}
        """
    ) == [
        'corral.yaml:5: job "publish": trigger: "collect" is not a trigger; write it like {after: collect, on: success}',
        'corral.yaml:7: job "publish": wait_for: unknown key "pid" in a condition; did you mean "pid_file"?',
        'corral.yaml:8: job "publish": wait_for: one condition names both path and tcp; write each as its own '
        'list item, like [{path: /data/ready.flag}, {tcp: "db.local:5432"}]',
        'corral.yaml:9: job "publish": wait_for: "db" is not host:port; write it like {tcp: "db.local:5432"}',
        'corral.yaml:10: job "publish": wait_for: timeout: "soon" is not a duration; write a number with a unit s, m, h, d or w, like 90s, 30m, 26h, 2d or 1h30m',
    ]


def test_trigger_and_wait_for_cannot_be_defaults() -> None:
    assert problems_of("defaults: {trigger: {after: a}}\njobs:\n  a: {run: x}\n") == [
        'corral.yaml:1: defaults: "trigger" cannot have a default; set it on each job'
    ]


def test_good_triggers_and_conditions_become_spec_values(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(
        textwrap.dedent(
            """
            jobs:
              collect: {run: x}
              publish:
                run: x
                trigger: [{after: collect}, {after: collect, on: failure}]
                wait_for:
                  poll: 2s
                  conditions:
                    - {pid_file: run/collector.pid, timeout: 12h}
                    - {tcp: "localhost:5432"}
              tidy:
                run: x
                wait_for: {job_idle: publish}
            """
        )
    )
    jobs = config.load(path, environ={}).jobs
    assert jobs["publish"].triggers == (TriggerSpec("collect", "success", 6), TriggerSpec("collect", "failure", 6))
    assert jobs["publish"].wait_for == (
        WaitCondition("pid_file", str(tmp_path / "run/collector.pid"), timedelta(hours=12)),
        WaitCondition("tcp", "localhost:5432", timedelta(hours=1)),
    )
    assert jobs["publish"].wait_poll == timedelta(seconds=2)
    assert jobs["tidy"].wait_for == (WaitCondition("job_idle", "publish"),)
    assert jobs["collect"].triggers == () and jobs["collect"].wait_poll == timedelta(seconds=5)


def test_the_seed_000_example_loads_cleanly() -> None:
    cfg = config.load(EXAMPLES / "collect-publish-000.yaml", environ={})
    assert cfg.warnings == ()
    cutover = cfg.jobs["cutover"]
    assert [c.kind for c in cutover.wait_for] == ["pid_file", "job_idle"]
    assert cutover.triggers[0].after == "legacy-delta"
    assert cfg.jobs["collect-encode"].triggers[0].after == "cutover"
