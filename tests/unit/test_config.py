"""The job-file loader: every mistake reported at once, precisely; valid files become JobSpecs."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from corral import config, errors, spec

CONFIGS = Path(__file__).parent / "configs"
EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"


def load_text(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> spec.Config:
    path = tmp_path / "corral.yaml"
    path.write_text(textwrap.dedent(text))
    return config.load(path, environ=environ or {})


def problems_of(text: str, *, path: str = "corral.yaml") -> list[str]:
    with pytest.raises(errors.ConfigError) as caught:
        config.loads(textwrap.dedent(text), path=path, environ={})
    return [str(problem) for problem in caught.value.problems]


def test_it_reports_every_mistake_in_one_pass_with_exact_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIGS)
    with pytest.raises(errors.ConfigError) as caught:
        config.load("twenty_mistakes.yaml", environ={})
    f = "twenty_mistakes.yaml"
    duration_hint = "write a number with a unit s, m, h, d or w, like 90s, 30m, 26h, 2d or 1h30m"
    assert [str(problem) for problem in caught.value.problems] == [
        f'{f}:4: log_max: "50 MiBs" is not a size; write a number with a unit B, KB, MB or GB, like 512KB, 50MB or 1GB',
        f"{f}:5: "
        'unknown key "retention"; valid keys are timezone, log_dir, store, log_max, catchup_concurrency, '
        "max_running, drain, web, notify, defaults, jobs",
        f'{f}:6: catchup_concurrency: "4" is text, not a whole number; write it without quotes: 4',
        f"{f}:7: web.port: 70000 is too large; expected a port number from 1 to 65535",
        f'{f}:11: defaults.kill_grace: "10 seconds" is not a duration; {duration_hint}',
        f'{f}:16: job "market-sync": schedule: "0 25 * * *": hour 25 is out of range 0-23',
        f'{f}:17: job "market-sync": timezone: unknown time zone "Asia/Seol"; did you mean "Asia/Seoul"?',
        f'{f}:18: job "market-sync": overlap: '
        '"skipp" is not one of skip, queue_one, queue_all, replace, allow; did you mean "skip"?',
        f'{f}:19: job "market-sync": min_gap: "-5m" is negative; a duration must be 0 or more, like 90s, 30m or 2h',
        f'{f}:20: job "market-sync": unknown key "schedul"; did you mean "schedule"?',
        f'{f}:24: job "report": schedule: "0 0 30 2 *" can never fire: February never has a day 30',
        f'{f}:27: job "report": retries.exit_codes: 300 is too large; expected an exit code from 1 to 255',
        f'{f}:28: job "report": retries.jitter: 1.5 is too large; expected a fraction from 0 to 1, like 0.1',
        f'{f}:31: job "report": env.OPTIONS: a mapping is not an env value (text, a number or true/false), '
        "or {secret: text} for a value to mask",
        f'{f}:33: job "report": duplicate key "timeout" (also on line 32); YAML would silently keep only the last one',
        f'{f}:35: invalid job name "Nightly Backup"; use 1-64 characters of a-z, 0-9, _, . and -, '
        'starting with a letter or digit (^[a-z0-9][a-z0-9_.-]{0,63}$); try "nightly-backup"',
        f'{f}:37: job "Nightly Backup": max_concurrent: 3 only applies with overlap: allow, but overlap is queue_one; '
        "set overlap: allow to let up to 3 runs overlap, or remove max_concurrent",
        f'{f}:38: job "Nightly Backup": enabled: "no" is text, not true or false; write it without quotes: no',
        f'{f}:40: job "cleanup": no "run" key; every job needs a command, '
        'like run: "echo hello" or run: ["echo", "hello"]',
        f'{f}:42: job "cleanup": catchup: "sometimes" is not one of none, latest, all',
        f'{f}:45: job "fetch": run: empty list; an argv list needs at least the program, like run: ["echo", "hello"]',
        f'{f}:46: job "fetch": dst.gap: "later" is not one of run_after, skip',
        f'{f}:47: job "fetch": labels: item 2 is a mapping; '
        "list labels as words like [gpu, ssd] or use a mapping like {zone: eu}",
        f'{f}:48: job "fetch": retries.attempts: "3" is text, not a whole number; write it without quotes: 3',
        f'{f}:53: job "poll": schedule: {{every: 0}}: "every" must be a positive duration like 30h, got "0"',
        f'{f}:54: job "poll": schedule: unknown key "evry"; did you mean "every"?',
        f'{f}:55: job "poll": steps: item 1 is "collect", not a step; '
        'write each step as a mapping like {name: collect, run: "./collect.sh"}',
        f'{f}:55: job "poll": steps: item 2 is "encode", not a step; '
        'write each step as a mapping like {name: encode, run: "./encode.sh"}',
        f'{f}:55: job "poll": steps: a job has either run (one command) or steps (a pipeline), not both; '
        "move the command into a step or remove steps",
        f'{f}:56: job "poll": description: 42 is a number, not text; put it in quotes: "42"',
        f'{f}:61: job "heartbeat": defined twice (also on line 58); job names must be unique',
    ]
    assert str(caught.value).startswith("31 problems in the job file:\n  twenty_mistakes.yaml:4: log_max:")


FULL = """\
timezone: Asia/Seoul
log_dir: logs
store: sqlite:///state/corral.db
log_max: 512KB
catchup_concurrency: 2
max_running: 8
drain: 1m
web: {host: 0.0.0.0, port: 9000}
defaults:
  kill_grace: 5s
  env: {LANG: C.UTF-8, MODE: base}
  labels: {zone: eu}
jobs:
  market-sync:
    description: Stages 31 to 63
    run: ./sync.sh --all
    cwd: work
    env: {MODE: full, WORKERS: 4, DEBUG: yes, RATIO: 1.50}
    schedule: ["0 1 * * *", {every: 30h, anchor: "2026-01-01T01:00"}, {after_completion: 6h}]
    timezone: Europe/Berlin
    overlap: allow
    max_concurrent: 2
    min_gap: 1h
    timeout: 26h
    kill_grace: 30s
    retries: {attempts: 3, backoff: 1m, factor: 1.5, max_backoff: 10m, jitter: 0, exit_codes: [1, 75], on: [failed]}
    catchup: {mode: all, window: 2d}
    start_deadline: 15m
    enabled: false
    labels: [gpu, ssd]
    dst: {gap: skip, fold: both}
    log_max: 1GB
  manual:
    run: ["python", "-m", "tool", 3]
"""


def test_a_full_featured_file_loads_into_the_expected_job_specs(tmp_path: Path) -> None:
    cfg = load_text(FULL, tmp_path)
    job = cfg.jobs["market-sync"]
    assert job.command == ("/bin/sh", "-c", "./sync.sh --all")
    assert job.shell is True
    assert [schedule.kind for schedule in job.schedules] == ["cron", "every", "after_completion"]
    assert job.timezone == "Europe/Berlin"
    assert job.cwd == tmp_path / "work"
    assert job.env == (("LANG", "C.UTF-8"), ("MODE", "full"), ("WORKERS", "4"), ("DEBUG", "yes"), ("RATIO", "1.50"))
    assert job.overlap == "allow"
    assert job.max_concurrent == 2
    assert job.min_gap == timedelta(hours=1)
    assert job.timeout == timedelta(hours=26)
    assert job.kill_grace == timedelta(seconds=30)
    assert job.retries == spec.RetryPolicy(
        attempts=3,
        backoff=timedelta(minutes=1),
        factor=1.5,
        max_backoff=timedelta(minutes=10),
        jitter=0.0,
        exit_codes=(1, 75),
        on=("failed",),
    )
    assert job.catchup == spec.CatchupPolicy(mode="all", window=timedelta(days=2))
    assert job.start_deadline == timedelta(minutes=15)
    assert job.enabled is False
    assert job.description == "Stages 31 to 63"
    assert job.labels == (("zone", "eu"), ("gpu", ""), ("ssd", ""))
    assert job.dst == spec.DstPolicy(gap="skip", fold="both")
    assert job.log_max_bytes == 1024**3
    assert job.line == 14
    assert job.source.startswith("market-sync:\n  description: Stages 31 to 63\n")
    assert job.source.endswith("  log_max: 1GB\n")

    manual = cfg.jobs["manual"]
    assert manual.command == ("python", "-m", "tool", "3")
    assert manual.shell is False
    assert manual.manual_only
    assert manual.timezone == "Asia/Seoul"
    assert manual.kill_grace == timedelta(seconds=5)
    assert manual.env == (("LANG", "C.UTF-8"), ("MODE", "base"))
    assert manual.log_max_bytes == 512 * 1024
    assert manual.source == 'manual:\n  run: ["python", "-m", "tool", 3]\n'

    settings = cfg.settings
    assert settings == spec.Settings(
        config_path=tmp_path / "corral.yaml",
        timezone="Asia/Seoul",
        log_dir=tmp_path / "logs",
        store_url=f"sqlite:///{tmp_path}/state/corral.db",
        log_max_bytes=512 * 1024,
        catchup_concurrency=2,
        max_running=8,
        drain=timedelta(minutes=1),
        web_host="0.0.0.0",
        web_port=9000,
    )
    assert cfg.warnings == (
        f'{tmp_path / "corral.yaml"}:24: job "market-sync": timeout: 1d2h is longer than the schedule interval 1d '
        "with overlap: allow, so up to 2 runs may overlap",
    )
    assert cfg.text == FULL


def test_a_minimal_job_gets_the_documented_defaults(tmp_path: Path) -> None:
    cfg = load_text("jobs: {hello: {run: echo hello}}", tmp_path)
    assert cfg.jobs["hello"] == spec.JobSpec(
        name="hello",
        command=("/bin/sh", "-c", "echo hello"),
        shell=True,
        line=1,
        source="jobs: {hello: {run: echo hello}}\n",
    )
    assert cfg.settings.log_dir == tmp_path / ".corral" / "logs"
    assert cfg.settings.store_url == f"sqlite:///{tmp_path}/.corral/corral.db"
    assert cfg.settings.web_port == 8377


def test_defaults_apply_unless_the_job_sets_the_key_and_env_merges_key_by_key(tmp_path: Path) -> None:
    cfg = load_text(
        """\
        defaults:
          overlap: queue_one
          retries: {attempts: 2, backoff: 5s}
          env: {A: "1", B: "2"}
          timezone: Asia/Seoul
        jobs:
          plain: {run: "true"}
          own:
            run: "true"
            overlap: replace
            retries: 5
            env: {B: "3"}
        """,
        tmp_path,
    )
    plain, own = cfg.jobs["plain"], cfg.jobs["own"]
    assert (plain.overlap, own.overlap) == ("queue_one", "replace")
    assert plain.retries == spec.RetryPolicy(attempts=2, backoff=timedelta(seconds=5))
    assert own.retries == spec.RetryPolicy(attempts=5)  # replaced as a whole, not merged
    assert (plain.env, own.env) == ((("A", "1"), ("B", "2")), (("A", "1"), ("B", "3")))
    assert own.timezone == "Asia/Seoul"


def test_a_bad_default_is_reported_once_not_per_job() -> None:
    assert problems_of(
        """\
        defaults:
          overlap: never
          run: echo
        jobs:
          a: {run: "true"}
          b: {run: "true"}
        """
    ) == [
        'corral.yaml:2: defaults.overlap: "never" is not one of skip, queue_one, queue_all, replace, allow',
        'corral.yaml:3: defaults: "run" cannot have a default; set it on each job',
    ]


def test_relative_paths_resolve_against_the_job_file_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "corral.yaml").write_text(
        "log_dir: ../logs\nstore: sqlite:///db/c.db?timeout=5\njobs: {a: {run: x, cwd: scripts}, b: {run: x, cwd: /srv}}\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = config.load("sub/corral.yaml", environ={})
    assert cfg.settings.config_path == tmp_path / "sub" / "corral.yaml"
    assert cfg.settings.log_dir == tmp_path / "sub" / ".." / "logs"
    assert cfg.settings.store_url == f"sqlite:///{tmp_path}/sub/db/c.db?timeout=5"
    assert cfg.jobs["a"].cwd == tmp_path / "sub" / "scripts"
    assert cfg.jobs["b"].cwd == Path("/srv")


def test_non_sqlite_and_absolute_store_urls_are_kept_as_written(tmp_path: Path) -> None:
    pg = load_text("store: postgresql+psycopg://corral@db/corral\njobs: {a: {run: x}}", tmp_path)
    assert pg.settings.store_url == "postgresql+psycopg://corral@db/corral"
    absolute = load_text("store: sqlite:////var/lib/corral.db\njobs: {a: {run: x}}", tmp_path)
    assert absolute.settings.store_url == "sqlite:////var/lib/corral.db"


def test_corral_db_in_the_environment_overrides_the_store_key(tmp_path: Path) -> None:
    cfg = load_text(
        "store: sqlite:///file.db\njobs: {a: {run: x}}", tmp_path, environ={"CORRAL_DB": "sqlite:///env.db"}
    )
    assert cfg.settings.store_url == "sqlite:///env.db"


def test_default_path_is_corral_config_or_corral_yaml_here() -> None:
    assert config.default_path({}) == Path("corral.yaml")
    assert config.default_path({"CORRAL_CONFIG": "/etc/corral/jobs.yaml"}) == Path("/etc/corral/jobs.yaml")


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    missing = tmp_path / "corral.yaml"
    with pytest.raises(errors.ConfigError) as caught:
        config.load(missing, environ={})
    assert [str(p) for p in caught.value.problems] == [
        f"{missing}: no job file at {missing}; create one or pass -c FILE / set CORRAL_CONFIG"
    ]


def test_a_yaml_syntax_error_gives_line_column_and_the_reason_in_one_line() -> None:
    assert problems_of("jobs:\n  a:\n    run: echo\n   bad: [1, 2\n") == [
        "corral.yaml:4: column 4: YAML syntax error: "
        "expected <block end>, but found '<block mapping start>' (while parsing a block mapping that starts on line 2)"
    ]
    assert problems_of("jobs:\n\ta: {run: x}\n") == [
        "corral.yaml:2: column 1: YAML syntax error: "
        "found character '\\t' that cannot start any token (while scanning for the next token)"
    ]
    assert problems_of("jobs: {a: {run: x}}\n---\njobs: {b: {run: x}}\n") == [
        "corral.yaml:2: column 1: YAML syntax error: "
        "expected a single document in the stream, but found another document"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'corral.yaml: the job file is empty; it needs at least a "jobs:" section'),
        ("# only a comment\n", 'corral.yaml: the job file is empty; it needs at least a "jobs:" section'),
        ("- a\n- b\n", "corral.yaml:1: the top level is a list; it must be a mapping with keys like timezone and jobs"),
        (
            "timezone: UTC\n",
            'corral.yaml: no "jobs:" section; add one with at least one job, like  jobs: {hello: {run: "echo hello"}}',
        ),
        ("jobs:\n", 'corral.yaml:1: jobs: is empty; add at least one job, like  hello: {run: "echo hello"}'),
        ("jobs: {}\n", 'corral.yaml:1: jobs: is empty; add at least one job, like  hello: {run: "echo hello"}'),
        (
            "jobs:\n  - run: x\n",
            'corral.yaml:1: jobs: is a list; jobs maps each job name to its settings, like  hello: {run: "echo hello"}',
        ),
        (
            "jobs:\n  a:\n",
            'corral.yaml:2: job "a": has no settings; a job needs at least a command, like  run: "echo hello"',
        ),
        (
            "jobs:\n  a: ./a.sh\n",
            'corral.yaml:2: job "a": is text, not a mapping; write the command under run, like  a: {run: "./a.sh"}',
        ),
    ],
)
def test_a_file_without_jobs_gets_one_clear_error(text: str, message: str) -> None:
    assert problems_of(text) == [message]


def test_duplicate_keys_are_errors_naming_both_lines_at_every_level() -> None:
    assert problems_of(
        """\
        timezone: UTC
        timezone: Asia/Seoul
        jobs:
          a:
            run: x
            retries:
              attempts: 1
              attempts: 2
        """
    ) == [
        'corral.yaml:2: duplicate key "timezone" (also on line 1); YAML would silently keep only the last one',
        'corral.yaml:8: job "a": retries: duplicate key "attempts" (also on line 7); '
        "YAML would silently keep only the last one",
    ]


def test_unknown_keys_suggest_a_close_one_or_list_the_valid_ones() -> None:
    assert problems_of(
        """\
        drian: 1m
        overlap: skip
        backup: {run: ./backup.sh}
        jobs:
          a:
            run: x
            retries: {attemps: 2}
            dst: {spring: skip}
            drain: 10s
        """
    ) == [
        'corral.yaml:1: unknown key "drian"; did you mean "drain"?',
        'corral.yaml:2: unknown key "overlap"; overlap is a job setting: put it under a job, '
        'or under "defaults:" to apply it to every job',
        'corral.yaml:3: unknown key "backup"; it looks like a job: put it under "jobs:"',
        'corral.yaml:7: job "a": retries: unknown key "attemps"; did you mean "attempts"?',
        'corral.yaml:8: job "a": dst: unknown key "spring"; valid keys are gap, fold',
        'corral.yaml:9: job "a": unknown key "drain"; drain is a top-level setting, not a job setting',
    ]


def test_keys_of_later_features_are_not_supported_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    # trigger and wait_for were the reserved keys until they were built; the mechanism stays.
    monkeypatch.setitem(config.RESERVED_JOB_KEYS, "later", "planned; for now start runs by hand")
    (problem,) = problems_of("jobs:\n  a:\n    run: x\n    later: 1\n")
    assert problem == 'corral.yaml:4: job "a": "later" is not supported yet: planned; for now start runs by hand'


def test_values_are_shown_as_written_and_quoted_numbers_get_a_hint() -> None:
    assert problems_of(
        """\
        max_running: 0
        jobs:
          a:
            run: x
            max_concurrent: 0x10
            timezone: seoul
            retries: {attempts: -1, factor: 0.5, on: [failed, crashed], exit_codes: []}
            catchup: {mode: latest, window: 0}
            timeout: 
            log_max: 0
            env: [A=1]
            cwd: 7
            schedule: 5
        """
    ) == [
        "corral.yaml:1: max_running: 0 is too small; expected a whole number of 1 or more",
        'corral.yaml:5: job "a": max_concurrent: 0x10 only applies with overlap: allow, but overlap is skip; '
        "set overlap: allow to let up to 16 runs overlap, or remove max_concurrent",
        'corral.yaml:6: job "a": timezone: unknown time zone "seoul"; did you mean "Asia/Seoul"?',
        'corral.yaml:7: job "a": retries.attempts: -1 is too small; expected a whole number of 0 or more',
        'corral.yaml:7: job "a": retries.factor: 0.5 is too small; expected a number of 1 or more, like 2',
        'corral.yaml:7: job "a": retries.exit_codes: an empty list; expected a list of exit codes from 1 to 255, like [1, 75]',
        'corral.yaml:7: job "a": retries.on: "crashed" is not one of failed, timed_out, lost',
        'corral.yaml:8: job "a": catchup.window: 0 is zero; write a duration longer than 0, like 90s, 30m or 2h',
        'corral.yaml:10: job "a": log_max: 0 is too small; a size must be at least 1 byte, like 512KB or 50MB',
        'corral.yaml:11: job "a": env: a list is not a mapping of NAME: value, like {LANG: C.UTF-8}',
        'corral.yaml:12: job "a": cwd: 7 is a number, not a directory path; put it in quotes: "7"',
        'corral.yaml:13: job "a": schedule: 5 is not a schedule; write a cron string like "0 1 * * *", '
        "{every: 30h} or {after_completion: 6h}, or a list of them",
    ]


def test_an_empty_schedule_is_an_error_but_an_empty_list_means_manual_only(tmp_path: Path) -> None:
    assert problems_of("jobs:\n  a:\n    run: x\n    schedule:\n") == [
        'corral.yaml:4: job "a": schedule: no value given; expected a cron string like "0 1 * * *", {every: 30h} '
        "or {after_completion: 6h}, or a list of them, or remove schedule for a job you only start by hand"
    ]
    assert load_text("jobs:\n  a:\n    run: x\n    schedule: []\n", tmp_path).jobs["a"].manual_only


def test_schedules_use_the_jobs_timezone_and_dst_policy(tmp_path: Path) -> None:
    cfg = load_text(
        """\
        timezone: Asia/Seoul
        jobs:
          a: {run: x, schedule: "30 2 * * *", timezone: Europe/Berlin, dst: {gap: skip}}
          b: {run: x, schedule: "30 2 * * *"}
        """,
        tmp_path,
    )
    (a,) = cfg.jobs["a"].schedules
    (b,) = cfg.jobs["b"].schedules
    assert (a.timezone, a.dst.gap) == ("Europe/Berlin", "skip")  # type: ignore[attr-defined]
    assert (b.timezone, b.dst.gap) == ("Asia/Seoul", "run_after")  # type: ignore[attr-defined]


def test_overlap_allow_without_max_concurrent_has_no_cap(tmp_path: Path) -> None:
    cfg = load_text("jobs: {a: {run: x, overlap: allow, timeout: 1h}}", tmp_path)
    assert cfg.jobs["a"].max_concurrent == config.NO_CAP


def test_likely_surprises_are_warnings_not_errors() -> None:
    cfg = config.loads(
        textwrap.dedent(
            """\
        jobs:
          hourly:
            run: x
            schedule: "0 * * * *"
            overlap: allow
            max_concurrent: 5
            timeout: 3h
          nightly:
            run: x
            schedule: "0 1 * * *"
            min_gap: 25h
            max_concurrent: 1
          piling:
            run: x
            schedule: "*/5 * * * *"
            overlap: allow
          paused:
            run: x
            schedule: "0 1 * * *"
            enabled: false
        """
        ),
        environ={},
    )
    assert cfg.warnings == (
        'corral.yaml:7: job "hourly": timeout: 3h00m is longer than the schedule interval 1h00m '
        "with overlap: allow, so up to 3 runs may overlap",
        'corral.yaml:11: job "nightly": min_gap: 1d1h is not shorter than the schedule interval 1d; '
        "it counts from the end of the previous run, so at least every other slot will be skipped",
        'corral.yaml:12: job "nightly": max_concurrent: has no effect with overlap: skip; '
        "only overlap: allow runs several at once",
        'corral.yaml:16: job "piling": overlap: allow with neither max_concurrent nor timeout: '
        "a run that hangs never ends while new ones keep starting; set one of them",
    )
    assert set(cfg.jobs) == {"hourly", "nightly", "piling", "paused"}


def test_anchors_and_merge_keys_work_and_errors_point_where_the_value_is_written(tmp_path: Path) -> None:
    cfg = load_text(
        """\
        x-common: &common
          overlap: queue_all
          timeout: 1h
        jobs:
          a:
            <<: *common
            run: x
            timeout: 2h
        """,
        tmp_path,
    )
    assert (cfg.jobs["a"].overlap, cfg.jobs["a"].timeout) == ("queue_all", timedelta(hours=2))
    assert problems_of(
        """\
        x-common: &common
          kill_grace: nope
        jobs:
          a:
            <<: *common
            run: x
        """
    ) == [
        'corral.yaml:2: job "a": kill_grace: "nope" is not a duration; '
        "write a number with a unit s, m, h, d or w, like 90s, 30m, 26h, 2d or 1h30m"
    ]


def test_every_key_has_wording_for_its_errors() -> None:
    def keys(model: type, prefix: str = "") -> set[str]:
        found = set()
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            found.add(prefix + name)
            inner = config._inner_model(field.annotation)
            if inner is not None:
                found |= keys(inner, f"{prefix}{name}.")
        return found

    assert keys(config._Settings) | keys(config._Job) <= set(config._EXPECT)


def test_the_example_file_loads_cleanly() -> None:
    cfg = config.load(EXAMPLE, environ={})
    assert cfg.warnings == ()
    assert len(cfg.jobs) >= 4
    nightly = cfg.jobs["nightly-batch"]
    assert (nightly.timezone, nightly.overlap, nightly.min_gap) == ("Asia/Seoul", "skip", timedelta(hours=1))
    assert [s.kind for job in cfg.jobs.values() for s in job.schedules] == [
        "cron",
        "cron",
        "every",
        "after_completion",
        "cron",
    ]
    assert any(job.manual_only for job in cfg.jobs.values())
