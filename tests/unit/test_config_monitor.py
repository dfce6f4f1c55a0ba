"""The job-file key of monitor-only jobs: ``monitor: {grace: 10m, id: <uuid>}``."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from corral import config, errors

GIVEN = "3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44"


def problems_of(text: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as caught:
        config.loads(textwrap.dedent(text), path="corral.yaml", environ={})
    return [str(problem) for problem in caught.value.problems]


def test_a_monitor_only_job_needs_no_run_and_is_never_scheduled() -> None:
    cfg = config.loads(
        textwrap.dedent(
            f"""\
            jobs:
              legacy-backup:
                schedule: "0 3 * * *"
                timezone: Asia/Seoul
                monitor: {{grace: 10m}}
              given:
                schedule: "*/5 * * * *"
                monitor: {{grace: 1m, id: {GIVEN.upper()}}}
            """
        ),
        path="corral.yaml",
        environ={},
    )
    backup, given = cfg.jobs["legacy-backup"], cfg.jobs["given"]
    assert backup.monitor is not None and backup.monitor.grace == timedelta(minutes=10) and backup.monitor.id is None
    assert backup.command == () and backup.timezone == "Asia/Seoul" and len(backup.schedules) == 1
    assert backup.manual_only  # the scheduler never makes runs of it
    assert given.monitor is not None and given.monitor.id == GIVEN  # normalized to lower case


def test_monitor_mistakes_are_reported_precisely() -> None:
    assert problems_of(
        """\
        jobs:
          with-run:
            schedule: "0 3 * * *"
            run: echo hi
            monitor: {grace: 10m}
          no-schedule:
            monitor: {grace: 10m}
          bad-id:
            schedule: "0 3 * * *"
            monitor: {grace: 10m, id: nope}
          no-grace:
            schedule: "0 3 * * *"
            monitor: {}
          typo:
            schedule: "0 3 * * *"
            monitor: {grace: 10m, pingid: x}
          zero:
            schedule: "0 3 * * *"
            monitor: {grace: 0s}
        """
    ) == [
        'corral.yaml:5: job "with-run": monitor: a monitor-only job is not run by corral, so it has no run or steps; '
        "remove monitor to let corral run the command, or remove run and steps",
        'corral.yaml:7: job "no-schedule": monitor: needs a schedule to know when pings are due, like schedule: "0 3 * * *"',
        'corral.yaml:10: job "bad-id": monitor.id: "nope" is not a UUID; write one like '
        "3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44, or remove id to let corral make one",
        'corral.yaml:13: job "no-grace": monitor: missing key "grace": a duration like 90s, 30m, 26h or 2d',
        'corral.yaml:16: job "typo": monitor: unknown key "pingid"; valid keys are grace, id',
        'corral.yaml:19: job "zero": monitor.grace: "0s" is zero; write a duration longer than 0, like 90s, 30m or 2h',
    ]
