"""Import round trip: discover -> import -> validate -> the imported jobs fire
exactly when cron would have fired the original lines, over the whole
discovery corpus and the saved hosts tree; plus the `corral import` CLI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from corral import cli, config, schedule
from corral.discover import collect, importer, parse
from corral.discover import inventory as inv
from tests.unit.discover.test_discover_corpus import _cases, _parse

DATA = Path(__file__).resolve().parents[1] / "data" / "discover"
NOW = datetime(2025, 3, 8, 12, 0, tzinfo=timezone.utc)
# The eve of New York's spring-forward, and the weeks of Europe's and America's fall-back.
STARTS = (NOW, datetime(2025, 10, 25, tzinfo=timezone.utc), datetime(2025, 11, 1, tzinfo=timezone.utc))


def corpus_inventory() -> inv.Inventory:
    entries = [e for kind, path in _cases() if kind in ("spool", "system", "systemd") for e in _parse(kind, path)]
    return inv.Inventory((inv.Host("h", timezone="Asia/Seoul"),), tuple(entries), NOW)


def assert_same_fire_times(inventory: inv.Inventory, result: importer.ImportResult) -> None:
    cfg = config.loads(result.text, environ={})
    assert sorted(cfg.jobs) == sorted(job.name for job in result.jobs)
    for job in result.jobs:
        spec = cfg.jobs[job.name]
        for start in STARTS:
            got = schedule.next_times(list(spec.schedules), start, 30)
            host_tz = inventory.host_timezone(job.entry.host)
            cron = parse.fire_times(job.entry, start, start + timedelta(days=366 * 40), host_tz, limit=30)
            want = sorted({moment.astimezone(timezone.utc) for moment in cron})[:30]
            assert got == want, f"{job.name} ({job.entry.raw!r}) from {start}"


def test_every_importable_corpus_line_fires_as_cron_would() -> None:
    inventory = corpus_inventory()
    result = importer.import_inventory(inventory)
    assert len(result.jobs) > 80
    assert_same_fire_times(inventory, result)


def test_the_saved_hosts_import_through_json_and_fire_as_cron_would() -> None:
    inventory = inv.from_json(json.loads(json.dumps(inv.to_json(collect.collect_dir(DATA / "hosts", now=NOW)))))
    result = importer.import_inventory(inventory)
    assert_same_fire_times(inventory, result)


def test_imported_jobs_keep_timezone_env_shell_stdin_and_labels() -> None:
    text = (
        "SHELL=/bin/bash\nPATH=/usr/local/bin:/usr/bin:/bin\nMAILTO=ops@example.com\nCRON_TZ=America/New_York\n"
        "30 2 * * * /opt/etl/run.sh --full >> /var/log/etl.log 2>&1\n"
        "0 9 * * mon-fri mail -s hello team%Good morning%Team\n"
    )
    entries = parse.parse_crontab(text, host="web1", source="/var/spool/cron/crontabs/etl", user="etl")
    inventory = inv.Inventory((inv.Host("web1", timezone="Asia/Seoul"),), tuple(entries), NOW)
    result = importer.import_inventory(inventory)
    jobs = yaml.safe_load(result.text)["jobs"]
    assert jobs["run"] == {
        "run": ["/bin/bash", "-c", "/opt/etl/run.sh --full >> /var/log/etl.log 2>&1"],
        "schedule": "30 2 * * *",
        "timezone": "America/New_York",
        "overlap": "skip",
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        "labels": {"host": "web1", "user": "etl"},
        "description": "imported from web1 /var/spool/cron/crontabs/etl:5",
    }
    assert jobs["mail-hello"]["run"] == ["/bin/bash", "-c", "printf '%s' 'Good morning\nTeam' | { mail -s hello team\n}"]
    assert "# from web1 /var/spool/cron/crontabs/etl:5 (user etl)" in result.text
    assert "cron mailed its output to ops@example.com" in result.text


def test_names_are_readable_and_unique_across_hosts() -> None:
    lines = {
        "web1": "0 1 * * * /usr/bin/php /var/www/cron/sync_stock.php\n5 1 * * * /usr/bin/php /var/www/cron/sync_stock.php --again\n",
        "web2": "0 1 * * * /usr/bin/php /var/www/cron/sync_stock.php\n0 2 * * * cd /srv && php artisan report:monthly\n",
    }
    entries = [e for host, text in lines.items() for e in parse.parse_crontab(text, host=host, source="s", user="u")]
    inventory = inv.Inventory((inv.Host("web1"), inv.Host("web2")), tuple(entries), NOW)
    assert [job.name for job in importer.import_inventory(inventory).jobs] == [
        "sync_stock-web1",
        "sync_stock-web1-2",
        "sync_stock-web2",
        "report-monthly",
    ]


def test_lines_corral_cannot_reproduce_are_listed_with_the_reason() -> None:
    text = "@reboot /opt/start.sh\n# 0 4 * * * /opt/old.sh\nH 2 * * * /opt/jenkins.sh\n0 3 * * * /opt/keep.sh\n"
    entries = parse.parse_crontab(text, host="h", source="s", user="u")
    result = importer.import_inventory(inv.Inventory((inv.Host("h"),), tuple(entries), NOW))
    assert [job.name for job in result.jobs] == ["keep"]
    reasons = [item.reason for item in result.skipped]
    assert reasons[0].startswith("@reboot runs when cron starts; corral has no at-boot schedule")
    assert reasons[1] == "commented out on the host, so it never runs"
    assert reasons[2].startswith('cron rejects this line: minute field "H"')
    assert "# h s:1: @reboot runs when cron starts" in result.text and "#     @reboot /opt/start.sh" in result.text


def test_monitor_only_writes_monitors_with_their_ping_lines() -> None:
    entries = parse.parse_crontab("MAILTO=ops@example.com\n0 3 * * * /opt/keep.sh --all\n", host="h", source="s", user="u")
    result = importer.import_inventory(inv.Inventory((inv.Host("h"),), tuple(entries), NOW), monitor_only=True)
    cfg = config.loads(result.text, environ={})
    keep = cfg.jobs["keep"]
    assert keep.monitor is not None and keep.monitor.grace == timedelta(minutes=30) and keep.monitor.id
    assert keep.command == () and keep.manual_only and keep.enabled  # corral watches it, never runs it
    assert [s.text for s in keep.schedules] == ["0 3 * * *"]
    assert f"corral wrap --ping $CORRAL_URL/ping/{keep.monitor.id} -- /opt/keep.sh --all" in result.text
    assert "corral does not run it" in result.text
    again = importer.import_inventory(inv.Inventory((inv.Host("h"),), tuple(entries), NOW), monitor_only=True)
    assert config.loads(again.text, environ={}).jobs["keep"].monitor.id != keep.monitor.id  # random: a secret


def test_nothing_importable_is_an_error_that_says_why() -> None:
    entries = parse.parse_crontab("@reboot /opt/start.sh\n", host="h", source="s", user="u")
    with pytest.raises(importer.ImportFailed, match="nothing to import.*@reboot"):
        importer.import_inventory(inv.Inventory((inv.Host("h"),), tuple(entries), NOW))


# --- the CLI


def corral(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_discover_from_dir_then_import_then_validate_and_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_html, job_file = tmp_path / "inv.json", tmp_path / "report.html", tmp_path / "corral.yaml"
    code, out, err = corral(capsys, "discover", "--from-dir", str(DATA / "hosts"), "--json", str(out_json), "--html", str(out_html))
    assert code == 0, err
    assert "40 job(s) on 4 host(s)" in out and "db-old: unreachable" in out and "4 host(s) read, 1 failed" in err
    data = json.loads(out_json.read_text())
    assert {h["name"]: h["status"] for h in data["hosts"]}["db-old"] == "unreachable"
    assert {"host", "user", "source", "line", "kind", "schedule", "command", "timezone", "reason", "findings"} <= set(data["entries"][0])
    html = out_html.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html and "<link" not in html
    code, _, err = corral(capsys, "import", str(out_json), "-o", str(job_file), "--overlap", "queue_one")
    assert code == 0 and "21 job(s) imported" in err
    assert corral(capsys, "validate", "-c", str(job_file))[0] == 0
    code, out, _ = corral(capsys, "next", "stats-monthly", "-n", "2", "--from", "2025-03-08T12:00:00Z", "--json", "-c", str(job_file))
    assert json.loads(out)["next"] == ["2025-04-01T04:00:00+09:00", "2025-05-01T04:00:00+09:00"]
    assert "overlap: queue_one" in job_file.read_text()
    code, _, err = corral(capsys, "import", str(out_json), "-o", str(job_file))
    assert code == 1 and "already exists; pass --force" in err


def test_the_html_report_escapes_what_it_found(tmp_path: Path) -> None:
    from corral.discover import report

    entries = parse.parse_crontab('0 1 * * * echo "<script>alert(1)</script>" > /tmp/x\n', host="h<b>", source="s", user="u")
    html = report.render(inv.Inventory((inv.Host("h<b>", inv.ERROR, "bad <i>thing</i>"),), tuple(entries), NOW))
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "h&lt;b&gt;" in html and "bad &lt;i&gt;thing&lt;/i&gt;" in html


def test_discover_without_anything_to_read_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = corral(capsys, "discover")
    assert code == 2 and "--inventory, --hosts-file, --local or --from-dir" in err


def test_import_of_a_file_that_is_not_an_inventory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    code, _, err = corral(capsys, "import", str(bad), "-o", str(tmp_path / "c.yaml"))
    assert code == 1 and "is not a corral discover inventory" in err
