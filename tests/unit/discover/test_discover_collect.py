"""Collectors: a saved folder per host, this machine (on a fake root), and the
pure analysis they share."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from corral.discover import collect, parse
from corral.discover import inventory as inv

HOSTS = Path(__file__).resolve().parents[2] / "data" / "discover" / "hosts"
NOW = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)


def summary(inventory: inv.Inventory) -> list[tuple[str, str, int, str, tuple[str, ...]]]:
    found = inv.findings(inventory)
    return [
        (e.host, e.source, e.line, e.kind, tuple(sorted(f.code for f in fs)))
        for e, fs in zip(inventory.entries, found)
        if e.kind != parse.ENV
    ]


# --- a folder collected earlier


def test_collect_dir_reads_every_host_with_its_status_and_timezone() -> None:
    inventory = collect.collect_dir(HOSTS, now=NOW)
    assert [(h.name, h.status, h.timezone) for h in inventory.hosts] == [
        ("batch1", "ok", "Asia/Seoul"),  # from the /etc/localtime link
        ("db-old", "unreachable", None),  # from .corral/host.json
        ("legacy-php", "ok", "UTC"),
        ("web1", "ok", "Asia/Seoul"),
    ]
    assert inventory.host("db-old") == inv.Host(
        "db-old", "unreachable", "connection to db-old:22 timed out after 10 s", None, (), ()
    )
    assert inventory.collected_at == NOW


def test_collect_dir_finds_the_expected_entries_and_findings() -> None:
    # The whole tree, entry by entry: a change in collection or analysis shows here.
    assert summary(collect.collect_dir(HOSTS, now=NOW)) == [
        ("batch1", "batch1/etc/crontab", 16, "job", ()),
        ("batch1", "batch1/etc/cron.d/0hourly", 5, "job", ()),
        ("batch1", "batch1/etc/cron.d/stats", 3, "job", ("overlap", "same_command_on_hosts")),
        ("batch1", "batch1/var/spool/cron/batch", 2, "job", ()),
        ("batch1", "batch1/var/spool/cron/batch", 3, "job", ("no_output_redirection", "overlap")),
        ("batch1", "batch1/var/spool/cron/batch", 4, "job", ("no_output_redirection", "overlap")),
        ("batch1", "batch1/var/spool/cron/report", 1, "job", ("no_output_redirection",)),
        ("batch1", "batch1/var/spool/cron/report", 2, "job", ("no_output_redirection",)),
        ("batch1", "batch1/var/spool/cron/root", 1, "job", ("no_output_redirection", "runs_as_root")),
        ("batch1", "batch1/etc/anacrontab", 14, "job", ()),
        ("batch1", "batch1/etc/anacrontab", 15, "job", ()),
        ("batch1", "batch1/etc/anacrontab", 16, "job", ()),
        ("batch1", "batch1/etc/cron.hourly/0anacron", 1, "job", ()),
        ("legacy-php", "legacy-php/var/spool/cron/shop", 1, "job", ("crlf", "no_output_redirection")),
        ("legacy-php", "legacy-php/var/spool/cron/www-data", 3, "job",
         ("no_output_redirection", "overlap", "same_command_on_hosts")),
        ("legacy-php", "legacy-php/var/spool/cron/www-data", 4, "job", ("no_output_redirection",)),
        ("legacy-php", "legacy-php/var/spool/cron/www-data", 5, "job", ()),
        ("legacy-php", "legacy-php/var/spool/cron/www-data", 6, "job", ("no_output_redirection",)),
        ("web1", "web1/etc/crontab", 19, "job", ()),
        ("web1", "web1/etc/crontab", 20, "job", ()),
        ("web1", "web1/etc/crontab", 21, "job", ()),
        ("web1", "web1/etc/crontab", 22, "job", ()),
        ("web1", "web1/etc/crontab", 25, "job", ()),
        ("web1", "web1/etc/cron.d/backup.sh", 2, "job", ("cron_skips_file", "runs_as_root")),
        ("web1", "web1/etc/cron.d/digger", 3, "job", ("overlap", "same_command_on_hosts")),
        ("web1", "web1/etc/cron.d/digger", 4, "job", ()),
        ("web1", "web1/etc/cron.d/php", 14, "job", ()),
        ("web1", "web1/var/spool/cron/crontabs/digger", 5, "job", ("every_minute",)),
        ("web1", "web1/var/spool/cron/crontabs/digger", 6, "job", ("no_output_redirection",)),
        ("web1", "web1/var/spool/cron/crontabs/digger", 7, "disabled", ("disabled",)),
        ("web1", "web1/var/spool/cron/crontabs/digger", 8, "invalid", ("invalid",)),
        ("web1", "web1/var/spool/cron/crontabs/www-data", 1, "job",
         ("no_output_redirection", "overlap", "same_command_on_hosts")),
        ("web1", "web1/etc/anacrontab", 10, "job", ()),
        ("web1", "web1/etc/anacrontab", 11, "job", ()),
        ("web1", "web1/etc/anacrontab", 12, "job", ()),
        ("web1", "web1/etc/cron.daily/apt-compat", 1, "job", ()),
        ("web1", "web1/etc/cron.daily/backup.sh", 1, "job", ("run_parts_skips_name", "runs_as_root")),
        ("web1", "web1/etc/cron.daily/digger-cleanup", 1, "job", ("runs_as_root",)),
        ("web1", "web1/etc/cron.daily/logrotate", 1, "job", ()),
        ("web1", "web1/etc/systemd/system/digger-report.timer", 6, "job", ("persistent_timer",)),
        ("web1", "web1/etc/systemd/system/old-export.timer", 5, "disabled", ("disabled",)),
        ("web1", "web1/.corral/list-timers.txt", 2, "job", ()),
        ("web1", "web1/.corral/list-timers.txt", 3, "job", ()),
    ]  # fmt: skip


def test_the_path_decides_the_format_and_the_user() -> None:
    entries = {(e.source, e.line): e for e in collect.collect_dir(HOSTS, now=NOW).entries}
    spool = entries[("web1/var/spool/cron/crontabs/digger", 5)]
    assert (spool.origin, spool.user) == (parse.CRONTAB, "digger")
    rhel = entries[("batch1/var/spool/cron/report", 1)]
    assert (rhel.origin, rhel.user) == (parse.CRONTAB, "report")
    system = entries[("web1/etc/cron.d/digger", 3)]
    assert (system.origin, system.user) == (parse.SYSTEM_CRONTAB, "digger")


def test_run_parts_scripts_take_the_schedule_of_the_line_that_runs_them() -> None:
    entries = {(e.source, e.line): e for e in collect.collect_dir(HOSTS, now=NOW).entries}
    hourly = entries[("batch1/etc/cron.hourly/0anacron", 1)]
    assert hourly.cron == ("01 * * * *",)
    assert hourly.details["run_by"] == "batch1/etc/cron.d/0hourly:5"
    assert parse.next_run(hourly, NOW, "Asia/Seoul") == datetime.fromisoformat("2025-03-08T21:01:00+09:00")
    daily = entries[("web1/etc/cron.daily/digger-cleanup", 1)]
    assert daily.schedule == "1 (anacron)"
    assert daily.details["run_by"] == "web1/etc/anacrontab:10"
    assert daily.details["shebang"] == "/usr/bin/env python3"
    assert daily.command == "/etc/cron.daily/digger-cleanup"
    assert parse.schedule_description(daily) == (
        "Once a day (anacron), 5 min after anacron starts, via run-parts /etc/cron.daily"
    )


def test_list_timers_rows_merge_into_the_timer_they_describe() -> None:
    inventory = collect.collect_dir(HOSTS, now=NOW)
    timer = next(e for e in inventory.entries if e.source == "web1/etc/systemd/system/digger-report.timer")
    assert timer.details["LAST"] == "Fri 2025-03-07 00:30:00 UTC"
    rows = [e.details["timer"] for e in inventory.entries if e.origin == parse.LIST_TIMERS]
    assert rows == ["apt-daily.timer", "stats-hourly.timer"]


def test_to_json_of_the_tree_uses_paths_relative_to_the_folder() -> None:
    data = inv.to_json(collect.collect_dir(HOSTS, now=NOW))
    assert {e["source"].split("/", 1)[0] for e in data["entries"]} == {"batch1", "legacy-php", "web1"}
    runtimes = {e["runtime"] for e in data["entries"] if e["kind"] == "job" and e["command"]}
    assert {"python", "php", "go-or-binary", "shell"} <= runtimes


def test_collect_dir_refuses_what_is_not_a_folder_of_hosts(tmp_path: Path) -> None:
    with pytest.raises(collect.DiscoverError, match="not a directory"):
        collect.collect_dir(tmp_path / "missing")
    (tmp_path / "etc").mkdir()
    with pytest.raises(collect.DiscoverError, match="one host's root"):
        collect.collect_dir(tmp_path)


# --- this machine, on a fake root


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_collect_local_reads_debian_and_rhel_spools_and_system_files(tmp_path: Path) -> None:
    write(tmp_path, "/etc/crontab", "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    write(tmp_path, "/etc/cron.d/digger", "0 3 * * * digger /opt/digger/bin/extract >/dev/null 2>&1\n")
    write(tmp_path, "/var/spool/cron/crontabs/alice", "0 1 * * * /home/alice/a.py\n")
    write(tmp_path, "/var/spool/cron/bob", "0 2 * * * php /home/bob/b.php\n")
    write(tmp_path, "/var/spool/cron/atjobs/a0001", "not a crontab\n")
    write(tmp_path, "/etc/timezone", "Asia/Seoul\n")
    inventory = collect.collect_local(tmp_path, host="me", now=NOW)
    assert [(h.name, h.status, h.timezone) for h in inventory.hosts] == [("me", "ok", "Asia/Seoul")]
    jobs = [(e.source, e.user, e.command) for e in inventory.entries if e.kind == parse.JOB]
    assert jobs == [
        ("/etc/crontab", "root", "cd / && run-parts --report /etc/cron.hourly"),
        ("/etc/cron.d/digger", "digger", "/opt/digger/bin/extract >/dev/null 2>&1"),
        ("/var/spool/cron/bob", "bob", "php /home/bob/b.php"),
        ("/var/spool/cron/crontabs/alice", "alice", "/home/alice/a.py"),
    ]


def test_collect_local_on_an_empty_root_finds_nothing_and_does_not_fail(tmp_path: Path) -> None:
    inventory = collect.collect_local(tmp_path, host="empty", now=NOW)
    assert inventory.entries == ()
    assert inventory.hosts == (inv.Host("empty"),)


def test_an_unreadable_spool_makes_the_host_permission_denied_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "/etc/crontab", "0 3 * * * root /opt/x >/dev/null 2>&1\n")
    write(tmp_path, "/var/spool/cron/crontabs/alice", "0 1 * * * /a\n")
    spool = tmp_path / "var" / "spool" / "cron" / "crontabs"
    real_scandir = os.scandir

    def scandir(path: object) -> object:
        # crontabs is mode 1730 on Debian: only root may list it
        if Path(str(path)) == spool:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(collect.os, "scandir", scandir)
    inventory = collect.collect_local(tmp_path, host="me", now=NOW)
    host = inventory.hosts[0]
    assert host.status == inv.PERMISSION_DENIED
    assert host.error == ("cannot read /var/spool/cron/crontabs (permission denied; collect as root or with sudo)")
    assert host.file_errors == (("/var/spool/cron/crontabs", "permission denied (listing the directory)"),)
    assert [e.source for e in inventory.entries] == ["/etc/crontab"]


def test_an_unreadable_file_is_a_file_error_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "/var/spool/cron/crontabs/alice", "0 1 * * * /a\n")
    target = tmp_path / "var/spool/cron/crontabs/alice"
    target.chmod(0)
    if os.geteuid() == 0:
        # root reads files whatever their mode: refuse this one file as the kernel would for a user
        import builtins

        real_open = builtins.open

        def guarded_open(file: object, *args: object, **kwargs: object) -> object:
            if Path(str(file)) == target:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(collect, "open", guarded_open, raising=False)
    try:
        host = collect.collect_local(tmp_path, host="me", now=NOW).hosts[0]
    finally:
        target.chmod(0o600)
    assert host.status == inv.PERMISSION_DENIED
    assert host.file_errors == (("/var/spool/cron/crontabs/alice", "permission denied"),)


def test_symlinks_resolve_inside_the_root_and_masked_units_are_skipped(tmp_path: Path) -> None:
    unit_dir = tmp_path / "etc/systemd/system"
    write(tmp_path, "/opt/app/units/app.timer", "[Timer]\nOnCalendar=daily\n")
    write(tmp_path, "/etc/systemd/system/app.service", "[Service]\nExecStart=/opt/app/run\n")
    # an absolute link, as on the server: it must land under the fake root
    (unit_dir / "app.timer").symlink_to("/opt/app/units/app.timer")
    (unit_dir / "masked.timer").symlink_to("/dev/null")
    (unit_dir / "timers.target.wants").mkdir()
    (unit_dir / "timers.target.wants" / "app.timer").symlink_to("/etc/systemd/system/app.timer")
    inventory = collect.collect_local(tmp_path, host="me", now=NOW)
    assert [(e.source, e.kind, e.command) for e in inventory.entries] == [
        ("/etc/systemd/system/app.timer", "job", "/opt/app/run")
    ]


# --- analysis is pure


def test_analyse_host_needs_only_paths_and_texts() -> None:
    files = {
        "/etc/timezone": "Europe/Berlin\n",
        "/var/spool/cron/crontabs/carol": "0 6 * * * /home/carol/bin/report >/dev/null 2>&1\n",
        "/etc/systemd/system/r.timer": "[Timer]\nOnCalendar=daily\n",
        "/etc/systemd/system/r.service": "[Service]\nExecStart=/r\n",
        "/etc/unrelated": "ignored",
    }
    host, entries = collect.analyse_host("h1", files, errors={"/var/spool/cron/crontabs/dave": "Permission denied"})
    assert host.timezone == "Europe/Berlin"
    assert host.status == inv.PERMISSION_DENIED
    assert host.files == (
        "/etc/systemd/system/r.service",
        "/etc/systemd/system/r.timer",
        "/etc/timezone",
        "/var/spool/cron/crontabs/carol",
    )
    assert [(e.source, e.user) for e in entries] == [
        ("/var/spool/cron/crontabs/carol", "carol"),
        ("/etc/systemd/system/r.timer", "root"),
    ]
    assert collect.analyse_host("h1", files, "Asia/Seoul")[0].timezone == "Asia/Seoul"


def test_a_host_whose_reads_all_failed_is_in_error() -> None:
    host, entries = collect.analyse_host("h1", {}, errors={"/etc/crontab": "input/output error"})
    assert (host.status, host.error, entries) == (inv.ERROR, "/etc/crontab: input/output error", [])


# --- saving a collection


def test_write_tree_saves_a_collection_that_collect_dir_reads_back(tmp_path: Path) -> None:
    fetched = {
        "web9": {
            "/etc/crontab": "0 2 * * * digger /opt/x >/dev/null 2>&1\n",
            "/var/spool/cron/crontabs/alice": "0 1 * * * /a\r\n",
            "/etc/systemd/system/timers.target.wants/r.timer": "",
        },
        "db9": {collect.HOST_INFO_PATH: collect.host_info_text(inv.Host("db9", inv.AUTH_FAILED, "key refused"))},
    }
    written = collect.write_tree(fetched, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "db9/.corral/host.json",
        "web9/etc/crontab",
        "web9/etc/systemd/system/timers.target.wants/r.timer",
        "web9/var/spool/cron/crontabs/alice",
    ]
    inventory = collect.collect_dir(tmp_path, now=NOW)
    assert [(h.name, h.status, h.error) for h in inventory.hosts] == [
        ("db9", "auth_failed", "key refused"),
        ("web9", "ok", None),
    ]
    direct = collect.analyse_host("web9", fetched["web9"], source_prefix="web9")[1]
    assert list(inventory.entries) == direct
    assert parse.NOTE_CRLF in inventory.entries[-1].notes  # bytes kept as fetched


@pytest.mark.parametrize(
    ("host", "path"),
    [("../evil", "/etc/crontab"), ("web1", "etc/crontab"), ("web1", "/etc/../../x"), ("a/b", "/etc/crontab")],
)
def test_write_tree_refuses_paths_that_would_escape(tmp_path: Path, host: str, path: str) -> None:
    with pytest.raises(collect.DiscoverError):
        collect.write_tree({host: {path: "x"}}, tmp_path)
