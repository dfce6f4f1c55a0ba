"""The dashboard in a real headless Chromium (Debian's ``chromium`` package),
driven by Playwright, against a real server on 127.0.0.1.

Screenshots of each page go to ``$CORRAL_SCREENSHOTS`` (default: the test's
temporary directory) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from corral.store import Store, open_store
from corral.store import tables as t
from corral.web import accounts, serve_in_thread
from tests.e2e.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "correct horse battery"

if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install -e .[test])")

JOB_FILE = """\
timezone: Asia/Seoul
jobs:
  nightly-batch:
    description: Stages 31, 32, 33, 61, 62, 63 in sequence
    run: "echo nightly"
    schedule: "0 1 * * *"
  heartbeat:
    description: Proves the scheduler is alive
    run: ["echo", "alive"]
    schedule: "*/5 * * * *"
  report:
    description: Manual only
    run: "echo report"
  export:
    description: Export one region's sales
    run: "echo export"
    params:
      region: {type: choice, choices: [eu, us], default: eu}
      days: {type: int, default: 1}
      dry_run: {type: bool, default: false}
      label: {type: string, description: shown in the report title}
"""


@dataclass
class Site:
    url: str
    store: Store
    log_dir: Path
    shots: Path
    ids: dict[str, int]

    def log_of(self, job: str, run_id: int) -> Path:
        path = self.log_dir / job / f"{run_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def ran(store: Store, job: str, start: datetime, seconds: float, state: str = t.SUCCEEDED) -> int:
    run_id = store.create_run(job=job, state=t.PENDING, trigger="schedule", scheduled_for=start, now=start, slot=True)
    assert run_id is not None and store.claim(run_id, node="test-node", now=start)
    if state != t.RUNNING:
        assert store.transition(run_id, state, now=start + timedelta(seconds=seconds), exit_code=0 if state == t.SUCCEEDED else 1)
    return run_id


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ids: dict[str, int] = {}
    for i in range(12):
        ids[f"hb{i}"] = ran(store, "heartbeat", now - timedelta(minutes=5 * (12 - i)), 2 + i % 4, t.FAILED if i == 7 else t.SUCCEEDED)
    slot = now - timedelta(hours=30)
    ids["long"] = ran(store, "nightly-batch", slot, 26 * 3600)
    ids["skipped"] = store.create_run(  # type: ignore[assignment]
        job="nightly-batch", state=t.SKIPPED, trigger="schedule", scheduled_for=slot + timedelta(days=1),
        now=slot + timedelta(days=1), reason="overlap", slot=True,
        message=f"previous run {ids['long']} of nightly-batch still running for 24h00m",
    )
    ids["running"] = ran(store, "nightly-batch", now - timedelta(minutes=3), 0, t.RUNNING)
    accounts.add_user(store, "olga", "operator", PASSWORD, now=now)
    shots = Path(os.environ.get("CORRAL_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    server = serve_in_thread(config_path, url, port=0)
    try:
        yield Site(server.url, store, tmp_path / ".corral" / "logs", shots, ids)
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    page: Any
    console: list[str]
    errors: list[str]
    dialogs: list[str]


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(15_000)
    opened = Tab(page, [], [], [])
    page.on("console", lambda msg: opened.console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        opened.dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    try:
        yield opened
    finally:
        context.close()
    # Every page the test opened ran without a CSP violation or a script error.
    violations = [m for m in opened.console if "Content Security Policy" in m or "Refused to" in m]
    assert not violations, violations
    assert not opened.errors, opened.errors


def sign_in(tab: Tab, site: Site, path: str = "/") -> None:
    tab.page.goto(site.url + path)
    assert "/login" in tab.page.url
    tab.page.fill("#name", "olga")
    tab.page.fill("#password", PASSWORD)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(re.compile(re.escape(site.url + path) + r"$"))


def test_signing_in_leads_to_the_jobs_page(tab: Tab, site: Site) -> None:
    tab.page.goto(site.url + "/")
    tab.page.screenshot(path=str(site.shots / "login.png"), full_page=True)
    sign_in(tab, site)
    rows = tab.page.locator("tr.job-row")
    assert rows.count() == 4
    assert "every day at 01:00" in tab.page.inner_text("table.jobs")
    assert tab.page.locator("svg.spark").count() >= 2
    assert "olga" in tab.page.inner_text("header")
    tab.page.screenshot(path=str(site.shots / "jobs.png"), full_page=True)


def test_the_trigger_button_posts_with_csrf_and_creates_a_run(tab: Tab, site: Site) -> None:
    sign_in(tab, site, "/jobs/report")
    before = {r.id for r in site.store.list_runs(job="report")}
    tab.page.click("text=Trigger now")
    tab.page.wait_for_selector(".banner.notice")
    assert "triggered" in tab.page.inner_text(".banner.notice")
    created = [r for r in site.store.list_runs(job="report") if r.id not in before]
    assert len(created) == 1 and created[0].trigger == "manual"
    entries = site.store.list_audit()
    assert (entries[0].actor, entries[0].action, entries[0].run_id) == ("olga", "trigger", created[0].id)
    tab.page.screenshot(path=str(site.shots / "job-triggered.png"), full_page=True)
    tab.page.goto(site.url + "/audit")
    assert "olga" in tab.page.inner_text("table.audit")
    tab.page.screenshot(path=str(site.shots / "audit.png"), full_page=True)


def test_the_parameter_form_triggers_a_run_with_the_values_chosen(tab: Tab, site: Site) -> None:
    sign_in(tab, site, "/jobs/export")
    form = tab.page.locator("form.trigger-form")
    assert form.locator("#param-region").input_value() == "eu"  # defaults are filled in
    assert form.locator("#param-days").input_value() == "1"
    form.locator("#param-region").select_option("us")
    form.locator("#param-days").fill("5")
    form.locator("#param-dry_run").select_option("true")
    form.locator("#param-label").fill("Q1 'final' $(whoami)")
    tab.page.screenshot(path=str(site.shots / "job-params.png"), full_page=True)
    form.locator("button[type=submit]").click()
    tab.page.wait_for_selector(".banner.notice")
    assert "triggered" in tab.page.inner_text(".banner.notice")
    (run,) = site.store.list_runs(job="export")
    assert run.params is not None
    assert json.loads(run.params) == {"region": "us", "days": 5, "dry_run": True, "label": "Q1 'final' $(whoami)"}
    assert "label=Q1 'final' $(whoami)" in (site.store.list_audit()[0].detail or "")


def test_a_log_printing_a_script_tag_shows_it_as_text(tab: Tab, site: Site) -> None:
    run_id = site.ids["hb11"]
    site.log_of("heartbeat", run_id).write_bytes(
        b"starting\n<script>alert('owned')</script>\n<img src=x onerror=alert(1)>\n\x1b[31mred alert\x1b[0m\n"
    )
    sign_in(tab, site, f"/runs/{run_id}")
    text = tab.page.inner_text("#log")
    assert "<script>alert('owned')</script>" in text and "<img src=x onerror=alert(1)>" in text
    assert "red alert" in text and "\x1b" not in text
    assert tab.page.locator("#log script, #log img").count() == 0
    assert tab.dialogs == []
    tab.page.screenshot(path=str(site.shots / "run-log.png"), full_page=True)


def test_the_log_of_a_running_run_arrives_live_and_the_page_sees_it_end(tab: Tab, site: Site) -> None:
    run_id = site.ids["running"]
    log = site.log_of("nightly-batch", run_id)
    log.write_bytes(b"stage 31 started\n")
    sign_in(tab, site, f"/runs/{run_id}")
    assert "stage 31 started" in tab.page.inner_text("#log")
    wait_for(lambda: "live" in tab.page.inner_text("#tail-status"), what="the live tail to start")
    with log.open("ab") as fh:
        fh.write(b"stage 32 started\n")
    # (Polled from here: wait_for_function would need eval, which the dashboard's CSP rightly forbids.)
    wait_for(lambda: "stage 32 started" in tab.page.inner_text("#log"), timeout=10, what="the new line over SSE")
    tab.page.screenshot(path=str(site.shots / "run-live.png"), full_page=True)
    site.store.transition(run_id, t.SUCCEEDED, now=datetime.now(timezone.utc), exit_code=0)
    wait_for(lambda: "ended" in tab.page.inner_text("#tail-status"), timeout=10, what="the end event")
    # The page reloads itself once the run ended, showing its final state without the tail.
    tab.page.wait_for_selector("h1 .state-succeeded")


def test_the_theme_follows_the_browser_preference(tab: Tab, site: Site) -> None:
    sign_in(tab, site, "/timeline")
    background = "getComputedStyle(document.body).backgroundColor"
    assert tab.page.evaluate(background) == "rgb(251, 251, 250)"
    tab.page.screenshot(path=str(site.shots / "timeline-light.png"), full_page=True)
    tab.page.emulate_media(color_scheme="dark")
    assert tab.page.evaluate(background) == "rgb(21, 24, 28)"
    tab.page.screenshot(path=str(site.shots / "timeline-dark.png"), full_page=True)
    tab.page.goto(site.url + "/")
    tab.page.screenshot(path=str(site.shots / "jobs-dark.png"), full_page=True)
    tab.page.goto(site.url + "/jobs/nightly-batch")
    tab.page.screenshot(path=str(site.shots / "job-dark.png"))


def test_cancelling_a_running_run_from_its_page_stops_its_process(browser: Any, tmp_path: Path) -> None:
    """A separate ``corral up`` process runs the job; the dashboard's cancel wakes
    it (SIGUSR1) instead of waiting for its store poll, a minute away on SQLite."""
    import json
    import signal

    from corral import config
    from corral.store import open_store
    from tests.e2e.helpers import pid_alive, run_cli, start_corral_up, write_config

    path = write_config(tmp_path, "jobs:\n  sleeper:\n    description: Sleeps for five minutes\n    run: \"sleep 300\"\n")
    log = tmp_path / "up.log"
    up = start_corral_up(path, log)
    url = config.load(path).settings.store_url
    store = open_store(url)
    try:
        wait_for(lambda: "corral up: 1 job(s)" in log.read_text(), what="corral up to start")
        run_id = json.loads(run_cli(path, "trigger", "sleeper", "--json").stdout)["id"]
        pid = wait_for(lambda: store.get_run(run_id).pid, what="the sleeper to start")
        assert pid_alive(pid)
        accounts.add_user(store, "olga", "operator", PASSWORD, now=datetime.now(timezone.utc))
        server = serve_in_thread(path, url, port=0)
        context = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda dialog: dialog.accept())
            opened = Tab(page, [], errors, [])
            sign_in(opened, Site(server.url, store, tmp_path, tmp_path, {}), f"/runs/{run_id}")
            assert "running" in page.inner_text("h1")
            page.click("text=Cancel run")
            wait_for(lambda: store.get_run(run_id).state == t.CANCELLED, timeout=20, what="the run to end cancelled")
            wait_for(lambda: not pid_alive(pid), timeout=10, what="the sleeper's process to go")
            page.goto(f"{server.url}/runs/{run_id}")
            page.wait_for_selector("h1 .state-cancelled")
            assert [e.action for e in store.list_audit()][:1] == ["cancel"]
            assert errors == []
        finally:
            context.close()
            server.stop()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        store.close()


def test_a_skipped_slot_shows_with_its_reason_on_the_timeline(tab: Tab, site: Site) -> None:
    slot = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    skipped = site.store.create_run(
        job="heartbeat", state=t.SKIPPED, trigger="schedule", scheduled_for=slot, now=slot,
        reason="paused", slot=True, message="heartbeat was paused by olga",
    )
    assert skipped is not None
    sign_in(tab, site, "/timeline?range=3d")
    # A diamond on the chart, its tooltip naming the reason ...
    titles = tab.page.locator("svg polygon.marker title").all_text_contents()
    assert any("paused" in title for title in titles), titles
    assert any("overlap" in title for title in titles), titles
    # ... and a row below it with the reason and message in words.
    row = tab.page.locator("table.runs tr", has=tab.page.locator(f"a[href='/runs/{skipped}']"))
    assert "paused" in row.inner_text() and "heartbeat was paused by olga" in row.inner_text()
    long_row = tab.page.locator("table.runs tr", has=tab.page.locator(f"a[href='/runs/{site.ids['skipped']}']"))
    assert "overlap" in long_row.inner_text() and "still running" in long_row.inner_text()
    tab.page.screenshot(path=str(site.shots / "timeline.png"), full_page=True)


def test_html_and_ansi_colours_in_a_log_are_shown_safely_and_readably(tab: Tab, site: Site) -> None:
    run_id = site.ids["hb10"]
    site.log_of("heartbeat", run_id).write_bytes(
        b"<b>bold?</b> & <i>done</i>\n"
        b"\x1b[1;32mOK\x1b[0m 12 rows \x1b[33mwarn\x1b[0m <tag>\n"
        b"\x1b[31m<script>alert(2)</script>\x1b[0m\n"
    )
    sign_in(tab, site, f"/runs/{run_id}")
    text = tab.page.inner_text("#log")
    assert "<b>bold?</b> & <i>done</i>" in text
    assert "OK 12 rows warn <tag>" in text
    assert "<script>alert(2)</script>" in text
    assert "\x1b" not in text and "[0m" not in text and "[1;32m" not in text
    assert tab.page.locator("#log b, #log i, #log script, #log tag").count() == 0
    # Colours are rendered as styled spans (or dropped), never as raw escape bytes.
    html = tab.page.inner_html("#log")
    assert "\x1b" not in html and "&lt;b&gt;" in html
    assert tab.dialogs == []


def test_the_job_and_discovery_pages_render_for_a_person(tab: Tab, site: Site) -> None:
    from corral.discover import inventory as inv
    from corral.discover import parse

    crontab = (
        "MAILTO=ops@example.com\n* * * * * /usr/local/bin/poll.sh\n30 2 * * * /opt/etl/nightly.sh >> /var/log/etl.log 2>&1\n"
        "#15 3 * * * /opt/old/report.sh >/dev/null 2>&1\n61 * * * * /bin/broken\n"
    )
    entries = parse.parse_crontab(crontab, host="db1", source="crontab:app", user="app")
    inventory = inv.Inventory((inv.Host("db1", timezone="Asia/Seoul"),), tuple(entries), datetime.now(timezone.utc))
    folder = site.log_dir.parent / "inventories"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db1.json").write_text(json.dumps(inv.to_json(inventory)))
    sign_in(tab, site, "/jobs/nightly-batch")
    assert "overlap" in tab.page.inner_text("main")  # the skipped slot and its reason in the history
    tab.page.screenshot(path=str(site.shots / "job.png"))
    tab.page.goto(site.url + "/discovery")
    assert "/usr/local/bin/poll.sh" in tab.page.inner_text("main")
    tab.page.screenshot(path=str(site.shots / "discovery.png"), full_page=True)
