"""The dashboard's trigger-with-parameters form, retry buttons, a pipeline
run's step graph and the Discovery page, driven in-process against a real
SQLite store and job file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from corral import cli
from corral.clock import FakeClock
from corral.discover import inventory as inv
from corral.discover import parse
from corral.store import Store, open_store
from corral.store import tables as t
from corral.web import charts, create_app
from tests.integration.test_web import BASE, TestClient, error_of, executed

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)

JOB_FILE = """\
timezone: UTC
jobs:
  export:
    description: Export one region's sales
    run: "echo export"
    params:
      region: {type: choice, choices: [eu, us], default: eu, description: where to export}
      days: {type: int, default: 1}
      dry_run: {type: bool, default: false}
      label: {type: string}
  pipe:
    steps:
      - {name: fetch, run: "echo f"}
      - {name: parse, run: "echo p", needs: fetch}
      - {name: stats, run: "echo s", needs: fetch}
      - {name: publish, run: "echo pub", needs: [parse, stats]}
  plain:
    run: "echo plain"
"""

CRONTAB = """\
MAILTO=ops@example.com
* * * * * /usr/local/bin/poll.sh
30 2 * * * /opt/etl/nightly.sh >> /var/log/etl.log 2>&1
#15 3 * * * /opt/old/report.sh >/dev/null 2>&1
61 * * * * /bin/broken
"""


@dataclass
class Site:
    client: TestClient
    store: Store
    config_path: Path

    def csrf(self, page: str) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.client.get(page).text)
        assert match, f"no CSRF field on {page}"
        return match.group(1)

    def form(self, url: str, page: str, fields: dict[str, str]) -> object:
        return self.client.post(
            url, data={"csrf": self.csrf(page), "next": page, **fields}, follow_redirects=False
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    app = create_app(config_path, url, clock=FakeClock(NOW))
    with TestClient(app, base_url=BASE) as client:
        yield Site(client, store, config_path)
    store.close()


# -- trigger with parameters ---------------------------------------------------------


def test_the_trigger_api_checks_parameters_and_fills_in_defaults(site: Site) -> None:
    response = site.client.post("/api/jobs/export/trigger", json={"params": {"label": "q1; rm -rf /", "days": 7}})
    assert response.status_code == 201
    assert response.json()["params"] == {"days": 7, "dry_run": False, "label": "q1; rm -rf /", "region": "eu"}
    stored = site.store.get_run(response.json()["id"])
    assert json.loads(stored.params or "{}")["label"] == "q1; rm -rf /"
    audit = site.client.get("/api/audit").json()["entries"][0]
    assert audit["action"] == "trigger" and "label=q1; rm -rf /" in audit["detail"]


@pytest.mark.parametrize(
    "params, words",
    [
        ({"label": "x", "days": "many"}, "parameter days: 'many' is not a whole number"),
        ({"label": "x", "region": "asia"}, "parameter region: 'asia' is not one of eu, us"),
        ({"label": "x", "dry_run": "perhaps"}, "parameter dry_run: 'perhaps' is not true or false"),
        ({"label": "x", "regoin": "eu"}, 'unknown parameter "regoin"; did you mean "region"?'),
        ({}, "parameter label is required"),
        ({"label": ["a"]}, "parameter label: ['a'] is not text"),
        ({"label": "x", "days": 1.5}, "parameter days: 1.5 is not a whole number"),
    ],
)
def test_bad_parameters_are_400_with_the_reason_and_create_nothing(site: Site, params: dict[str, object], words: str) -> None:
    response = site.client.post("/api/jobs/export/trigger", json={"params": params})
    assert response.status_code == 400
    assert words in error_of(response)
    assert site.store.list_runs(job="export") == []


def test_a_parameter_posted_to_a_job_without_any_is_a_400_page(site: Site) -> None:
    response = site.form("/jobs/plain/trigger", "/jobs/plain", {"param.day": "1"})
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "job plain takes no parameters" in response.text  # type: ignore[attr-defined]


def test_the_job_api_describes_the_parameters_and_steps(site: Site) -> None:
    data = site.client.get("/api/jobs/export").json()
    assert data["params"][0] == {
        "name": "region", "type": "choice", "default": "eu", "required": False, "choices": ["eu", "us"],
        "description": "where to export",
    }
    assert [p["name"] for p in data["params"] if p["required"]] == ["label"]
    steps = site.client.get("/api/jobs/pipe").json()["steps"]
    assert steps[-1] == {"name": "publish", "needs": ["parse", "stats"]}


def test_params_must_be_an_object(site: Site) -> None:
    response = site.client.post("/api/jobs/export/trigger", json={"params": ["label=x"]})
    assert response.status_code == 400 and "params must be a JSON object" in error_of(response)


def test_the_job_page_has_one_typed_field_per_parameter_with_defaults(site: Site) -> None:
    html = site.client.get("/jobs/export").text
    form = html[html.index('<form class="trigger-form"') : html.index("</form>", html.index('<form class="trigger-form"'))]
    assert re.search(r'<select id="param-region" name="param.region">\s*<option value="eu" selected>eu</option>', form)
    assert '<input id="param-days" name="param.days" type="number" step="1" inputmode="numeric" value="1">' in form
    assert re.search(r'name="param.dry_run">\s*<option value="true">true</option>\s*<option value="false" selected>', form)
    assert 'name="param.label" type="text" maxlength="4096" value="" required>' in form
    assert "where to export" in form
    # A job without parameters keeps its one-click button.
    assert 'class="trigger-form"' not in site.client.get("/jobs/plain").text


def test_the_parameter_form_triggers_a_run_with_typed_values(site: Site) -> None:
    fields = {"param.region": "us", "param.days": "3", "param.dry_run": "true", "param.label": "<b>q1</b>"}
    response = site.form("/jobs/export/trigger", "/jobs/export", fields)
    assert response.status_code == 303  # type: ignore[attr-defined]
    (run,) = site.store.list_runs(job="export")
    assert json.loads(run.params or "{}") == {"region": "us", "days": 3, "dry_run": True, "label": "<b>q1</b>"}
    page = site.client.get(f"/runs/{run.id}").text
    assert "&lt;b&gt;q1&lt;/b&gt;" in page and "<b>q1</b>" not in page


def test_an_emptied_number_field_takes_its_default(site: Site) -> None:
    site.form("/jobs/export/trigger", "/jobs/export", {"param.days": "", "param.label": "x"})
    (run,) = site.store.list_runs(job="export")
    assert json.loads(run.params or "{}")["days"] == 1


def test_a_bad_value_in_the_form_shows_the_form_again_with_the_reason_and_the_values_typed(site: Site) -> None:
    fields = {"param.days": "3x", "param.label": "<i>mine</i>", "param.region": "us"}
    response = site.form("/jobs/export/trigger", "/jobs/export", fields)
    assert response.status_code == 400  # type: ignore[attr-defined]
    html = response.text  # type: ignore[attr-defined]
    assert "Not triggered: parameter days: &#39;3x&#39; is not a whole number" in html
    assert 'value="3x"' in html and 'value="&lt;i&gt;mine&lt;/i&gt;"' in html
    assert '<option value="us" selected>' in html
    assert '<input type="hidden" name="next" value="/jobs/export">' in html
    assert site.store.list_runs(job="export") == []


# -- steps, result and retry ---------------------------------------------------------------


def pipeline_run(store: Store, states: dict[str, str]) -> int:
    """A finished run of ``pipe`` whose steps ended in ``states``, with outputs and a result."""
    start = NOW - timedelta(hours=1)
    failed = any(state != t.SUCCEEDED for state in states.values())
    run_id = executed(
        store, "pipe", start, 300, state=t.FAILED if failed else t.SUCCEEDED, exit_code=1 if failed else 0, slot=False
    )
    rows = []
    for position, (name, state) in enumerate(states.items()):
        ran = state in (t.SUCCEEDED, t.FAILED)
        rows.append(
            dict(
                name=name,
                position=position,
                state=state,
                started_at=start + timedelta(seconds=60 * position) if ran else None,
                ended_at=start + timedelta(seconds=60 * position + 42) if ran else None,
                exit_code=(0 if state == t.SUCCEEDED else 3) if ran else None,
                peak_rss=50 * 1048576 if ran else None,
                cpu_seconds=1.5 if ran else None,
                outputs=json.dumps({"rows": "1200"}) if name == "fetch" else None,
                reason="needs_failed" if state == t.SKIPPED else None,
                message="stats failed" if state == t.SKIPPED else None,
            )
        )
    store.create_steps(run_id, rows, now=start)
    store.set_run_result(run_id, outputs={"rows": "1200"}, result={"verdict": "fail", "note": "stats crashed"}, now=NOW)
    return run_id


FAILED_STEPS = {"fetch": t.SUCCEEDED, "parse": t.SUCCEEDED, "stats": t.FAILED, "publish": t.SKIPPED}


def test_step_depth_is_the_longest_chain_of_needs() -> None:
    nodes = [
        charts.Node("a", (), "succeeded", "", ""),
        charts.Node("b", ("a",), "succeeded", "", ""),
        charts.Node("c", ("a", "b"), "failed", "", ""),
        charts.Node("d", ("gone",), "pending", "", ""),
    ]
    assert charts.step_depths(nodes) == {"a": 0, "b": 1, "c": 2, "d": 0}
    graph = charts.step_graph(nodes)
    assert graph is not None and len(graph.arrows) == 3
    boxes = {b.name: b for b in graph.boxes}
    assert boxes["a"].x < boxes["b"].x < boxes["c"].x and boxes["d"].x == boxes["a"].x
    assert boxes["d"].y > boxes["a"].y
    assert charts.step_graph([]) is None


def test_the_run_page_draws_the_steps_as_a_graph_with_timings_and_the_result(site: Site) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    html = site.client.get(f"/runs/{run_id}").text
    svg = html[html.index('<svg class="steps"') : html.index("</svg>", html.index('<svg class="steps"'))]
    boxes = re.findall(r'data-step="(\w+)" data-state="(\w+)"', svg)
    assert boxes == [("fetch", "succeeded"), ("parse", "succeeded"), ("stats", "failed"), ("publish", "skipped")]
    assert svg.count('class="need"') == 4  # parse, stats <- fetch; publish <- parse, stats
    assert "failed · 42s · exit 3" in svg
    table = html[html.index('<table class="steps">') :]
    assert "50.0 MiB" in table and "rows=1200" in table and "needs failed" in table
    assert 'id="step-stats"' in table
    assert 'badge verdict-fail">fail</span> stats crashed' in html
    assert "Retry from failed" in html and "Retry all" in html


def test_a_step_log_is_served_as_plain_text(site: Site, tmp_path: Path) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    log = tmp_path / "stats.log"
    log.write_bytes(b"<script>alert(1)</script>\nTraceback: boom\n")
    stats = next(s for s in site.store.get_steps(run_id) if s.name == "stats")
    site.store.transition_steps([(stats.id, t.FAILED, {"log_path": str(log)})], now=NOW, expect=(t.FAILED,))
    assert f'href="/runs/{run_id}/steps/stats/log">log</a>' in site.client.get(f"/runs/{run_id}").text
    response = site.client.get(f"/runs/{run_id}/steps/stats/log")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("<script>alert(1)</script>")
    assert site.client.get(f"/runs/{run_id}/steps/fetch/log").status_code == 404  # no log recorded
    assert site.client.get(f"/runs/{run_id}/steps/nope/log").status_code == 404


def test_the_steps_api_gives_needs_timings_outputs_and_result(site: Site) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    data = site.client.get(f"/api/runs/{run_id}/steps").json()
    assert [(s["name"], s["state"], s["needs"]) for s in data["steps"]] == [
        ("fetch", "succeeded", []),
        ("parse", "succeeded", ["fetch"]),
        ("stats", "failed", ["fetch"]),
        ("publish", "skipped", ["parse", "stats"]),
    ]
    assert data["steps"][2]["duration"] == 42 and data["steps"][2]["exit_code"] == 3
    assert data["steps"][0]["outputs"] == {"rows": "1200"}
    assert data["result"] == {"verdict": "fail", "note": "stats crashed"} and data["outputs"] == {"rows": "1200"}
    plain = executed(site.store, "plain", NOW - timedelta(minutes=5), 3)
    assert site.client.get(f"/api/runs/{plain}/steps").json()["steps"] == []
    assert site.client.get("/api/runs/999/steps").status_code == 404


def test_retry_from_failed_creates_a_linked_attempt_like_the_cli(site: Site) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    response = site.client.post(f"/api/runs/{run_id}/retry?from_failed=1", json={})
    assert response.status_code == 201
    new = response.json()
    assert response.headers["location"] == f"/api/runs/{new['id']}"
    assert (new["trigger"], new["attempt"], new["retry_of"], new["state"], new["admitted"]) == (
        "rerun_failed", 2, run_id, "pending", False,
    )
    assert new["message"] == f"retry of run {run_id} from its failed steps"
    audit = site.client.get("/api/audit").json()["entries"][0]
    assert audit["action"] == "retry" and "reruns stats, publish, keeps fetch, parse" in audit["detail"]
    whole = site.client.post(f"/api/runs/{run_id}/retry", json={}).json()
    assert (whole["trigger"], whole["retry_of"]) == ("rerun", run_id)


def test_retry_keeps_the_parameters_of_the_run(site: Site) -> None:
    first = site.client.post("/api/jobs/export/trigger", json={"params": {"label": "x", "region": "us"}}).json()
    site.store.claim(first["id"], node="n", now=NOW)
    site.store.transition(first["id"], t.FAILED, now=NOW, exit_code=1)
    again = site.client.post(f"/api/runs/{first['id']}/retry", json={}).json()
    assert again["params"] == first["params"]


def test_retry_refuses_active_runs_all_succeeded_runs_and_steps_of_a_plain_job(site: Site) -> None:
    active = executed(site.store, "pipe", NOW, 0, state=t.RUNNING, slot=False)
    refused = site.client.post(f"/api/runs/{active}/retry", json={})
    assert refused.status_code == 409 and "still running" in error_of(refused)
    good = pipeline_run(site.store, dict.fromkeys(FAILED_STEPS, t.SUCCEEDED))
    nothing = site.client.post(f"/api/runs/{good}/retry?from_failed=1", json={})
    assert nothing.status_code == 409 and "every step of run" in error_of(nothing)
    plain = executed(site.store, "plain", NOW - timedelta(minutes=5), 3, state=t.FAILED, exit_code=1)
    no_steps = site.client.post(f"/api/runs/{plain}/retry?from_failed=1", json={})
    assert no_steps.status_code == 400 and "has no steps" in error_of(no_steps)
    bad_flag = site.client.post(f"/api/runs/{plain}/retry?from_failed=maybe", json={})
    assert bad_flag.status_code == 400 and "from_failed" in error_of(bad_flag)
    assert site.client.post("/api/runs/abc/retry", json={}).status_code == 400
    assert site.client.post("/api/runs/999/retry", json={}).status_code == 404


def test_the_retry_from_failed_button_creates_the_run_and_opens_it(site: Site) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    page = f"/runs/{run_id}"
    response = site.client.post(
        f"/runs/{run_id}/retry", data={"csrf": site.csrf(page), "from_failed": "1"}, follow_redirects=False
    )
    assert response.status_code == 303
    newest = site.store.list_runs(job="pipe", limit=1)[0]
    assert response.headers["location"] == f"/runs/{newest.id}?notice=retried&run={newest.id}"
    assert (newest.trigger, newest.retry_of) == ("rerun_failed", run_id)
    assert "created as a retry" in site.client.get(response.headers["location"]).text


def test_the_cli_retry_uses_the_same_rules(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = pipeline_run(site.store, FAILED_STEPS)
    url = f"sqlite:///{site.config_path.parent / 'corral.db'}"
    code = cli.run(["retry", str(run_id), "--from-failed", "-c", str(site.config_path), "--db", url])
    out = capsys.readouterr().out
    assert code == 0 and f"retry of run {run_id}; reruns stats, publish, keeps fetch, parse" in out


# -- discovery -------------------------------------------------------------------------


def write_inventory(path: Path, host: str = "db1") -> Path:
    collected = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    entries = parse.parse_crontab(CRONTAB, host=host, source="crontab:app", user="app")
    inventory = inv.Inventory((inv.Host(host, timezone="Asia/Seoul"),), tuple(entries), collected)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inv.to_json(inventory)))
    return path


def test_without_an_inventory_the_discovery_page_says_how_to_make_one(site: Site) -> None:
    html = site.client.get("/discovery").text
    assert "No inventory yet" in html and "--inventory FILE" in html
    data = site.client.get("/api/discovery").json()
    assert data["inventory"] is None and data["entries"] == []


def test_the_discovery_page_shows_the_newest_inventory_with_findings(site: Site) -> None:
    folder = site.config_path.parent / ".corral" / "inventories"
    old = write_inventory(folder / "old.json", host="ancient")
    os.utime(old, (1, 1))
    write_inventory(folder / "new.json", host="db1")
    html = site.client.get("/discovery").text
    assert "new.json" in html and "ancient" not in html
    assert "/usr/local/bin/poll.sh" in html and "every minute" in html.lower()
    assert 'class="entry kind-disabled"' in html and 'class="entry kind-invalid"' in html
    data = site.client.get("/api/discovery").json()
    assert data["hosts"][0]["name"] == "db1" and data["hosts"][0]["jobs"] == 2
    assert data["total_entries"] == 4 and data["findings"]["every_minute"] == 1


def test_the_discovery_table_filters_by_text_host_kind_and_finding(site: Site) -> None:
    write_inventory(site.config_path.parent / ".corral" / "inventories" / "i.json")
    commands = lambda query: [e["command"] for e in site.client.get(f"/api/discovery?{query}").json()["entries"]]  # noqa: E731
    assert commands("q=etl") == ["/opt/etl/nightly.sh >> /var/log/etl.log 2>&1"]
    assert commands("finding=every_minute") == ["/usr/local/bin/poll.sh"]
    assert commands("kind=disabled") == ["/opt/old/report.sh >/dev/null 2>&1"]
    assert commands("host=nowhere") == []
    assert len(commands("flagged=1")) >= 2
    page = site.client.get("/discovery?q=etl").text
    assert "/opt/etl/nightly.sh" in page and "/usr/local/bin/poll.sh</code>" not in page
    for query, words in [("kind=cron", "kind='cron' is not valid"), ("finding=bad", "is not a finding code"), ("x=1", "unknown query parameter")]:
        response = site.client.get(f"/api/discovery?{query}")
        assert response.status_code == 400 and words in error_of(response)


def test_an_explicit_inventory_is_shown_and_a_broken_one_says_so(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    given = write_inventory(tmp_path / "elsewhere" / "inv.json", host="web7")
    app = create_app(config_path, url, clock=FakeClock(NOW), inventory=given)
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/api/discovery").json()["hosts"][0]["name"] == "web7"
        given.write_text('{"version": 99}')
        broken = client.get("/api/discovery")
        assert broken.status_code == 500 and "unsupported inventory version" in error_of(broken)
        given.unlink()
        missing = client.get("/api/discovery")
        assert missing.status_code == 404 and "corral discover" in error_of(missing)


# -- /metrics ---------------------------------------------------------------------------


def test_metrics_count_every_run_once_into_cumulative_buckets_on_each_store(store: Store, tmp_path: Path) -> None:
    start = NOW - timedelta(days=3)
    for seconds, state in [(5, t.SUCCEEDED), (45, t.FAILED), (45, t.SUCCEEDED), (7200, t.TIMED_OUT), (90000, t.SUCCEEDED)]:
        executed(store, "pipe", start, seconds, state=state, exit_code=0, slot=False)
        start += timedelta(hours=1)
    executed(store, "pipe", NOW, 0, state=t.RUNNING, slot=False)
    store.create_run(
        job='odd"job\\', state=t.SKIPPED, trigger="schedule", scheduled_for=NOW, now=NOW, reason='quote"d\nreason'
    )
    from corral import metrics

    text = metrics.render(store, None, now=NOW).decode()
    lines = set(text.splitlines())
    buckets = {
        line.split("le=")[1].split("}")[0].strip('"'): line.split()[-1]
        for line in lines
        if line.startswith('corral_run_duration_seconds_bucket{job="pipe"')
    }
    assert buckets == {
        "10.0": "1.0", "60.0": "3.0", "300.0": "3.0", "1800.0": "3.0", "3600.0": "3.0", "14400.0": "4.0",
        "43200.0": "4.0", "86400.0": "4.0", "172800.0": "5.0", "+Inf": "5.0",
    }
    assert 'corral_run_duration_seconds_count{job="pipe"} 5.0' in lines
    assert 'corral_run_duration_seconds_sum{job="pipe"} 97295.0' in lines
    assert 'corral_runs_total{job="pipe",state="succeeded"} 3.0' in lines
    assert 'corral_runs_in_flight{job="pipe"} 1.0' in lines
    assert 'corral_skipped_slots_total{job="odd\\"job\\\\",reason="quote\\"d\\nreason"} 1.0' in lines
    last = next(line for line in lines if line.startswith('corral_last_success_timestamp_seconds{job="pipe"}'))
    assert float(last.split()[-1]) == (NOW - timedelta(days=3) + timedelta(hours=4, seconds=90000)).timestamp()
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


# -- many jobs -------------------------------------------------------------------------


def test_the_jobs_page_pages_through_many_jobs_and_counts_only_their_runs(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text("jobs:\n" + "".join(f"  job-{i:03d}:\n    run: \"echo {i}\"\n" for i in range(250)))
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    for job in ("job-000", "job-210"):
        store.create_run(job=job, state=t.SKIPPED, trigger="schedule", scheduled_for=NOW, now=NOW, reason="overlap")
    assert set(store.job_summaries(["job-210", "job-001"])) == {"job-210"}
    assert set(store.job_summaries()) == {"job-000", "job-210"} and store.job_summaries([]) == {}
    app = create_app(config_path, url, clock=FakeClock(NOW))
    with TestClient(app, base_url=BASE) as client:
        first = client.get("/").text
        assert first.count('class="job-row') == 200 and "Page 1 of 2 (250 jobs)" in first and "page=2" in first
        second = client.get("/?page=2").text
        assert second.count('class="job-row') == 50 and "job-249" in second and "job-000<" not in second
        assert "Page 2 of 2" in client.get("/?page=99").text  # clamped to the last page
        assert client.get("/?page=zero").status_code == 400
        assert client.get("/?q=job-21").text.count('class="job-row') == 10
    store.close()


# -- failing notification channels ----------------------------------------------------


def test_a_channel_that_keeps_failing_is_shown_on_every_page(tmp_path: Path) -> None:
    import socket

    from corral import config as config_mod
    from corral import notify

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(
        "notify:\n  channels:\n"
        f"    hook: {{type: webhook, url: 'http://127.0.0.1:{dead}/hook', secret: s}}\n"
        "  default: {channels: [hook], on: [failure]}\n"
        "jobs:\n  nightly:\n    run: 'false'\n"
    )
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    rid = store.create_run(job="nightly", state=t.PENDING, trigger="manual", scheduled_for=NOW, now=NOW)
    assert rid is not None
    store.claim(rid, node="n", now=NOW)
    store.transition(rid, t.FAILED, now=NOW + timedelta(minutes=1))
    notifier = notify.Notifier.from_config(store, config_mod.load(config_path))
    notifier.step(NOW + timedelta(minutes=2))
    assert notifier.deliver_due(NOW + timedelta(minutes=2)) == 0  # refused: retried later
    app = create_app(config_path, url, clock=FakeClock(NOW + timedelta(minutes=3)))
    with TestClient(app, base_url=BASE) as client:
        page = client.get("/").text
    store.close()
    assert "Alerts are not getting through" in page and "channel hook" in page and "being retried" in page


def test_the_run_page_searches_its_log_without_javascript(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text("jobs:\n  nightly:\n    run: 'true'\n")
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    rid = store.create_run(job="nightly", state=t.PENDING, trigger="manual", scheduled_for=NOW, now=NOW)
    assert rid is not None
    store.claim(rid, node="n", now=NOW)
    log = tmp_path / "run.log"
    log.write_text("stage 31 ok\nstage 32 ERROR <b>disk full</b>\nstage 33 ok\nretry: error again\n")
    store.transition(rid, t.FAILED, now=NOW + timedelta(minutes=1), log_path=str(log))
    app = create_app(config_path, url, clock=FakeClock(NOW + timedelta(minutes=2)))
    with TestClient(app, base_url=BASE) as client:
        page = client.get(f"/runs/{rid}?q=error").text
        none = client.get(f"/runs/{rid}?q=nothing-like-this").text
    store.close()
    assert '2 lines containing "error"' in page
    assert "&lt;b&gt;disk full&lt;/b&gt;" in page and "<b>disk full</b>" not in page
    assert '<span class="muted">     2</span>  stage 32 ERROR' in page
    assert '<span class="muted">     4</span>  retry: error again' in page
    assert "0 lines containing" in none


def test_the_metrics_content_type_is_prometheus_clients() -> None:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    from corral import metrics

    assert metrics.CONTENT_TYPE == CONTENT_TYPE_LATEST
