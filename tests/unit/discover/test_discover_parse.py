"""The pure parsers, on plain strings."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from corral.discover import parse
from corral.discover.parse import Entry

AFTER = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)


def user_crontab(text: str, user: str = "deploy") -> list[Entry]:
    return parse.parse_crontab(text, host="web1", source="/var/spool/cron/crontabs/" + user, user=user)


def system_crontab(text: str) -> list[Entry]:
    return parse.parse_crontab(text, host="web1", source="/etc/cron.d/x", system=True)


def only(entries: list[Entry]) -> Entry:
    assert len(entries) == 1, entries
    return entries[0]


# --- crontab: jobs and sources


def test_a_user_crontab_line_becomes_a_job_with_its_source() -> None:
    entry = only(user_crontab("\n\n0 3 * * * /opt/digger/bin/monthly-report --all\n"))
    assert entry.kind == parse.JOB
    assert (entry.host, entry.user, entry.source, entry.line) == (
        "web1",
        "deploy",
        "/var/spool/cron/crontabs/deploy",
        3,
    )
    assert entry.schedule == "0 3 * * *"
    assert entry.cron == ("0 3 * * *",)
    assert entry.command == "/opt/digger/bin/monthly-report --all"
    assert entry.raw == "0 3 * * * /opt/digger/bin/monthly-report --all"
    assert entry.origin == parse.CRONTAB


def test_tabs_and_runs_of_blanks_separate_fields_but_the_command_keeps_its_spacing() -> None:
    entry = only(user_crontab("17 *\t* * *\techo  'two  spaces'"))
    assert entry.schedule == "17 * * * *"
    assert entry.command == "echo  'two  spaces'"


def test_blank_lines_and_ordinary_comments_produce_nothing() -> None:
    assert user_crontab("\n   \n# m h  dom mon dow   command\n\t# indented comment\n") == []


def test_a_system_crontab_line_takes_its_user_from_the_sixth_field() -> None:
    entry = only(system_crontab("25 6 * * * www-data php /var/www/cron.php"))
    assert entry.user == "www-data"
    assert entry.command == "php /var/www/cron.php"
    assert entry.origin == parse.SYSTEM_CRONTAB


def test_a_system_line_without_a_user_is_invalid_and_says_so() -> None:
    entry = only(system_crontab("0 3 * * * /usr/local/bin/backup.sh --full"))
    assert entry.kind == parse.INVALID
    assert entry.reason is not None and "need a user" in entry.reason and '"/usr/local/bin/backup.sh"' in entry.reason


def test_a_system_line_with_a_user_but_no_command_is_invalid() -> None:
    entry = only(system_crontab("30 3 * * * root"))
    assert (entry.kind, entry.user, entry.reason) == (parse.INVALID, "root", 'no command after the user "root"')


def test_a_user_named_like_a_weekday_is_still_a_user() -> None:
    assert only(system_crontab("0 3 * * * mon /opt/check")).user == "mon"


def test_a_user_crontab_line_that_starts_its_command_with_a_user_name_is_noted() -> None:
    entry = only(user_crontab("0 3 * * * root /opt/backup.sh", user="alice"))
    assert entry.kind == parse.JOB
    assert parse.NOTE_USER_FIELD_IN_USER_CRONTAB in entry.notes


# --- environment lines


def test_environment_lines_are_entries_and_apply_to_the_jobs_after_them() -> None:
    entries = user_crontab(
        "MAILTO=ops@example.com\n0 1 * * * /a\nCRON_TZ=Asia/Seoul\nPATH = /usr/bin:/bin\n0 2 * * * /b\n"
    )
    kinds = [e.kind for e in entries]
    assert kinds == ["env", "job", "env", "env", "job"]
    first, second = entries[1], entries[4]
    assert dict(first.env) == {"MAILTO": "ops@example.com"}
    assert (first.mailto, first.timezone) == ("ops@example.com", None)
    assert dict(second.env) == {"MAILTO": "ops@example.com", "CRON_TZ": "Asia/Seoul", "PATH": "/usr/bin:/bin"}
    assert (second.mailto, second.timezone) == ("ops@example.com", "Asia/Seoul")
    assert dict(entries[3].env) == {"PATH": "/usr/bin:/bin"}


def test_quoted_values_keep_their_blanks_and_unquoted_ones_are_trimmed() -> None:
    entries = user_crontab("A = ' padded '\nB=\"x y\"\nC =  plain value  \n'QUOTED NAME'=v\nEMPTY=\n")
    assert [dict(e.env) for e in entries] == [
        {"A": " padded "},
        {"B": "x y"},
        {"C": "plain value"},
        {"QUOTED NAME": "v"},
        {"EMPTY": ""},
    ]


def test_an_empty_mailto_means_no_mail() -> None:
    job = user_crontab('MAILTO=""\n* * * * * /x')[1]
    assert job.mailto == ""


def test_tz_alone_sets_the_timezone_with_a_note_and_cron_tz_wins() -> None:
    entries = user_crontab("TZ=Europe/Berlin\n0 1 * * * /a\nCRON_TZ=UTC\n0 2 * * * /b\nTZ=Asia/Seoul\n0 3 * * * /c\n")
    jobs = [e for e in entries if e.kind == parse.JOB]
    assert [(j.timezone, parse.NOTE_TZ_ENV_ONLY in j.notes) for j in jobs] == [
        ("Europe/Berlin", True),
        ("UTC", False),
        ("UTC", False),
    ]


# --- percent signs


def test_an_unescaped_percent_ends_the_command_and_the_rest_is_stdin() -> None:
    entry = only(user_crontab("0 9 * * 1-5 mail -s hi team@example.com%line one%line two"))
    assert entry.command == "mail -s hi team@example.com"
    assert entry.stdin == "line one\nline two"


def test_an_escaped_percent_is_a_literal_percent_in_command_and_stdin() -> None:
    entry = only(user_crontab(r"0 0 * * * tar czf /b/$(date +\%F).tgz /w%50\% done"))
    assert entry.command == "tar czf /b/$(date +%F).tgz /w"
    assert entry.stdin == "50% done"


def test_other_backslashes_are_left_alone() -> None:
    assert parse.split_percent(r"printf 'a\tb\n'") == (r"printf 'a\tb\n'", None)


# --- macros


@pytest.mark.parametrize(
    ("macro", "cron"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@reboot", "@reboot"),
    ],
)
def test_macros_translate_to_their_cron_expressions(macro: str, cron: str) -> None:
    entry = only(user_crontab(f"{macro} /opt/x"))
    assert (entry.kind, entry.schedule, entry.cron, entry.command) == (parse.JOB, macro, (cron,), "/opt/x")


def test_reboot_jobs_have_no_next_run() -> None:
    entry = only(user_crontab("@reboot /opt/warm"))
    assert parse.next_run(entry, AFTER) is None
    assert parse.schedule_description(entry) == "At every boot (when cron starts)"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("@Daily /x", 'write "@daily"'),
        ("@every 5m /x", "Go cron"),
        ("@fortnightly /x", "not a cron macro"),
        ("@hourly", "no command"),
    ],
)
def test_unknown_or_miswritten_macros_are_invalid(line: str, fragment: str) -> None:
    entry = only(user_crontab(line))
    assert entry.kind == parse.INVALID
    assert entry.reason is not None and fragment in entry.reason


# --- commented-out jobs


def test_a_commented_out_job_is_kept_as_disabled_with_its_schedule_and_command() -> None:
    entry = only(user_crontab("#0 3 * * * /opt/x.sh --all >> /var/log/x 2>&1"))
    assert entry.kind == parse.DISABLED
    assert (entry.schedule, entry.command) == ("0 3 * * *", "/opt/x.sh --all >> /var/log/x 2>&1")
    assert parse.next_run(entry, AFTER) is None


def test_several_hashes_and_spaces_before_a_disabled_job_are_fine() -> None:
    assert only(user_crontab("##   @daily /opt/prune")).kind == parse.DISABLED


def test_prose_and_template_examples_in_comments_are_not_jobs() -> None:
    text = (
        "# 2 jobs below run nightly\n"
        "# 30 minutes past midnight\n"
        "# 0 5 * * 1 tar -zcf /var/backups/home.tgz /home/\n"
        "#MAILTO=x@example.com\n"
        "#0 25 * * * /never-valid\n"
    )
    assert user_crontab(text) == []
    assert system_crontab("# *  *  *  *  * user-name  command to be executed\n") == []


def test_a_disabled_line_in_a_system_crontab_keeps_its_user() -> None:
    entry = only(system_crontab("# 0 4 * * * stats /opt/stats/sync"))
    assert (entry.kind, entry.user, entry.command) == (parse.DISABLED, "stats", "/opt/stats/sync")


# --- lines cron rejects


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("60 * * * * /x", 'minute field "60": 60 is out of range 0-59'),
        ("0 24 * * * /x", 'hour field "24": 24 is out of range 0-23'),
        ("0 0 0 * * /x", 'day-of-month field "0": 0 is out of range 1-31'),
        ("0 0 1 13 * /x", 'month field "13": 13 is out of range 1-12'),
        ("0 0 * * 8 /x", 'day-of-week field "8": 8 is out of range 0-7'),
        ("0 22-2 * * * /x", 'hour field "22-2": the range 22-2 runs backwards; cron does not wrap around'),
        ("*/0 * * * * /x", 'minute field "*/0": a step of 0 is not allowed'),
        ("0 1,,2 * * * /x", 'hour field "1,,2": empty item in the list'),
        ("0 0 * * mon-fry /x", 'day-of-week field "mon-fry": "FRY" is not a number or a name cron knows'),
        ("H 3 * * * /x", 'minute field "H": "H" is Jenkins hash syntax; cron does not accept it, pick a fixed value'),
        (
            "H/15 * * * * /x",
            'minute field "H/15": "H" is Jenkins hash syntax; cron does not accept it, pick a fixed value',
        ),
        ("0 0 L * * /x", 'day-of-month field "L": "L", "W" and "#" are Quartz extensions; cron does not accept them'),
        (
            "0 9 * * 1#1 /x",
            'day-of-week field "1#1": "L", "W" and "#" are Quartz extensions; cron does not accept them',
        ),
        ("0 3 * * *", "no command after the schedule"),
        ("0 4 * *", "only 4 fields; a cron line needs 5 time fields and a command"),
    ],
)
def test_lines_cron_rejects_are_invalid_with_a_precise_reason(line: str, reason: str) -> None:
    entry = only(user_crontab(line))
    assert entry.kind == parse.INVALID
    assert entry.reason == reason
    assert entry.cron == ()
    assert parse.next_run(entry, AFTER) is None


def test_a_start_value_with_a_step_is_invalid_and_the_reason_gives_the_portable_form() -> None:
    entry = only(user_crontab("5/15 * * * * /x"))
    assert entry.kind == parse.INVALID
    assert entry.reason is not None and '"5-59/15"' in entry.reason


def test_a_six_field_quartz_expression_is_invalid_and_explains_what_cron_would_run() -> None:
    entry = only(user_crontab("0 0 12 * * ? /opt/noon.sh"))
    assert entry.kind == parse.INVALID
    assert entry.schedule == "0 0 12 * * ?"
    assert entry.command == "/opt/noon.sh"
    assert entry.reason == (
        '6 time fields ("0 0 12 * * ?") look like a Quartz/Spring expression (seconds first); '
        'cron reads 5 and would run "? /opt/noon.sh" as the command'
    )


def test_a_seven_field_quartz_expression_with_a_year_is_invalid() -> None:
    entry = only(user_crontab("0 0 12 * * ? 2025 /opt/once.sh"))
    assert entry.schedule == "0 0 12 * * ? 2025"
    assert entry.reason is not None and entry.reason.startswith("7 time fields") and "year last" in entry.reason


def test_a_seconds_first_spring_expression_is_recognised_even_when_a_field_is_out_of_range() -> None:
    entry = only(user_crontab("0 30 2 * * * /opt/spring.sh"))
    assert entry.schedule == "0 30 2 * * *"
    assert entry.reason is not None and "rejects the line" in entry.reason


def test_a_quartz_line_in_a_system_crontab_keeps_user_and_command_apart() -> None:
    entry = only(system_crontab("0 0 12 * * ? root /opt/quartz.sh"))
    assert (entry.user, entry.command) == ("root", "/opt/quartz.sh")
    assert entry.reason is not None and 'take "?" as the user' in entry.reason


def test_a_continuation_backslash_makes_the_line_and_its_followers_invalid() -> None:
    entries = user_crontab("0 2 * * * /opt/load \\\n  --source=orders \\\n  --target=dw\n\n15 3 * * * /opt/ok\n")
    assert [(e.line, e.kind) for e in entries] == [(1, "invalid"), (2, "invalid"), (3, "invalid"), (5, "job")]
    assert entries[0].reason is not None and "no line continuations" in entries[0].reason
    assert entries[1].reason is not None and entries[1].reason.startswith("continues line 1")
    assert "environment assignment" in entries[1].reason
    assert entries[2].reason is not None and entries[2].reason.startswith("continues line 1")
    # the text cron would take as an environment assignment is not applied
    assert dict(entries[3].env) == {}


def test_windows_line_endings_are_stripped_and_noted() -> None:
    entries = user_crontab("MAILTO=a@b\r\n0 3 * * * /x.sh\r\n")
    assert entries[0].mailto == "a@b"
    assert entries[1].command == "/x.sh"
    assert parse.NOTE_CRLF in entries[1].notes


# --- names and steps


@pytest.mark.parametrize(
    "schedule",
    [
        "0 7 * jan-jun mon,wed,fri",
        "*/15 * * * *",
        "0-30/10 9 * * *",
        "0 12 * * SUN",
        "0 12 * * 7",
        "0 18 * * 1-5/2",
        "00 09 * * *",
    ],
)
def test_names_ranges_lists_and_steps_are_accepted(schedule: str) -> None:
    entry = only(user_crontab(f"{schedule} /x"))
    assert entry.kind == parse.JOB
    assert parse.next_run(entry, AFTER) is not None


# --- descriptions and next runs


def test_next_run_uses_the_entry_timezone_then_the_host_timezone() -> None:
    seoul = only(user_crontab("CRON_TZ=Asia/Seoul\n0 3 * * * /x")[1:])
    plain = only(user_crontab("0 3 * * * /x"))
    assert parse.next_run(seoul, AFTER, "UTC") == datetime.fromisoformat("2025-03-09T03:00:00+09:00")
    assert parse.next_run(plain, AFTER, "Europe/Berlin") == datetime.fromisoformat("2025-03-09T03:00:00+01:00")
    assert parse.next_run(plain, AFTER) == datetime.fromisoformat("2025-03-09T03:00:00+00:00")


def test_a_job_in_the_spring_forward_gap_runs_right_after_it_like_cron() -> None:
    # New York skips 02:00-03:00 on 2025-03-09
    entry = user_crontab("CRON_TZ=America/New_York\n30 2 * * * /x")[1]
    assert parse.next_run(entry, AFTER) == datetime.fromisoformat("2025-03-09T03:00:00-04:00")


def test_an_unknown_timezone_gives_no_next_run() -> None:
    entry = user_crontab("CRON_TZ=Mars/Olympus\n0 9 * * * /x")[1]
    assert parse.next_run(entry, AFTER) is None


def test_next_run_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError):
        parse.next_run(only(user_crontab("0 3 * * * /x")), datetime(2025, 1, 1))


def test_descriptions_are_plain_words_with_the_timezone() -> None:
    entry = user_crontab("CRON_TZ=Asia/Seoul\n*/5 * * * mon-fri /x")[1]
    assert parse.schedule_description(entry) == "Every fifth minute of every hour on Monday through Friday (Asia/Seoul)"
    invalid = only(user_crontab("60 * * * * /x"))
    assert parse.schedule_description(invalid).startswith("never runs: minute field")


# --- anacrontab


ANACRONTAB = """\
SHELL=/bin/sh
MAILTO=root
RANDOM_DELAY=45
START_HOURS_RANGE=3-22
1\t5\tcron.daily\tnice run-parts /etc/cron.daily
@monthly 45 cron.monthly nice run-parts /etc/cron.monthly
#7 30 report.weekly /opt/report/weekly
2 x report.bad /opt/x
"""


def test_anacrontab_jobs_carry_period_delay_id_and_the_hours_range() -> None:
    entries = parse.parse_anacrontab(ANACRONTAB, host="h", source="/etc/anacrontab")
    assert [e.kind for e in entries] == ["env", "env", "env", "env", "job", "job", "disabled", "invalid"]
    daily = entries[4]
    assert (daily.user, daily.schedule, daily.command, daily.mailto) == (
        "root",
        "1",
        "nice run-parts /etc/cron.daily",
        "root",
    )
    assert dict(daily.details) == {"delay": "5", "id": "cron.daily", "START_HOURS_RANGE": "3-22", "RANDOM_DELAY": "45"}
    assert parse.schedule_description(daily) == (
        "Once a day (anacron), 5 min after anacron starts, only between 3:00 and 22:00, plus up to 45 min random delay"
    )
    assert parse.schedule_description(entries[5]).startswith("Once a month (anacron), 45 min")
    assert entries[6].command == "/opt/report/weekly"
    assert entries[7].reason == 'delay "x" is not a number of minutes'
    assert parse.next_run(daily, AFTER) is None


# --- systemd


def test_a_timer_is_joined_with_its_service() -> None:
    files = {
        "report.timer": "[Unit]\nDescription=Report\n[Timer]\nOnCalendar=Mon..Fri *-*-* 09:30\nPersistent=true\n",
        "report.service": (
            "[Service]\nUser=digger\nWorkingDirectory=/srv\n"
            'Environment="A=1" B=2\nExecStart=-/srv/bin/report \\\n  --all\n'
        ),
    }
    entry = only(parse.parse_systemd_units(files, host="h", source_dir="/etc/systemd/system"))
    assert (entry.kind, entry.user, entry.source, entry.line) == (
        "job",
        "digger",
        "/etc/systemd/system/report.timer",
        4,
    )
    assert entry.schedule == "OnCalendar=Mon..Fri *-*-* 09:30"
    assert entry.cron == ("30 9 * * 1-5",)
    assert entry.command == "/srv/bin/report --all"
    assert dict(entry.env) == {"A": "1", "B": "2"}
    assert entry.details["Persistent"] == "true"
    assert entry.details["WorkingDirectory"] == "/srv"
    assert entry.details["service"] == "/etc/systemd/system/report.service"
    assert parse.next_run(entry, AFTER, "Asia/Seoul") == datetime.fromisoformat("2025-03-10T09:30:00+09:00")


def test_a_timer_without_its_service_is_reported_with_an_empty_command() -> None:
    entry = only(parse.parse_systemd_units({"lonely.timer": "[Timer]\nOnCalendar=daily\n"}, host="h", source_dir="/s"))
    assert (entry.kind, entry.command, entry.user) == ("job", "", None)
    assert entry.notes == (parse.NOTE_MISSING_SERVICE,)


def test_a_timer_without_a_trigger_is_invalid() -> None:
    files = {"x.timer": "[Timer]\nPersistent=true\n", "x.service": "[Service]\nExecStart=/bin/true\n"}
    entry = only(parse.parse_systemd_units(files, host="h", source_dir="/s"))
    assert entry.kind == parse.INVALID
    assert entry.reason == "the timer has no OnCalendar= or On*Sec= setting; systemd refuses to start it"


def test_a_timer_not_in_the_enabled_set_is_disabled() -> None:
    files = {"x.timer": "[Timer]\nOnCalendar=daily\n", "x.service": "[Service]\nExecStart=/bin/true\n"}
    assert only(parse.parse_systemd_units(files, host="h", source_dir="/s", enabled=[])).kind == parse.DISABLED
    assert only(parse.parse_systemd_units(files, host="h", source_dir="/s", enabled=["x.timer"])).kind == parse.JOB


def test_monotonic_timers_are_described_but_have_no_next_run() -> None:
    files = {
        "poll.timer": "[Timer]\nOnBootSec=5min\nOnUnitActiveSec=15min\nUnit=poll@kr.service\n",
        "poll@.service": "[Service]\nExecStart=/usr/bin/php /srv/poll.php --region=%i\n",
    }
    entry = only(parse.parse_systemd_units(files, host="h", source_dir="/s"))
    assert entry.command == "/usr/bin/php /srv/poll.php --region=kr"
    assert parse.schedule_description(entry) == "5min after boot; every 15min after it last started"
    assert parse.next_run(entry, AFTER) is None


@pytest.mark.parametrize(
    ("expr", "cron", "tz"),
    [
        ("daily", "0 0 * * *", None),
        ("weekly", "0 0 * * 1", None),
        ("hourly", "0 * * * *", None),
        ("monthly", "0 0 1 * *", None),
        ("*-*-* 04:00:00", "0 4 * * *", None),
        ("Mon..Fri *-*-* 09:30", "30 9 * * 1-5", None),
        ("*:0/15", "*/15 * * * *", None),
        ("*-*-* 08..18:0/15", "*/15 8-18 * * *", None),
        ("Sat,Sun 20:00 Europe/Berlin", "0 20 * * 6,7", "Europe/Berlin"),
        ("*-01,07-01 06:00", "0 6 1 1,7 *", None),
        ("12:00", "0 12 * * *", None),
        ("*-*-* 03:00:30", None, None),
        ("2025-*-* 00:00", None, None),
        ("*-*~01 23:00", None, None),
        ("Mon *-*-01 00:00", None, None),
        ("*:*:*", None, None),
    ],
)
def test_on_calendar_translates_to_cron_only_when_exact(expr: str, cron: str | None, tz: str | None) -> None:
    assert parse.calendar_to_cron(expr) == (cron, tz)


def test_an_untranslatable_calendar_keeps_its_text_in_the_description() -> None:
    files = {"s.timer": "[Timer]\nOnCalendar=*-*-* 03:00:30\n", "s.service": "[Service]\nExecStart=/bin/true\n"}
    entry = only(parse.parse_systemd_units(files, host="h", source_dir="/s"))
    assert entry.cron == ()
    assert parse.schedule_description(entry) == 'systemd calendar "*-*-* 03:00:30"'
    assert parse.next_run(entry, AFTER) is None


LIST_TIMERS = """\
NEXT                        LEFT          LAST                        PASSED       UNIT                 ACTIVATES
Sat 2025-03-08 22:00:00 KST 1h left       Sat 2025-03-08 21:00:00 KST 4min ago     stats.timer          stats.service
Sun 2025-03-09 00:00:00 UTC 11h left      n/a                         n/a          logrotate.timer      logrotate.service
n/a                         n/a           n/a                         n/a          certbot.timer        certbot.service

3 timers listed.
"""


def test_list_timers_rows_become_entries_and_next_is_read_with_the_host_zone() -> None:
    entries = parse.parse_list_timers(LIST_TIMERS, host="h")
    assert [(e.line, e.details["timer"], e.details["Unit"]) for e in entries] == [
        (2, "stats.timer", "stats.service"),
        (3, "logrotate.timer", "logrotate.service"),
        (4, "certbot.timer", "certbot.service"),
    ]
    assert parse.next_run(entries[0], AFTER, "Asia/Seoul") == datetime.fromisoformat("2025-03-08T22:00:00+09:00")
    # an abbreviation that is not the host zone's is not guessed
    assert parse.next_run(entries[0], AFTER, "Europe/Berlin") is None
    assert parse.next_run(entries[1], AFTER) == datetime.fromisoformat("2025-03-09T00:00:00+00:00")
    assert parse.next_run(entries[2], AFTER) is None


def test_parsing_is_pure_and_repeatable() -> None:
    text = "MAILTO=x\n0 3 * * * /a\n# 0 4 * * * /b\nH 1 * * * /c\n"
    assert user_crontab(text) == user_crontab(text)
