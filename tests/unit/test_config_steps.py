"""Job-file checks of steps, parallelism and params (issue 3)."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from corral import config, errors

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems_of(text: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as caught:
        config.loads(textwrap.dedent(text), environ={})
    return [str(problem) for problem in caught.value.problems]


def test_a_cycle_of_needs_is_named_step_by_step() -> None:
    assert problems_of(
        """
        jobs:
          p:
            steps:
              - {name: collect, run: x, needs: [publish]}
              - {name: encode, run: x, needs: [collect]}
              - {name: publish, run: x, needs: encode}
              - {name: report, run: x}
        """
    ) == [
        'corral.yaml:5: job "p": steps.needs: the steps\' needs form a cycle: collect -> publish -> encode -> collect '
        "(each needs the next); remove one of these needs"
    ]


def test_unknown_and_self_needs_and_duplicate_names_are_precise() -> None:
    assert problems_of(
        """
        jobs:
          p:
            steps:
              - name: collect
                run: x
              - name: encode
                run: x
                needs: [colect, encode, publish]
              - name: collect
                run: y
        """
    ) == [
        'corral.yaml:9: job "p": steps.needs: step "encode" needs "colect", which is not a step of this job; '
        'did you mean "collect"?',
        'corral.yaml:9: job "p": steps.needs: step "encode" needs itself; remove "encode" from its needs',
        'corral.yaml:9: job "p": steps.needs: step "encode" needs "publish", which is not a step of this job; '
        "steps are collect, encode",
        'corral.yaml:10: job "p": steps: step name "collect" is used twice (also on line 5); step names must be unique',
    ]


def test_step_keys_are_checked_like_job_keys() -> None:
    assert problems_of(
        """
        jobs:
          p:
            parallelism: 0
            steps:
              - {name: "bad name", run: x}
              - {name: b, run: x, retries: -1, timeout: soon}
              - {run: x}
              - {name: d}
              - {name: e, run: x, neds: [b]}
        """
    ) == [
        'corral.yaml:4: job "p": parallelism: 0 is too small; expected a whole number of 1 or more',
        'corral.yaml:6: job "p": steps.name: "bad name" is not a step name; use 1-64 characters of letters, '
        "digits, _, . and -, starting with a letter or digit, like collect or 31",
        'corral.yaml:7: job "p": steps.timeout: "soon" is not a duration; write a number with a unit s, m, h, d or w, '
        "like 90s, 30m, 26h, 2d or 1h30m",
        'corral.yaml:7: job "p": steps.retries: -1 is too small; expected a whole number of 0 or more',
        'corral.yaml:8: job "p": steps: a step has no "name" key; expected a step name like fetch or 31',
        'corral.yaml:9: job "p": steps: a step has no "run" key; expected a shell string like "echo hello" '
        'or an argv list like ["echo", "hello"], or a built-in step like uses: publish',
        'corral.yaml:10: job "p": steps: unknown key "neds"; did you mean "needs"?',
    ]


def test_run_and_steps_exclude_each_other_and_one_is_required() -> None:
    assert problems_of(
        """
        jobs:
          both:
            run: x
            steps: [{name: a, run: x}]
          neither:
            description: nothing to do
        """
    ) == [
        'corral.yaml:5: job "both": steps: a job has either run (one command) or steps (a pipeline), not both; '
        "move the command into a step or remove steps",
        'corral.yaml:6: job "neither": no "run" key; every job needs a command, like run: "echo hello" '
        'or run: ["echo", "hello"]',
    ]


def test_steps_and_params_cannot_be_defaults() -> None:
    assert problems_of(
        """
        defaults:
          steps: [{name: a, run: x}]
        jobs:
          j: {run: x}
        """
    ) == ['corral.yaml:3: defaults: "steps" cannot have a default; set it on each job']


def test_parameter_declarations_are_checked() -> None:
    assert problems_of(
        """
        jobs:
          j:
            run: x
            schedule: "@daily"
            params:
              Region: {default: eu}
              count: {type: int, default: many}
              mode: {type: choice}
              label: {type: string, choices: [a]}
              day: {type: string}
        """
    ) == [
        'corral.yaml:7: job "j": params: "Region" is not a parameter name; use 1-64 characters of a-z, 0-9 and _, '
        "starting with a letter",
        "corral.yaml:8: job \"j\": params.count.default: 'many' is not a whole number, like 3 or -1",
        'corral.yaml:9: job "j": params.mode: type choice needs choices, like choices: [eu, us]',
        'corral.yaml:10: job "j": params.label.choices: only applies with type: choice, but type is string',
        'corral.yaml:11: job "j": params.day: has no default, but the job has a schedule and scheduled runs get '
        "no --param; give it a default",
    ]


def test_a_pipeline_job_reads_into_steps_with_numbers_as_names() -> None:
    cfg = config.loads(
        textwrap.dedent(
            """
            jobs:
              p:
                parallelism: 2
                params: {n: {type: int, default: 3}, tag: {default: 7}}
                steps:
                  - {name: 31, run: ["echo", 1], env: {N: 5}, timeout: 1h, retries: 2}
                  - {name: b, run: "echo b", needs: 31, continue_on_failure: true,
                     retries: {attempts: 1, backoff: 5m, exit_codes: [75]}}
            """
        ),
        environ={},
    )
    job = cfg.jobs["p"]
    assert job.command == () and job.is_pipeline and job.parallelism == 2
    first, second = job.steps
    assert (first.name, first.command, first.env, first.retries.attempts) == ("31", ("echo", "1"), (("N", "5"),), 2)
    assert first.retries.backoff == timedelta(seconds=10)  # as for a job
    assert (second.needs, second.shell, second.continue_on_failure) == (("31",), True, True)
    assert (second.retries.attempts, second.retries.backoff, second.retries.exit_codes) == (1, timedelta(minutes=5), (75,))
    assert [(p.name, p.type, p.default) for p in job.params] == [("n", "int", 3), ("tag", "string", "7")]


def test_parallelism_on_a_plain_job_is_a_warning() -> None:
    cfg = config.loads("jobs:\n  j:\n    run: x\n    parallelism: 3\n", environ={})
    assert cfg.warnings == ('corral.yaml:4: job "j": parallelism: has no effect on a job without steps',)


def test_the_seed_004_example_loads() -> None:
    cfg = config.load(EXAMPLES / "pipeline-004.yaml", environ={})
    job = cfg.jobs["stages-004"]
    assert [s.name for s in job.steps] == ["31", "32", "33", "61", "62", "63"]
    assert all(s.needs == ("31", "32", "33") for s in job.steps[3:])
    assert job.parallelism == 3 and job.schedules and not cfg.warnings
