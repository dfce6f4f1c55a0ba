"""Sign-in, roles, API tokens, the audit log, the live log stream and secret
masking, against the real app and a real SQLite store (users made with the
CLI's own functions)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from corral import cli, errors
from corral.clock import FakeClock
from corral.store import Store, open_store
from corral.store import tables as t
from corral.web import accounts, create_app, serve_in_thread
from tests.integration.test_web import JOB_FILE, NOW, TestClient, error_of, executed

PASSWORD = "correct horse battery"
HOST = "http://corral.example.com"

SECRET_JOB_FILE = JOB_FILE + """\
  deploy:
    run: "echo deploying"
    env:
      DEPLOY_TOKEN: {secret: "tok-9f8e7d6c5b"}
      REGION: eu-west
"""


@dataclass
class Authed:
    app: object
    store: Store
    config_path: Path
    tokens: dict[str, str]
    ids: dict[str, int] = field(default_factory=dict)

    def client(self) -> TestClient:
        return TestClient(self.app, base_url=HOST)  # type: ignore[arg-type]


def sign_in(client: TestClient, name: str, password: str = PASSWORD, next_page: str = "/") -> httpx.Response:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    return client.post(
        "/login",
        data={"csrf": csrf.group(1), "name": name, "password": password, "next": next_page},
        follow_redirects=False,
    )


def form_csrf(client: TestClient, page: str = "/jobs/report") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert match, f"no CSRF field on {page}"
    return match.group(1)


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[Authed]:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(SECRET_JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    for name, role in (("alice", "admin"), ("olga", "operator"), ("vera", "viewer")):
        accounts.add_user(store, name, role, PASSWORD, now=NOW)
    tokens = {role: accounts.create_token(store, f"ci-{role}", role, now=NOW)[1] for role in ("viewer", "operator")}
    ids = {"running": executed(store, "nightly-batch", NOW - timedelta(hours=1), 0, state=t.RUNNING)}
    # The dashboard finds the users in the store: sign-in is on, and so 0.0.0.0 is allowed.
    app = create_app(config_path, url, host="0.0.0.0", clock=FakeClock(NOW))
    yield Authed(app, store, config_path, tokens, ids)
    store.close()


# -- the CLI ------------------------------------------------------------------------------


def corral(capsys: pytest.CaptureFixture[str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = cli.run(list(args))
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def test_users_and_tokens_are_managed_from_the_cli_and_stored_hashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(JOB_FILE)
    c = ("-c", str(config))
    code, out, err = corral(capsys, "users", "add", "alice", "--role", "admin", "--password-stdin", *c, stdin=PASSWORD + "\n")
    assert code == 0 and "user alice added with role admin" in out and "sign-in is now required" in err
    code, _, err = corral(capsys, "users", "add", "alice", "--role", "viewer", "--password-stdin", *c, stdin=PASSWORD)
    assert code == 1 and 'user "alice" already exists; pass --update' in err
    code, _, err = corral(capsys, "users", "add", "bob", "--role", "viewer", "--password-stdin", *c, stdin="short")
    assert code == 1 and "use at least 10" in err
    code, _, err = corral(capsys, "users", "add", "bob", "--role", "root", "--password-stdin", *c, stdin=PASSWORD)
    assert code == 2 and "'root' is not one of 'viewer', 'operator', 'admin'" in err
    code, out, _ = corral(capsys, "users", "list", *c)
    assert code == 0 and re.search(r"alice\s+admin", out)

    code, out, err = corral(capsys, "tokens", "create", "deploy-bot", "--role", "operator", *c)
    token = out.strip()
    assert code == 0 and token.startswith("corral_") and len(token) > 40 and "keeps only its hash" in err
    code, out, _ = corral(capsys, "tokens", "list", "--json", *c)
    listed = json.loads(out)
    assert listed[0]["name"] == "deploy-bot" and token not in out and "secret_hash" not in listed[0]

    store = open_store(f"sqlite:///{tmp_path / '.corral' / 'corral.db'}")
    try:
        user = store.get_user("alice")
        assert user is not None and user["password_hash"].startswith("$argon2id$") and PASSWORD not in str(user)
        assert store.token_by_hash(accounts.digest(token)) is not None
        code, out, _ = corral(capsys, "tokens", "revoke", str(listed[0]["id"]), *c)
        assert code == 0 and "revoked" in out
        assert store.token_by_hash(accounts.digest(token)) is None
        code, _, err = corral(capsys, "tokens", "revoke", str(listed[0]["id"]), *c)
        assert code == 1 and "already revoked" in err
        actions = [e.action for e in store.list_audit()]
        assert actions == ["token_revoke", "token_create", "user_add"]
    finally:
        store.close()


def test_corral_web_refuses_a_public_address_without_users_and_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(JOB_FILE)
    code, _, err = corral(capsys, "web", "-c", str(config), "--host", "0.0.0.0", "--port", "0")
    assert code == 1 and "refusing to serve the dashboard on 0.0.0.0 without authentication" in err
    assert "corral users add NAME --role admin" in err


def test_corral_web_serves_the_dashboard_until_terminated(tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(JOB_FILE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "web", "-c", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+) \(no users", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        assert httpx.get(match.group(1) + "/api/jobs", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err


# -- signing in ---------------------------------------------------------------------------


def test_without_credentials_the_api_is_401_and_pages_lead_to_sign_in(authed: Authed) -> None:
    with authed.client() as client:
        response = client.get("/api/jobs")
        assert response.status_code == 401 and "sign in first" in error_of(response)
        assert response.headers["www-authenticate"].startswith("Bearer")
        page = client.get("/jobs/report?x=1", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fjobs%2Freport%3Fx%3D1"
        assert client.get("/healthz").status_code == 200
        assert client.get("/static/corral.css").status_code == 200
        login = client.get("/login")
        assert login.status_code == 200 and 'autocomplete="current-password"' in login.text


def test_signing_in_sets_an_httponly_samesite_cookie_and_signing_out_ends_the_session(authed: Authed) -> None:
    with authed.client() as client:
        response = sign_in(client, "vera", next_page="/timeline")
        assert response.status_code == 303 and response.headers["location"] == "/timeline"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("corral_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # plain http here; see the https test below
        session = client.cookies["corral_session"]
        assert accounts.digest(session) != session
        page = client.get("/")
        assert page.status_code == 200 and "vera" in page.text and "Sign out" in page.text
        csrf = re.search(r'action="/logout">.*?name="csrf" value="([^"]+)"', page.text, re.S)
        assert csrf
        out = client.post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login?notice=signed_out"
        # The session is gone from the store too: replaying the old cookie fails.
        client.cookies.set("corral_session", session)
        assert client.get("/api/jobs").status_code == 401


def test_the_session_cookie_is_secure_over_https(authed: Authed) -> None:
    with TestClient(authed.app, base_url="https://corral.example.com") as client:  # type: ignore[arg-type]
        response = sign_in(client, "vera")
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def test_a_wrong_password_is_refused_and_guessing_is_throttled(authed: Authed) -> None:
    with authed.client() as client:
        for _ in range(5):
            wrong = sign_in(client, "alice", "not the password")
            assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        assert sign_in(client, "nobody", "whatever-it-is").status_code == 401
        throttled = sign_in(client, "alice")  # right password, but too many failures just now
        assert throttled.status_code == 429 and "Too many wrong passwords" in throttled.text


def test_the_sign_in_form_needs_its_csrf_token_and_never_redirects_off_site(authed: Authed) -> None:
    with authed.client() as client:
        forged = client.post("/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
        assert forged.status_code == 403
        away = sign_in(client, "alice", next_page="//evil.example/")
        assert away.status_code == 303 and away.headers["location"] == "/"


def test_csrf_tokens_are_bound_to_the_session(authed: Authed) -> None:
    with authed.client() as first, authed.client() as second:
        assert sign_in(first, "olga").status_code == 303
        assert sign_in(second, "olga").status_code == 303
        token = form_csrf(first)
        # The second session of the same person, given the first one's token (cookie and field), is refused.
        second.cookies.set("corral_csrf", token)
        stolen = second.post("/jobs/report/trigger", data={"csrf": token}, follow_redirects=False)
        assert stolen.status_code == 403 and "CSRF" in stolen.text
        ok = first.post("/jobs/report/trigger", data={"csrf": token, "next": "/jobs/report"}, follow_redirects=False)
        assert ok.status_code == 303


# -- roles ------------------------------------------------------------------------------


def state_changing_routes(app: object, run_id: int) -> list[str]:
    paths = []
    for route in app.routes:  # type: ignore[attr-defined]
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", "")
        # /ping/<uuid> is public on purpose: its UUID is the secret (tests/integration/test_monitors.py).
        if "POST" in methods and path not in ("/login", "/logout") and not path.startswith("/ping/"):
            paths.append(path.replace("{name}", "report").replace("{id}", str(run_id)))
    return paths


def test_every_state_changing_route_is_401_anonymous_and_403_for_a_viewer(authed: Authed) -> None:
    paths = state_changing_routes(authed.app, authed.ids["running"])
    assert len(paths) >= 8, paths
    viewer = {"authorization": f"Bearer {authed.tokens['viewer']}"}
    with authed.client() as client:
        for path in paths:
            anonymous = client.post(path, json={})
            assert anonymous.status_code == 401, path
            denied = client.post(path, json={}, headers=viewer)
            assert denied.status_code == 403, path
            if path.startswith("/api/"):
                assert "ci-viewer (token 1) has role viewer; this needs operator" in error_of(denied)
        assert sign_in(client, "vera").status_code == 303
        csrf = form_csrf(client, "/")
        for path in paths:
            page = client.post(path, data={"csrf": csrf}, follow_redirects=False)
            assert page.status_code == 403 and "vera has role viewer; this needs operator" in page.text, path


def test_tokens_act_with_their_role_and_stop_working_when_revoked(authed: Authed) -> None:
    operator = {"authorization": f"Bearer {authed.tokens['operator']}"}
    with authed.client() as client:
        created = client.post("/api/jobs/report/trigger", json={}, headers=operator)
        assert created.status_code == 201
        assert client.get("/api/jobs", headers={"authorization": "Bearer corral_made-up"}).status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Basic YWxpY2U6eA=="}).status_code == 401
        token_id = next(r["id"] for r in authed.store.list_tokens() if r["name"] == "ci-operator")
        authed.store.revoke_token(token_id, now=NOW)
        assert client.get("/api/jobs", headers=operator).status_code == 401


# -- audit log ---------------------------------------------------------------------------


def test_every_action_is_in_the_audit_log_with_who_did_it(authed: Authed) -> None:
    operator = {"authorization": f"Bearer {authed.tokens['operator']}"}
    with authed.client() as client:
        run = client.post("/api/jobs/report/trigger", json={}, headers=operator).json()
        assert client.post("/api/jobs/report/pause", json={}, headers=operator).status_code == 200
        assert client.post(f"/api/runs/{run['id']}/cancel", json={}, headers=operator).status_code == 200
        assert sign_in(client, "alice").status_code == 303
        csrf = form_csrf(client)
        assert client.post("/jobs/report/resume", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        running = authed.ids["running"]
        assert client.post(f"/runs/{running}/cancel", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        # A refused action leaves no entry.
        assert client.post(f"/api/runs/{run['id']}/cancel", json={}, headers=operator).status_code == 409

        entries = client.get("/api/audit").json()["entries"]
        got = [(e["actor"], e["role"], e["action"], e["job"], e["run_id"]) for e in entries]
        token = "ci-operator (token 2)"
        assert got == [
            ("alice", "admin", "cancel", "nightly-batch", running),
            ("alice", "admin", "resume", "report", None),
            (token, "operator", "cancel", "report", run["id"]),
            (token, "operator", "pause", "report", None),
            (token, "operator", "trigger", "report", run["id"]),
        ]
        assert entries[0]["detail"] == "asked the node running it to stop it"
        assert entries[2]["detail"] == "cancelled before it started"
        page = client.get("/audit").text
        assert "ci-operator (token 2)" in page and f'href="/runs/{run["id"]}"' in page and "action-pause" in page
        only = client.get("/api/audit?job=nightly-batch&limit=1").json()
        assert [e["action"] for e in only["entries"]] == ["cancel"] and only["next_before"] is None
        assert client.get("/api/audit?limit=0").status_code == 400
        assert client.get("/api/audit?jobs=x").status_code == 400


# -- secrets -----------------------------------------------------------------------------


def write_log(authed: Authed, job: str, run_id: int, data: bytes) -> Path:
    path = authed.config_path.parent / ".corral" / "logs" / job / f"{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_secret_env_values_are_masked_in_pages_api_yaml_and_logs(authed: Authed) -> None:
    secret = "tok-9f8e7d6c5b"
    run_id = executed(authed.store, "deploy", NOW - timedelta(minutes=5), 3)
    write_log(authed, "deploy", run_id, f"using {secret} now\nagain:{secret}\n".encode())
    viewer = {"authorization": f"Bearer {authed.tokens['viewer']}"}
    with authed.client() as client:
        job = client.get("/api/jobs/deploy", headers=viewer).json()
        assert secret not in json.dumps(job) and '{secret: "********"}' in job["source"]
        logged = client.get(f"/api/runs/{run_id}/log", headers=viewer).json()
        assert logged["text"] == "using ************** now\nagain:**************\n"
        # A range cut inside the secret still shows none of it.
        part = client.get(f"/api/runs/{run_id}/log?offset=10&limit=8", headers=viewer).json()
        assert part["text"] == "********"
        raw = client.get(f"/runs/{run_id}/log", headers=viewer)
        assert raw.status_code == 200 and secret.encode() not in raw.content and b"**************" in raw.content
        assert sign_in(client, "vera").status_code == 303
        for page in (f"/runs/{run_id}", "/jobs/deploy"):
            html = client.get(page).text
            assert secret not in html and "*****" in html, page


def test_secret_values_never_appear_in_job_file_errors() -> None:
    from corral import config

    with pytest.raises(errors.ConfigError) as caught:
        config.loads('jobs:\n  a:\n    run: "x"\n    env:\n      T: {secret: ["hunter2-secret"]}\n      U: {secrt: "hunter3-secret"}\n')
    text = str(caught.value)
    assert "hunter" not in text and "env.T" in text and "{secret: text}" in text


# -- the live log stream ----------------------------------------------------------------


def read_events(response: httpx.Response, until: str, deadline: float) -> list[tuple[str, dict[str, object]]]:
    events: list[tuple[str, dict[str, object]]] = []
    kind = ""
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {until} event in time; got {events}")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
            if kind == until:
                return events
    return events


def test_the_log_stream_sends_the_log_then_new_output_until_the_run_ends(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.yaml"
    config_path.write_text(SECRET_JOB_FILE)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(url)
    run_id = executed(store, "deploy", NOW, 0, state=t.RUNNING)
    log = tmp_path / ".corral" / "logs" / "deploy" / f"{run_id}.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"first line <script>\n")
    server = serve_in_thread(config_path, url, port=0)
    try:
        with httpx.stream("GET", f"{server.url}/api/runs/{run_id}/log/stream", timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            events: list[tuple[str, dict[str, object]]] = []
            kind = ""
            deadline = time.monotonic() + 10
            wrote = False
            for line in lines:
                assert time.monotonic() < deadline, events
                if line.startswith("event: "):
                    kind = line[7:]
                    continue
                if not line.startswith("data: "):
                    continue
                events.append((kind, json.loads(line[6:])))
                if kind == "log" and not wrote:
                    wrote = True
                    # Half a secret is held back until the rest arrives; then all of it is masked.
                    with log.open("ab") as fh:
                        fh.write(b"token tok-9f8e")
                        fh.flush()
                        time.sleep(0.8)
                        fh.write(b"7d6c5b done\n")
                    store.transition(run_id, t.SUCCEEDED, now=NOW + timedelta(seconds=5), exit_code=0)
                if kind == "end":
                    break
        texts = "".join(str(data["text"]) for kind, data in events if kind == "log")
        assert texts == "first line <script>\ntoken ************** done\n"
        assert ("state", {"state": "running", "active": True}) in events
        assert events[-1] == ("end", {"state": "succeeded", "next_offset": len(log.read_bytes())})

        # A reconnecting browser resumes from Last-Event-ID (the next offset).
        with httpx.stream(
            "GET", f"{server.url}/api/runs/{run_id}/log/stream", headers={"last-event-id": "11"}, timeout=10
        ) as again:
            got = read_events(again, "end", time.monotonic() + 10)
        assert "".join(str(d["text"]) for k, d in got if k == "log").startswith("<script>\ntoken ***")
    finally:
        server.stop()
        store.close()


def test_the_log_stream_of_an_unknown_or_malformed_run_is_a_json_error(authed: Authed) -> None:
    viewer = {"authorization": f"Bearer {authed.tokens['viewer']}"}
    with authed.client() as client:
        assert client.get("/api/runs/99999/log/stream", headers=viewer).status_code == 404
        assert client.get("/api/runs/abc/log/stream", headers=viewer).status_code == 400
        assert client.get("/api/runs/1/log/stream?offset=-1", headers=viewer).status_code == 400
        assert client.get("/api/runs/1/log/stream").status_code == 401
