"""The ``notify:`` keys of the job file: channels, rules, per-job overrides."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from corral import config, errors, spec

BASE = """
notify:
  dashboard_url: https://corral.example.com/
  channels:
    ops: {type: discord, url: "https://discord.com/api/webhooks/1/abc"}
    hook: {type: webhook, url: "https://example.com/hook", secret: "${HOOK_SECRET}", rate_limit: 30}
    mail: {type: email, to: [ops@example.com], smtp_host: mail.local, smtp_port: 2525, from: corral@example.com}
  default: {channels: [ops], on: [failure, recovery], remind_every: 1d}
jobs:
  nightly:
    run: "true"
    expected_duration: 2h
    notify: {channels: [ops, mail], on: [failure, overrun], overrun_factor: 3}
  quiet:
    run: "true"
    notify: false
  plain:
    run: "true"
"""


def _load(text: str, **environ: str) -> spec.Config:
    return config.loads(text, path="/tmp/corral.yaml", environ=environ)


def _problems(text: str, **environ: str) -> list[str]:
    with pytest.raises(errors.ConfigError) as info:
        _load(text, **environ)
    return [str(problem) for problem in info.value.problems]


def test_it_reads_channels_default_rule_and_job_overrides() -> None:
    cfg = _load(BASE, HOOK_SECRET="k3y")
    n = cfg.notify
    assert n.dashboard_url == "https://corral.example.com"
    assert n.channels["ops"] == spec.Channel(name="ops", type="discord", url="https://discord.com/api/webhooks/1/abc")
    assert n.channels["hook"].secret == "k3y" and n.channels["hook"].rate_limit == 30
    mail = n.channels["mail"]
    assert (mail.to, mail.smtp_host, mail.smtp_port, mail.sender) == (("ops@example.com",), "mail.local", 2525, "corral@example.com")
    assert n.default == spec.Rule(channels=("ops",), on=("failure", "recovery"), remind_every=timedelta(days=1))
    nightly = n.rule_for("nightly")
    # Keys the job does not set come from the default.
    assert nightly.channels == ("ops", "mail") and nightly.on == ("failure", "overrun")
    assert nightly.remind_every == timedelta(days=1) and nightly.overrun_factor == 3.0
    assert n.rule_for("quiet").channels == () and n.rule_for("plain") == n.default
    assert cfg.jobs["nightly"].expected_duration == timedelta(hours=2)


def test_without_a_default_rule_every_channel_gets_the_default_kinds() -> None:
    cfg = _load('notify: {channels: {a: {type: slack, url: "https://hooks.slack.com/x"}}}\njobs: {j: {run: "true"}}')
    assert cfg.notify.default == spec.Rule(channels=("a",), on=spec.DEFAULT_ALERT_ON)
    assert cfg.notify.dashboard_url == "http://127.0.0.1:8377"


def test_a_file_without_notify_has_no_channels() -> None:
    cfg = _load('jobs: {j: {run: "true"}}')
    assert cfg.notify.channels == {} and cfg.jobs["j"].expected_duration is None


def test_secret_values_are_collected_for_masking() -> None:
    text = """
notify:
  channels:
    ops: {type: discord, url: {secret: "https://discord.com/api/webhooks/1/tok"}}
    hook: {type: webhook, url: "https://example.com/h", secret: "${HOOK_SECRET}"}
jobs: {j: {run: "true"}}
"""
    cfg = _load(text, HOOK_SECRET="hunter2")
    assert cfg.notify.channels["ops"].url == "https://discord.com/api/webhooks/1/tok"
    assert set(cfg.notify.secret_values) == {"https://discord.com/api/webhooks/1/tok", "hunter2"}


def test_an_unset_environment_variable_is_named() -> None:
    text = 'notify: {channels: {hook: {type: webhook, url: "https://e.com/h", secret: "${HOOK_SECRET}"}}}\njobs: {j: {run: "true"}}'
    [problem] = _problems(text)
    assert problem.startswith("/tmp/corral.yaml:1: notify.channels.hook.secret: ${HOOK_SECRET} is not set in the environment; export HOOK_SECRET")


def test_unknown_channel_names_in_rules_get_a_did_you_mean() -> None:
    text = """
notify:
  channels:
    ops: {type: discord, url: "https://discord.com/api/webhooks/1/abc"}
  default: {channels: [opps]}
jobs:
  nightly:
    run: "true"
    notify: {channels: [ops, pager]}
"""
    assert _problems(text) == [
        '/tmp/corral.yaml:5: notify.default.channels: unknown channel "opps"; did you mean "ops"?',
        '/tmp/corral.yaml:9: job "nightly": notify.channels: unknown channel "pager"; channels are ops',
    ]


def test_bad_channel_type_url_and_keys_are_reported_with_their_lines() -> None:
    text = """
notify:
  channels:
    a: {type: discrod, url: "https://discord.com/x"}
    b: {type: slack, url: "hooks.slack.com/services/T/B/X"}
    c: {type: webhook, url: "https://e.com/h", secrte: x}
    d: {type: email, to: [not-an-address]}
    e: {type: slack}
jobs: {j: {run: "true"}}
"""
    assert _problems(text) == [
        '/tmp/corral.yaml:4: notify.channels.a.type: "discrod" is not one of discord, slack, webhook, email; did you mean "discord"?',
        '/tmp/corral.yaml:5: notify.channels.b.url: "hooks.slack.com/services/T/B/X" is not an http(s) URL; '
        "write it like https://hooks.slack.com/services/T000/B000/XXXX",
        '/tmp/corral.yaml:6: notify.channels.c.secrte: unknown key "secrte"; did you mean "secret"? (a webhook channel)',
        '/tmp/corral.yaml:7: notify.channels.d.to: "not-an-address" is not an email address like ops@example.com',
        '/tmp/corral.yaml:8: notify.channels.e: missing key "url": the slack webhook URL, like https://hooks.slack.com/services/T000/B000/XXXX',
    ]


def test_bad_rule_names_and_values_are_reported() -> None:
    text = """
notify:
  channels: {ops: {type: discord, url: "https://discord.com/x"}}
  default:
    on: [failure, failiure]
    remind_every: soon
    overrun_factor: 0.5
    quiet_hours: {start: 22:00, end: "7am"}
    mute: true
jobs: {j: {run: "true"}}
"""
    problems = _problems(text)
    assert problems[0] == '/tmp/corral.yaml:5: notify.default.on: "failiure" is not one of failure, recovery, timeout, lost, skipped, overrun, missed; did you mean "failure"?'
    assert problems[1].startswith("/tmp/corral.yaml:6: notify.default.remind_every: ")
    assert problems[2] == "/tmp/corral.yaml:7: notify.default.overrun_factor: 0.5 is not a number above 1, like 2 or 1.5"
    assert problems[3] == '/tmp/corral.yaml:8: notify.default.quiet_hours.start: 22:00 is read as a number; put the time in quotes: "22:00"'
    assert problems[4] == '/tmp/corral.yaml:8: notify.default.quiet_hours.end: "7am" is not a time; write it like "22:00"'
    assert problems[5] == '/tmp/corral.yaml:9: notify.default.mute: unknown key "mute"; valid keys are channels, on, remind_every, quiet_hours, overrun_factor, missed_after'


def test_missed_needs_a_window_and_quiet_hours_parse() -> None:
    text = """
notify:
  channels: {ops: {type: discord, url: "https://discord.com/x"}}
  default: {on: [missed], quiet_hours: {start: "22:00", end: "07:00", timezone: Asia/Seoul}}
jobs: {j: {run: "true"}}
"""
    [problem] = _problems(text)
    assert problem == '/tmp/corral.yaml:4: notify.default.on: "missed" needs a window: add missed_after, like missed_after: 26h (no successful run for that long)'
    cfg = _load(text.replace("on: [missed]", "on: [missed], missed_after: 26h"))
    assert cfg.notify.default.missed_after == timedelta(hours=26)
    assert cfg.notify.default.quiet_hours == spec.QuietHours(start=time(22, 0), end=time(7, 0), timezone="Asia/Seoul")


def test_unknown_top_level_notify_keys_and_a_bad_expected_duration() -> None:
    text = """
notify: {chanels: {}}
jobs: {j: {run: "true", expected_duration: forever}}
"""
    problems = _problems(text)
    assert problems[0] == '/tmp/corral.yaml:2: notify.chanels: unknown key "chanels"; did you mean "channels"?'
    assert problems[1].startswith('/tmp/corral.yaml:3: job "j": expected_duration: ')


def test_notify_under_defaults_points_to_the_top_level_default() -> None:
    [problem] = _problems('defaults: {notify: {on: [failure]}}\njobs: {j: {run: "true"}}')
    assert problem == '/tmp/corral.yaml:1: defaults: unknown key "notify" under defaults; the default alert rule goes under the top-level "notify: {default: ...}"'
