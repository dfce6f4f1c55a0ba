"""The dashboard and JSON API, driven in-process against a real SQLite store
and a real job file (runs are written with the store's own functions)."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import HTTPConnection

from corral import errors
from corral.clock import FakeClock
from corral.store import Store, open_store
from corral.store import tables as t
from corral.web import Principal, charts, create_app, serve_in_thread, views

with warnings.catch_warnings():
    # starlette 1.10 asks for httpx2 in its TestClient; the project pins httpx 0.28, which still works.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)  # 12:00 in Seoul
BASE = "http://127.0.0.1:8377"
KST = timezone(timedelta(hours=9))

JOB_FILE = """\
timezone: Asia/Seoul
jobs:
  nightly-batch:
    description: Stages 31, 32, 33, 61, 62, 63 in sequence
    run: "echo nightly"
    schedule: "0 1 * * *"
    overlap: skip
  heartbeat:
    description: Proves the scheduler is alive
    run: ["echo", "alive"]
    schedule: "* * * * *"
  crawler:
    run: "echo crawl"
    schedule: "*/30 * * * *"
    overlap: allow
  report:
    description: Manual only
    run: "echo report"
  tidy:
    run: "echo tidy"
    schedule: {after_completion: 6h}
"""

SECURITY_HEADERS = {
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
}


@dataclass
class Site:
    client: TestClient
    store: Store
    config_path: Path
    ids: dict[str, int]

    def csrf(self, page: str = "/jobs/report") -> str:
        """Open a page like a browser would and take the token from its forms."""
        html = self.client.get(page).text
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, f"no CSRF field on {page}"
        return match.group(1)


def executed(
    store: Store,
    job: str,
    start: datetime,
    seconds: float,
    state: str = t.SUCCEEDED,
    exit_code: int | None = 0,
    slot: bool = True,
) -> int:
    """A run that started at ``start`` and ended ``seconds`` later, recorded the way the engine does."""
    run_id = store.create_run(job=job, state=t.PENDING, trigger="schedule", scheduled_for=start, now=start, slot=slot)
    assert run_id is not None
    assert store.claim(run_id, node="test-node", now=start)
    if state != t.RUNNING:
        end = start + timedelta(seconds=seconds)
        assert store.transition(run_id, state, now=end, exit_code=exit_code)
    return run_id


def seed(store: Store, log_dir: Path) -> dict[str, int]:
    ids: dict[str, int] = {}
    # Seed 004: a 26-hour run on a daily schedule covers the next day's slot.
    slot1 = datetime(2026, 2, 27, 16, 0, tzinfo=timezone.utc)  # 01:00 KST
    ids["long"] = executed(store, "nightly-batch", slot1, 26 * 3600)
    ids["skipped"] = store.create_run(  # type: ignore[assignment]
        job="nightly-batch",
        state=t.SKIPPED,
        trigger="schedule",
        scheduled_for=slot1 + timedelta(days=1),
        now=slot1 + timedelta(days=1),
        reason="overlap",
        message=f"previous run {ids['long']} of nightly-batch still running for 24h00m",
        slot=True,
    )
    ids["running"] = executed(store, "nightly-batch", slot1 + timedelta(days=2), 0, state=t.RUNNING)
    # heartbeat: ten short runs, one failing, the last one printing HTML.
    for i in range(10):
        start = NOW - timedelta(minutes=30 - i)
        state, code = (t.FAILED, 1) if i == 4 else (t.SUCCEEDED, 0)
        ids[f"hb{i}"] = executed(store, "heartbeat", start, 1 + i % 3, state=state, exit_code=code)
    log = log_dir / "heartbeat" / f"{ids['hb9']}.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"starting\n<script>alert('owned')</script>\n\x1b[31mred alert\x1b[0m\nbad byte \xff here\n")
    # crawler (overlap: allow): two runs at the same time.
    ids["crawl1"] = executed(store, "crawler", NOW - timedelta(hours=3), 3600)
    ids["crawl2"] = executed(store, "crawler", NOW - timedelta(hours=2, minutes=30), 600, slot=False)
    return ids


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    ids = seed(store, tmp_path / ".corral" / "logs")
    app = create_app(config_path, url, clock=FakeClock(NOW))
    with TestClient(app, base_url=BASE) as client:
        yield Site(client, store, config_path, ids)
    store.close()


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == response.status_code
    return str(body["error"])


# -- JSON API: reading ------------------------------------------------------------------


def test_the_jobs_api_lists_every_job_with_schedule_words_next_run_and_outcomes(site: Site) -> None:
    response = site.client.get("/api/jobs")
    assert response.status_code == 200
    jobs = {j["name"]: j for j in response.json()["jobs"]}
    assert list(jobs) == ["crawler", "heartbeat", "nightly-batch", "report", "tidy"]
    nightly = jobs["nightly-batch"]
    assert nightly["schedule"] == "every day at 01:00 (Asia/Seoul)"
    assert nightly["next_run"] == "2026-03-03T01:00:00+09:00"
    assert nightly["last_run"]["id"] == site.ids["running"] and nightly["last_run"]["state"] == "running"
    assert nightly["skipped"] == 1 and nightly["active_runs"] == 1
    heartbeat = jobs["heartbeat"]
    assert heartbeat["success_rate"] == pytest.approx(0.9)
    assert len(heartbeat["recent_durations"]) == 10
    assert jobs["report"]["next_run"] is None and jobs["report"]["next_run_note"] == "manual only"
    assert jobs["tidy"]["status"] == "enabled" and jobs["tidy"]["paused"] is False
    found = site.client.get("/api/jobs?q=MANUAL").json()["jobs"]
    assert [j["name"] for j in found] == ["report"]


def test_a_job_shows_the_next_five_fire_times_in_its_timezone_percentiles_and_its_yaml(site: Site) -> None:
    data = site.client.get("/api/jobs/nightly-batch").json()
    assert data["next_runs"] == [f"2026-03-0{d}T01:00:00+09:00" for d in range(3, 8)]
    assert data["durations"] == {"p50_seconds": 26 * 3600.0, "p95_seconds": 26 * 3600.0, "samples": 1}
    assert data["schedule_interval_seconds"] == 86400
    assert "overlap: skip" in data["source"] and 'schedule: "0 1 * * *"' in data["source"]
    assert [r["state"] for r in data["recent_runs"]] == ["running", "skipped", "succeeded"]
    assert data["recent_runs"][1]["reason"] == "overlap"
    assert data["active"][0]["id"] == site.ids["running"]


def test_an_unknown_job_is_a_404_with_a_did_you_mean(site: Site) -> None:
    for path in ("/api/jobs/nightly", "/api/jobs/nightly/forecast"):
        response = site.client.get(path)
        assert response.status_code == 404
        assert 'no job "nightly"' in error_of(response) and 'did you mean "nightly-batch"?' in error_of(response)
    page = site.client.get("/jobs/hartbeat")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "did you mean &#34;heartbeat&#34;?" in page.text


def test_runs_are_listed_newest_first_with_a_cursor_to_the_next_page(site: Site) -> None:
    first = site.client.get("/api/runs", params={"job": "heartbeat", "limit": 4}).json()
    ids = [r["id"] for r in first["runs"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    assert first["next_before"] == ids[-1]
    seen = list(ids)
    cursor = first["next_before"]
    while cursor is not None:
        page = site.client.get("/api/runs", params={"job": "heartbeat", "limit": 4, "before": cursor}).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_before"]
    assert seen == sorted((site.ids[f"hb{i}"] for i in range(10)), reverse=True)


def test_runs_can_be_filtered_by_state_and_time(site: Site) -> None:
    failed = site.client.get("/api/runs?state=failed").json()["runs"]
    assert [r["id"] for r in failed] == [site.ids["hb4"]]
    both = site.client.get("/api/runs", params=[("state", "skipped"), ("state", "running")]).json()["runs"]
    assert {r["state"] for r in both} == {"skipped", "running"}
    recent = site.client.get("/api/runs", params={"since": "2026-03-02T11:00:00+09:00"}).json()["runs"]
    assert recent and all(r["scheduled_for"] >= "2026-03-02T02:00:00+00:00" for r in recent)


def test_a_run_is_returned_as_its_dict(site: Site) -> None:
    run_id = site.ids["hb4"]
    data = site.client.get(f"/api/runs/{run_id}").json()
    assert data == json.loads(json.dumps(site.store.get_run(run_id).as_dict()))
    assert data["state"] == "failed" and data["exit_code"] == 1


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "limit=0 is out of range"),
        ("limit=ten", 'limit="ten" is not a whole number'),
        ("limit=5000", "from 1 to 1000"),
        ("state=exploded", 'state="exploded" is not valid; use one of pending'),
        ("before=-3", "before=-3 is out of range"),
        ("since=yesterday", 'since="yesterday" is not an ISO-8601 instant'),
        ("since=2026-03-01T00:00:00", "has no UTC offset"),
        ("since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "since is after until"),
        ("stat=failed", "unknown query parameter 'stat'; accepted: job, state"),
        ("job=Not%20A%20Job", "is not a job name"),
    ],
)
def test_bad_query_values_are_400_and_name_the_parameter(site: Site, query: str, words: str) -> None:
    response = site.client.get(f"/api/runs?{query}")
    assert response.status_code == 400
    assert words in error_of(response)


def test_a_job_filter_with_a_typo_is_a_404_with_a_did_you_mean(site: Site) -> None:
    response = site.client.get("/api/runs?job=heartbeet")
    assert response.status_code == 404 and "heartbeat" in error_of(response)


@pytest.mark.parametrize("bad", ["abc", "1.5", "0", "-4", "99999999999999999999999", "%F0%9F%92%A5"])
def test_a_malformed_run_id_is_400(site: Site, bad: str) -> None:
    for path in (f"/api/runs/{bad}", f"/api/runs/{bad}/log"):
        response = site.client.get(path)
        assert response.status_code == 400, path
        assert "is not a run id" in error_of(response)
    page = site.client.get(f"/runs/{bad}")
    assert page.status_code == 400 and "is not a run id" in page.text


def test_an_unknown_run_is_404(site: Site) -> None:
    for path in ("/api/runs/424242", "/api/runs/424242/log"):
        response = site.client.get(path)
        assert response.status_code == 404 and "no run 424242" in error_of(response)
    response = site.client.post("/api/runs/424242/cancel", json={})
    assert response.status_code == 404


def test_the_log_api_reads_byte_ranges_and_replaces_bad_utf8(site: Site) -> None:
    run_id = site.ids["hb9"]
    whole = site.client.get(f"/api/runs/{run_id}/log").json()
    assert whole["offset"] == 0 and whole["next_offset"] == whole["size"] == 76
    assert "<script>alert('owned')</script>" in whole["text"]
    assert "bad byte \ufffd here" in whole["text"]
    assert whole["active"] is False and whole["state"] == "succeeded"
    part = site.client.get(f"/api/runs/{run_id}/log?offset=9&limit=8").json()
    assert part == {**part, "offset": 9, "next_offset": 17, "text": "<script>"}
    end = site.client.get(f"/api/runs/{run_id}/log?offset=76").json()
    assert end["text"] == "" and end["next_offset"] == 76
    nothing = site.client.get(f"/api/runs/{site.ids['skipped']}/log").json()
    assert nothing["exists"] is False and nothing["size"] == 0
    response = site.client.get(f"/api/runs/{run_id}/log?limit=0")
    assert response.status_code == 400 and "limit=0 is out of range" in error_of(response)


def test_a_log_range_never_ends_inside_a_character(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes("añb€".encode())  # a, 2-byte ñ, b, 3-byte €
    chunk = views.read_log(path, 0, 2)
    assert (chunk.text, chunk.next_offset) == ("a", 1)
    chunk = views.read_log(path, 1, 5)
    assert (chunk.text, chunk.next_offset) == ("ñb", 4)
    chunk = views.read_log(path, 4, 2)  # only part of € left in range: returned as is, never stuck
    assert chunk.next_offset == 6 and chunk.text == "\ufffd"


def test_the_forecast_says_every_second_slot_of_a_26_hour_daily_job_is_skipped(site: Site) -> None:
    data = site.client.get("/api/jobs/nightly-batch/forecast?days=7&duration=26h").json()
    outcomes = [s["outcome"] for s in data["slots"]]
    assert outcomes == ["run", "skipped"] * 3 + ["run"]
    assert data["effective_cadence_seconds"] == 48 * 3600
    assert data["duration_basis"] == "given" and data["slots_skipped"] == 3
    assert any("every: 30h" in s for s in data["suggestions"])


def test_the_forecast_assumes_the_p95_or_one_hour_without_history(site: Site) -> None:
    learned = site.client.get("/api/jobs/nightly-batch/forecast").json()
    assert learned["duration_basis"] == "p95" and learned["duration_seconds"] == 26 * 3600
    guessed = site.client.get("/api/jobs/report/forecast").json()
    assert guessed["duration_basis"] == "default" and guessed["duration_seconds"] == 3600
    assert guessed["slots"] == []
    for query, words in [
        ("days=0", "days=0 is out of range"),
        ("days=x", "not a number"),
        ("duration=soon", "not a duration"),
    ]:
        response = site.client.get(f"/api/jobs/nightly-batch/forecast?{query}")
        assert response.status_code == 400 and words in error_of(response)


def test_a_forecast_of_a_job_firing_every_minute_stays_quick(site: Site) -> None:
    started = time.monotonic()
    data = site.client.get("/api/jobs/heartbeat/forecast?days=31").json()
    assert time.monotonic() - started < 2
    assert data["truncated"] is True and len(data["slots"]) == views.FORECAST_MAX_SLOTS


# -- JSON API: acting ---------------------------------------------------------------------


def test_trigger_creates_a_pending_unadmitted_manual_run(site: Site) -> None:
    response = site.client.post("/api/jobs/report/trigger", json={})
    assert response.status_code == 201
    run = response.json()
    assert response.headers["location"] == f"/api/runs/{run['id']}"
    stored = site.store.get_run(run["id"])
    assert (stored.job, stored.state, stored.trigger, stored.admitted) == ("report", "pending", "manual", False)
    assert stored.scheduled_for == NOW


def test_trigger_refuses_undeclared_parameters_and_unknown_fields(site: Site) -> None:
    for body, words in [
        ({"params": {"day": "1"}}, "job report takes no parameters"),
        ({"force": True}, "unknown field force"),
    ]:
        response = site.client.post("/api/jobs/report/trigger", json=body)
        assert response.status_code == 400 and words in error_of(response)
    broken = site.client.post(
        "/api/jobs/report/trigger", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "not valid JSON" in error_of(broken)
    assert site.store.list_runs(job="report") == []


def test_pause_and_resume_change_the_job_state(site: Site) -> None:
    paused = site.client.post("/api/jobs/heartbeat/pause", json={})
    assert paused.status_code == 200 and paused.json()["paused"] is True and paused.json()["paused_by"] == "local"
    assert site.store.job_states()["heartbeat"]["paused"] is True
    assert site.client.get("/api/jobs/heartbeat").json()["status"] == "paused"
    resumed = site.client.post("/api/jobs/heartbeat/resume", json={})
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert site.store.job_states()["heartbeat"]["paused"] is False


def test_cancel_ends_a_waiting_run_and_is_a_conflict_for_an_ended_one(site: Site) -> None:
    waiting = site.store.create_run(job="report", state=t.PENDING, trigger="manual", scheduled_for=NOW, now=NOW)
    response = site.client.post(f"/api/runs/{waiting}/cancel", json={})
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    running = site.client.post(f"/api/runs/{site.ids['running']}/cancel", json={})
    assert running.status_code == 200 and running.json()["stop_requested"] == "cancel"
    again = site.client.post(f"/api/runs/{waiting}/cancel", json={})
    assert again.status_code == 409 and "already ended" in error_of(again)


# -- protection --------------------------------------------------------------------------


def test_a_post_without_csrf_protection_is_refused(site: Site) -> None:
    # What a forged cross-site form can send: form encoding, no token.
    api = site.client.post("/api/jobs/report/trigger", data={"x": "1"})
    assert api.status_code == 403 and "Content-Type: application/json" in error_of(api)
    form = site.client.post("/jobs/report/trigger", data={"next": "/"})
    assert form.status_code == 403 and "CSRF token is missing or out of date" in form.text
    token = site.csrf()
    forged = site.client.post("/jobs/report/trigger", data={"csrf": token[:-2] + "xx"})
    assert forged.status_code == 403
    cross = site.client.post(
        "/api/jobs/report/trigger", json={}, headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403 and "cross-origin request" in error_of(cross)
    site.client.cookies.set("corral_csrf", "abc.def")  # planted by another site on localhost
    minted_elsewhere = site.client.post("/jobs/report/trigger", data={"csrf": "abc.def"})
    assert minted_elsewhere.status_code == 403
    assert site.store.list_runs(job="report") == []


def test_the_page_buttons_act_with_the_csrf_token_and_redirect_back(site: Site) -> None:
    token = site.csrf("/jobs/report")
    response = site.client.post(
        "/jobs/report/trigger", data={"csrf": token, "next": "/jobs/report"}, follow_redirects=False
    )
    assert response.status_code == 303
    run_id = site.store.list_runs(job="report")[0].id
    assert response.headers["location"] == f"/jobs/report?notice=triggered&run={run_id}"
    shown = site.client.get(response.headers["location"])
    assert f"Run {run_id} triggered" in shown.text
    paused = site.client.post("/jobs/report/pause", data={"csrf": token, "next": "/"}, follow_redirects=False)
    assert paused.headers["location"] == "/?notice=paused"
    assert site.store.job_states()["report"]["paused"] is True
    site.client.post("/jobs/report/resume", data={"csrf": token}, follow_redirects=False)
    assert site.store.job_states()["report"]["paused"] is False
    cancelled = site.client.post(f"/runs/{run_id}/cancel", data={"csrf": token}, follow_redirects=False)
    assert cancelled.headers["location"] == f"/runs/{run_id}?notice=cancelled&run={run_id}"
    assert site.store.get_run(run_id).state == "cancelled"


def test_a_redirect_never_leaves_the_site(site: Site) -> None:
    token = site.csrf()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        response = site.client.post("/jobs/report/pause", data={"csrf": token, "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/jobs/report?notice=paused", target


def test_a_form_with_too_many_fields_is_400_not_500(site: Site) -> None:
    token = site.csrf()
    body = f"csrf={token}&" + "&".join(f"f{i}=x" for i in range(60))
    response = site.client.post(
        "/jobs/report/trigger", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400 and "too many fields" in response.text


def test_a_body_over_64_kb_is_413(site: Site) -> None:
    response = site.client.post(
        "/api/jobs/report/trigger", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "at most 65536" in error_of(response)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(20):
            yield b" " * 4096

    streamed = site.client.post(
        "/api/jobs/report/trigger", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert site.store.list_runs(job="report") == []


def test_a_wrong_method_is_405_and_says_which_one_to_use(site: Site) -> None:
    response = site.client.get("/api/jobs/report/trigger")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert "GET is not allowed on /api/jobs/report/trigger; use POST" in error_of(response)
    response = site.client.delete("/api/runs/1", headers={"content-type": "application/json"})
    assert response.status_code == 405
    page = site.client.get("/jobs/report/pause")
    assert page.status_code == 405 and "use POST" in page.text


def test_an_unknown_api_path_is_a_json_404(site: Site) -> None:
    response = site.client.get("/api/nothing")
    assert response.status_code == 404 and "/api/openapi.json lists them" in error_of(response)


def test_every_response_carries_the_security_headers(site: Site) -> None:
    responses = [
        site.client.get("/"),
        site.client.get("/api/jobs"),
        site.client.get("/api/jobs/nope"),
        site.client.get("/static/corral.css"),
        site.client.get("/healthz"),
        site.client.post("/api/jobs/report/trigger", data={}),
        site.client.get("/runs/x"),
    ]
    for response in responses:
        missing = SECURITY_HEADERS - set(response.headers)
        assert not missing, (response.url, missing)
        csp = response.headers["content-security-policy"]
        assert csp.startswith("default-src 'self'") and "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_pages_have_no_inline_script_or_style(site: Site) -> None:
    for path in ("/", "/jobs/nightly-batch", "/timeline", f"/runs/{site.ids['running']}"):
        html = site.client.get(path).text
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/corral.js" defer>'], path
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html


def test_a_request_for_a_foreign_host_name_is_refused_without_auth(site: Site) -> None:
    response = site.client.get("/api/jobs", headers={"host": "attacker.example"})
    assert response.status_code == 400 and "DNS-rebinding" in error_of(response)
    assert site.client.get("http://localhost:8377/api/jobs").status_code == 200


def test_a_non_loopback_host_is_refused_without_auth(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    for host in ("0.0.0.0", "192.168.1.10", "::", "corral.example.com"):
        with pytest.raises(errors.CorralError, match="without authentication.*ssh -L 8377:127.0.0.1:8377"):
            create_app(config_path, url, host=host)
        with pytest.raises(errors.CorralError, match="refusing to serve the dashboard"):
            serve_in_thread(config_path, url, host=host, port=0)


class BearerTokens:
    """A stand-in authenticator: the real users and tokens come in a later slice."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        self.tokens = tokens

    def authenticate(self, request: HTTPConnection) -> Principal | None:
        header = request.headers.get("authorization", "")
        return self.tokens.get(header.removeprefix("Bearer "))


def test_with_auth_a_non_loopback_host_is_served_and_roles_are_enforced(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    auth = BearerTokens({"v": Principal("vera", "viewer"), "o": Principal("otto", "operator")})
    app = create_app(config_path, url, host="0.0.0.0", auth=auth, clock=FakeClock(NOW))
    with TestClient(app, base_url="http://corral.example.com") as client:
        anonymous = client.get("/api/jobs")
        assert anonymous.status_code == 401 and "sign in first" in error_of(anonymous)
        assert client.get("/healthz").status_code == 200
        viewer = {"authorization": "Bearer v"}
        assert client.get("/api/jobs", headers=viewer).status_code == 200
        denied = client.post("/api/jobs/report/trigger", json={}, headers=viewer)
        assert denied.status_code == 403 and "vera has role viewer; this needs operator" in error_of(denied)
        allowed = client.post("/api/jobs/report/trigger", json={}, headers={"authorization": "Bearer o"})
        assert allowed.status_code == 201


# -- pages ----------------------------------------------------------------------------------


def test_the_jobs_page_shows_schedule_next_run_outcome_and_a_sparkline(site: Site) -> None:
    html = site.client.get("/").text
    row = html[html.index('href="/jobs/nightly-batch"') :].split("</tr>")[0]
    assert "every day at 01:00 (Asia/Seoul)" in row
    assert "2026-03-03 01:00 KST" in row and "(in 13h00m)" in row
    assert "state-running" in row and "1 skipped" in row and "enabled" in row
    heartbeat = html[html.index('href="/jobs/heartbeat"') :].split("</tr>")[0]
    assert "90%" in heartbeat and '<svg class="spark"' in heartbeat and "<polyline points=" in heartbeat
    assert "manual only" in html
    filtered = site.client.get("/?q=stages").text
    assert 'href="/jobs/nightly-batch"' in filtered and 'href="/jobs/heartbeat"' not in filtered


def test_the_job_page_shows_history_with_skip_reasons_chart_forecast_and_yaml(site: Site) -> None:
    html = site.client.get("/jobs/nightly-batch").text
    assert f"previous run {site.ids['long']} of nightly-batch still running for 24h00m" in html
    assert '<line class="ref p50"' in html and '<line class="ref p95"' in html
    assert '<line class="ref interval"' in html and "schedule every 1d" in html
    # Forecast with the job's p95 (26 h): every second slot skipped, cadence 48 h.
    assert "the p95 of its history" in html and "every <strong>2d</strong>" in html
    assert "would be skipped" in html and "every: 30h" in html
    assert "1 run of this job is active now and may take the first slots" in html
    assert "overlap: skip" in html and "schedule: &#34;0 1 * * *&#34;" in html
    assert 'action="/jobs/nightly-batch/trigger"' in html and 'action="/jobs/nightly-batch/pause"' in html


def test_a_job_without_history_is_forecast_with_one_hour(site: Site) -> None:
    html = site.client.get("/jobs/crawler").text
    assert "the p95 of its history" in html
    html = site.client.get("/jobs/tidy").text
    assert "no history yet, so 1 hour is assumed" in html


def test_the_timeline_draws_runs_skips_and_overlaps_in_the_chosen_timezone(site: Site) -> None:
    html = site.client.get("/timeline?range=7d&tz=Asia/Seoul").text
    assert '<svg class="gantt"' in html
    assert 'class="bar state-running' in html and 'class="bar state-failed' in html
    assert "runs drawn as one at this scale" in html  # a week of heartbeats is too dense to draw one by one
    assert 'class="marker state-skipped"' in html and "skipped (overlap)" in html
    assert "1 run overlapped another run of the same job" in html and "state-succeeded overlap" in html
    assert "Mon 02 Mar" in html  # a midnight tick, in Seoul time
    skipped_table = html[html.index("<h2>Skipped slots</h2>") :]
    assert "2026-03-01 01:00 KST" in skipped_table and "still running for 24h00m" in skipped_table
    close = site.client.get("/timeline?range=6h&tz=UTC").text
    assert close.count('class="bar state-succeeded') == 9 + 2  # each heartbeat and both crawler runs
    assert ">00:00<" in close or ">Mon 02 Mar<" in close
    bad = site.client.get("/timeline?tz=Asia/Seol")
    assert bad.status_code == 400 and "did you mean &#34;Asia/Seoul&#34;?" in bad.text
    assert site.client.get("/timeline?range=1y").status_code == 400


def test_the_run_page_shows_the_log_as_text_never_as_markup(site: Site) -> None:
    html = site.client.get(f"/runs/{site.ids['hb9']}").text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
    assert "red alert" in html and "\x1b[31m" not in html
    assert "code 0" in html and 'data-active="no"' in html
    raw = site.client.get(f"/runs/{site.ids['hb9']}/log")
    assert raw.headers["content-type"] == "text/plain; charset=utf-8" and b"<script>" in raw.content


def test_the_run_page_of_an_active_run_tails_its_log_and_offers_cancel(site: Site) -> None:
    html = site.client.get(f"/runs/{site.ids['running']}").text
    assert 'data-active="yes"' in html and f'data-tail="/api/runs/{site.ids["running"]}/log"' in html
    assert f'action="/runs/{site.ids["running"]}/cancel"' in html
    assert "11h00m so far" in html


def test_a_skipped_run_page_says_why(site: Site) -> None:
    html = site.client.get(f"/runs/{site.ids['skipped']}").text
    assert "still running for 24h00m" in html and "it never ran" in html


def test_the_dashboard_follows_edits_of_the_job_file_and_keeps_the_last_good_one(site: Site) -> None:
    site.config_path.write_text(JOB_FILE + "  added:\n    run: echo new\n")
    assert "added" in [j["name"] for j in site.client.get("/api/jobs").json()["jobs"]]
    site.config_path.write_text(JOB_FILE + '  broken:\n    run: echo x\n    schedule: "0 25 * * *"\n')
    data = site.client.get("/api/jobs").json()
    assert "added" in [j["name"] for j in data["jobs"]]
    assert "hour 25 is out of range" in data["config_error"]
    html = site.client.get("/").text
    assert "has errors; this page shows the last good version" in html and "hour 25 is out of range" in html


# -- description and health ------------------------------------------------------------------


def test_the_openapi_document_describes_every_api_route(site: Site) -> None:
    doc = site.client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routed: dict[str, set[str]] = {}
    for route in site.client.app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if path.startswith("/api/") or path == "/healthz":
            routed[path] = {m.lower() for m in route.methods - {"HEAD"}}  # type: ignore[attr-defined]
    described = {path: set(ops) for path, ops in doc["paths"].items()}
    assert described == routed
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for response in op["responses"].values():
                content = response.get("content", {})
                schema = next(iter(content.values()))["schema"] if content else {}
                ref = response.get("$ref") or schema.get("$ref", "")
                if ref:
                    section, name = ref.split("/")[-2:]
                    assert name in doc["components"][section], (path, ref)


def test_healthz_reports_the_store_and_the_job_file(site: Site) -> None:
    data = site.client.get("/healthz").json()
    assert data == {"status": "ok", "store": "ok", "jobs": 5, "config_ok": True, "engines": 0}


def test_serve_in_thread_listens_on_loopback_and_stops(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(JOB_FILE)
    server = serve_in_thread(config_path, f"sqlite:///{tmp_path / 'corral.db'}", port=0)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        response = httpx.get(f"{server.url}/healthz", timeout=5)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        with pytest.raises(errors.CorralError, match="cannot serve the dashboard on 127.0.0.1"):
            serve_in_thread(config_path, f"sqlite:///{tmp_path / 'corral.db'}", port=server.port)
    finally:
        server.stop()
    assert not server.running


# -- chart geometry -----------------------------------------------------------------------


def test_overlapping_bars_of_one_job_get_their_own_lanes() -> None:
    start = NOW - timedelta(hours=4)
    items = [
        charts.Item("a", start, start + timedelta(hours=2), "state-succeeded", "one"),
        charts.Item("a", start + timedelta(hours=1), start + timedelta(hours=3), "state-succeeded", "two"),
        charts.Item("a", start + timedelta(hours=2, minutes=30), None, "state-running", "three"),
        charts.Item("a", start + timedelta(hours=3), None, "state-skipped", "skip", marker=True),
    ]
    g = charts.gantt(["a"], items, start=start, end=NOW, zone="UTC", now=NOW)
    assert g.overlaps == 1 and g.rows[0].lanes == 2
    assert [b.y for b in g.bars][0] == g.bars[2].y  # the third bar reuses the first lane
    assert g.bars[2].x + g.bars[2].w == pytest.approx(g.plot_right)  # a running bar reaches now
    assert len(g.markers) == 1 and g.now_x == pytest.approx(g.plot_right)


def test_a_week_of_an_every_minute_job_is_drawn_with_few_shapes() -> None:
    start = NOW - timedelta(days=7)
    items = [
        charts.Item(
            "hb", start + timedelta(minutes=i), start + timedelta(minutes=i, seconds=2), "state-succeeded", f"run {i}"
        )
        for i in range(7 * 1440)
    ]
    items[5000] = charts.Item("hb", items[5000].start, items[5000].end, "state-failed", "run 5000")
    items += [
        charts.Item("hb", start + timedelta(minutes=i, seconds=30), None, "state-skipped", "skip", marker=True)
        for i in range(100)
    ]
    g = charts.gantt(["hb"], items, start=start, end=NOW, zone="UTC", now=NOW)
    assert [b.css for b in g.bars] == ["state-succeeded", "state-failed", "state-succeeded"]
    assert g.overlaps == 0 and len(g.markers) == 1 and "100 skipped slots" in g.markers[0].title


def test_time_ticks_stay_on_round_local_times_across_a_dst_change() -> None:
    start = datetime(2026, 3, 8, 3, 0, tzinfo=timezone.utc)  # New York springs forward at 07:00 UTC
    labels = [label for _, label, _ in charts.time_ticks(start, start + timedelta(hours=24), "America/New_York")]
    assert labels[:4] == ["Sun 08 Mar", "04:00", "06:00", "08:00"]  # 02:00 did not exist
    kolkata = [label for _, label, _ in charts.time_ticks(start, start + timedelta(hours=6), "Asia/Kolkata")]
    assert all(label.endswith(":00") or label.endswith(":30") for label in kolkata)
