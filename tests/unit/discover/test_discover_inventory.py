"""Findings and the JSON form of an inventory."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

from corral.discover import inventory as inv
from corral.discover import parse
from corral.discover.parse import Entry

NOW = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)


def crontab(host: str, text: str, user: str = "app", source: str | None = None) -> list[Entry]:
    return parse.parse_crontab(text, host=host, source=source or f"/var/spool/cron/{user}", user=user)


def inventory(*entries: Entry, timezones: dict[str, str] | None = None) -> inv.Inventory:
    names = sorted({e.host for e in entries} | set(timezones or {}))
    hosts = tuple(inv.Host(name, timezone=(timezones or {}).get(name)) for name in names)
    return inv.Inventory(hosts, tuple(entries), NOW)


def codes(inventory_: inv.Inventory) -> list[list[str]]:
    return [[f.code for f in found] for found in inv.findings(inventory_)]


def messages(inventory_: inv.Inventory, index: int, code: str) -> list[str]:
    return [f.message for f in inv.findings(inventory_)[index] if f.code == code]


def test_a_clean_job_has_no_findings() -> None:
    assert codes(inventory(*crontab("web1", "0 3 * * * /opt/x >> /var/log/x 2>&1"))) == [[]]


def test_every_minute_jobs_are_found_also_when_written_with_a_step_of_one() -> None:
    entries = crontab(
        "web1", "* * * * * /a >/dev/null 2>&1\n*/1 * * * * /b >/dev/null 2>&1\n*/2 * * * * /c >/dev/null 2>&1"
    )
    assert codes(inventory(*entries)) == [["every_minute"], ["every_minute"], []]


def test_root_jobs_are_found_but_not_the_distributions_housekeeping() -> None:
    root = parse.parse_crontab(
        "0 1 * * * root /opt/backup >/dev/null 2>&1", host="h", source="/etc/crontab", system=True
    )[0]
    housekeeping = replace(root, command="cd / && run-parts --report /etc/cron.daily", notes=(parse.NOTE_DISTRIBUTION,))
    assert codes(inventory(root, housekeeping)) == [["runs_as_root"], []]


def test_output_findings_say_where_the_output_goes() -> None:
    entries = crontab(
        "web1",
        "0 1 * * * /a\n"
        "MAILTO=ops@example.com\n0 2 * * * /b > /dev/null\n"
        'MAILTO=""\n0 3 * * * /c 2>/dev/null\n0 4 * * * /d >/dev/null 2>&1\n',
        user="report",
    )
    jobs = inventory(*entries)
    assert messages(jobs, 0, "no_output_redirection") == [
        "output is not redirected: cron mails it to report on web1 (rarely read, or lost if mail is not set up)"
    ]
    assert messages(jobs, 2, "no_output_redirection") == [
        "stderr is not redirected: error output goes to mail; cron mails it to ops@example.com "
        "(mail noise, or lost if mail is not set up)"
    ]
    assert messages(jobs, 4, "no_output_redirection") == [
        "stdout is not redirected: MAILTO is empty, so it is thrown away"
    ]
    assert messages(jobs, 5, "no_output_redirection") == []


def test_timers_are_not_flagged_for_output_because_the_journal_keeps_it() -> None:
    files = {"x.timer": "[Timer]\nOnCalendar=daily\n", "x.service": "[Service]\nUser=app\nExecStart=/opt/x\n"}
    entry = parse.parse_systemd_units(files, host="h", source_dir="/s")[0]
    assert codes(inventory(entry)) == [[]]


def test_the_same_command_on_several_hosts_is_found_on_each() -> None:
    a = crontab("web1", "0 3 * * * /opt/extract >/dev/null 2>&1")[0]
    b = crontab("web2", "0 15 * * * /opt/extract  >/dev/null  2>&1")[0]
    c = crontab("web2", "0 3 * * * /opt/other >/dev/null 2>&1")[0]
    found = inv.findings(inventory(a, b, c))
    assert [f.message for f in found[0]] == ["the same command runs on 2 hosts: web1, web2"]
    assert [f.code for f in found[1]] == ["same_command_on_hosts"]
    assert found[2] == ()


def test_entries_of_one_command_firing_close_together_overlap() -> None:
    entries = crontab("batch1", "30 * * * * /opt/settle >/dev/null 2>&1\n35 * * * * /opt/settle >/dev/null 2>&1")
    overlap = inventory(*entries)
    assert codes(overlap) == [["overlap"], ["overlap"]]
    assert messages(overlap, 0, "overlap")[0].startswith(
        "fires within 5 min of the same command at batch1 /var/spool/cron/app:2 (first around 2025-03-08T12:30+00:00)"
    )


def test_entries_further_apart_than_the_window_do_not_overlap() -> None:
    entries = crontab("batch1", "0 * * * * /opt/settle >/dev/null 2>&1\n30 * * * * /opt/settle >/dev/null 2>&1")
    assert codes(inventory(*entries)) == [[], []]
    assert [[f.code for f in found] for found in inv.findings(inventory(*entries), overlap_minutes=30)] == [
        ["overlap"],
        ["overlap"],
    ]


def test_overlap_compares_real_instants_across_host_timezones() -> None:
    # 12:00 in Seoul is 03:00 UTC: the same moment, on two hosts
    seoul = crontab("kr1", "0 12 * * * /opt/sync >/dev/null 2>&1")[0]
    utc = crontab("eu1", "0 3 * * * /opt/sync >/dev/null 2>&1")[0]
    found = codes(inventory(seoul, utc, timezones={"kr1": "Asia/Seoul", "eu1": "UTC"}))
    assert found == [["same_command_on_hosts", "overlap"], ["same_command_on_hosts", "overlap"]]
    # and a monthly pair on the 1st is found even though it is weeks away
    monthly = crontab("kr1", "0 4 1 * * /opt/m >/dev/null 2>&1\n5 4 1 * * /opt/m >/dev/null 2>&1")
    assert codes(inventory(*monthly)) == [["overlap"], ["overlap"]]


def test_disabled_invalid_and_persistent_entries_are_flagged() -> None:
    entries = crontab("web1", "#0 3 * * * /opt/old >/dev/null 2>&1\nH 3 * * * /opt/jenkins")
    files = {
        "r.timer": "[Timer]\nOnCalendar=daily\nPersistent=yes\n",
        "r.service": "[Service]\nUser=app\nExecStart=/r\n",
    }
    timer = parse.parse_systemd_units(files, host="web1", source_dir="/s")[0]
    found = inv.findings(inventory(*entries, timer))
    assert [f.code for f in found[0]] == ["disabled"]
    assert [(f.code, f.message) for f in found[1]] == [
        ("invalid", 'minute field "H": "H" is Jenkins hash syntax; cron does not accept it, pick a fixed value')
    ]
    assert [f.code for f in found[2]] == ["persistent_timer"]


def test_parser_notes_and_unknown_zones_become_findings() -> None:
    entries = crontab("web1", "CRON_TZ=Mars/Olympus\n0 3 * * * root /opt/x >/dev/null 2>&1\r\n", user="alice")
    assert codes(inventory(*entries))[1] == ["bad_timezone", "crlf", "user_field_in_user_crontab"]


def test_to_json_has_hosts_and_entries_with_the_promised_keys() -> None:
    entries = crontab("web1", "MAILTO=ops@example.com\n* * * * * cd /srv && php artisan schedule:run", user="digger")
    data = inv.to_json(
        inv.Inventory(
            (inv.Host("web1", timezone="Asia/Seoul"), inv.Host("db1", inv.UNREACHABLE, "timed out after 10 s")),
            tuple(entries),
            NOW,
        )
    )
    json.dumps(data)  # plain JSON types only
    assert data["version"] == 1 and data["collected_at"] == "2025-03-08T12:00:00+00:00"
    assert data["hosts"][1] == {
        "name": "db1",
        "status": "unreachable",
        "error": "timed out after 10 s",
        "timezone": None,
        "files": [],
        "file_errors": [],
    }
    job = data["entries"][1]
    for key in ("host", "user", "source", "line", "kind", "schedule", "command", "timezone", "reason", "findings"):
        assert key in job
    assert job["kind"] == "job" and job["user"] == "digger" and job["line"] == 2
    assert job["timezone"] == "Asia/Seoul" and job["timezone_source"] == "host"
    assert job["next_run"] == "2025-03-08T21:01:00+09:00"
    assert job["description"] == "Every minute"
    assert job["runtime"] == "php"
    assert job["mailto"] == "ops@example.com"
    assert [f["code"] for f in job["findings"]] == ["every_minute", "no_output_redirection"]
    assert data["entries"][0]["kind"] == "env" and data["entries"][0]["env"] == {"MAILTO": "ops@example.com"}


def test_from_json_gives_back_the_same_inventory() -> None:
    entries = crontab("web1", "CRON_TZ=Asia/Seoul\n0 3 * * * /a\n#0 4 * * * /b\n0 22-2 * * * /c", user="u")
    original = inventory(*entries, timezones={"web1": "UTC"})
    data = inv.to_json(original)
    again = inv.from_json(json.loads(json.dumps(data)))
    assert again.entries == original.entries
    assert again.hosts == original.hosts
    assert inv.to_json(again) == data


def test_merge_joins_collections() -> None:
    a = inventory(*crontab("web1", "0 3 * * * /a"))
    b = inventory(*crontab("web2", "0 3 * * * /a"))
    merged = inv.merge([a, b])
    assert [h.name for h in merged.hosts] == ["web1", "web2"]
    assert len(merged.entries) == 2 and merged.collected_at == NOW


def test_a_disabled_every_minute_job_is_only_reported_as_disabled() -> None:
    assert codes(inventory(*crontab("web1", "#* * * * * /opt/x"))) == [["disabled"]]


def test_a_minutely_timer_is_not_an_every_minute_cron_finding() -> None:
    files = {"m.timer": "[Timer]\nOnCalendar=minutely\n", "m.service": "[Service]\nUser=app\nExecStart=/m\n"}
    assert codes(inventory(*parse.parse_systemd_units(files, host="h", source_dir="/s"))) == [[]]
