"""Alerts on change, delivered to a local HTTP sink (127.0.0.1, no outside network)."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corral import notify
from corral.store import Store, open_store
from corral.store import tables as t

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)
SECRET = "s3cret"


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if sink.fail_next:
                    sink.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                sink.requests.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    yield s
    s.close()


def _run(store: Store, job: str, state: str, at: datetime, message: str = "") -> int:
    rid = store.create_run(job=job, state=t.PENDING, trigger="schedule", scheduled_for=at, now=at)
    assert rid is not None
    store.claim(rid, node="n", now=at)
    store.transition(rid, state, now=at + timedelta(minutes=1), message=message or None)
    return rid


def _notifier(store: Store, sink: Sink, **rule: object) -> notify.Notifier:
    channels = {
        "hook": notify.Channel(name="hook", type="webhook", url=sink.url, secret=SECRET),
        "discord": notify.Channel(name="discord", type="discord", url=sink.url),
    }
    return notify.Notifier(
        store, channels, default=notify.Rule(channels=("hook",), **rule), link="http://corral.local"  # type: ignore[arg-type]
    )


def test_fail_fail_fail_succeed_sends_one_failure_and_one_recovery(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink)
    for day in range(3):
        _run(store, "nightly", t.FAILED, T0 + timedelta(days=day), message="exited 2")
    ok = _run(store, "nightly", t.SUCCEEDED, T0 + timedelta(days=3))
    n.step(T0 + timedelta(days=3, hours=1))
    assert n.deliver_due(T0 + timedelta(days=3, hours=1)) == 2
    kinds = [b["kind"] for b in sink.bodies()]
    assert kinds == ["failure", "recovery"]
    recovery = sink.bodies()[1]
    assert recovery["run_id"] == ok and recovery["link"] == f"http://corral.local/runs/{ok}"
    assert "recovered" in str(recovery["text"]) and "3d" in str(recovery["text"])
    assert "exited 2" in str(sink.bodies()[0]["text"])
    n.step(T0 + timedelta(days=4))  # nothing new: nothing more
    assert n.deliver_due(T0 + timedelta(days=4)) == 0


def test_a_reminder_comes_after_the_interval_while_still_failing(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink, remind_every=timedelta(days=2))
    for day in range(4):
        _run(store, "nightly", t.FAILED, T0 + timedelta(days=day))
        n.step(T0 + timedelta(days=day, minutes=5))
    n.deliver_due(T0 + timedelta(days=5))
    assert [(b["kind"], b["reminder"]) for b in sink.bodies()] == [("failure", False), ("failure", True)]


def test_a_timeout_is_an_alert_never_an_ok(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink)
    _run(store, "nightly", t.TIMED_OUT, T0, message="killed after reaching its timeout")
    n.step(T0 + timedelta(hours=1))
    n.deliver_due(T0 + timedelta(hours=1))
    assert [b["kind"] for b in sink.bodies()] == ["timeout"]


def test_the_webhook_signature_verifies_with_the_shared_secret(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink)
    _run(store, "nightly", t.FAILED, T0)
    n.step(T0)
    n.deliver_due(T0)
    headers, body = sink.requests[0]
    stamp = headers[notify.TIMESTAMP_HEADER]
    expected = "sha256=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, "sha256").hexdigest()
    assert hmac.compare_digest(headers[notify.SIGNATURE_HEADER], expected)
    assert stamp == str(int(T0.timestamp()))
    assert set(json.loads(body)) >= {"kind", "job", "run_id", "text", "event_seq", "link"}


def test_a_500_is_retried_with_backoff_and_then_delivered_once(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink)
    _run(store, "nightly", t.FAILED, T0)
    n.step(T0)
    sink.fail_next = 1
    assert n.deliver_due(T0) == 0
    row = store.list_deliveries()[0]
    assert row["status"] == "pending" and row["attempts"] == 1 and "HTTP 500" in row["last_error"]
    assert n.deliver_due(T0 + timedelta(seconds=5)) == 0  # backoff not over yet
    assert n.deliver_due(T0 + notify.backoff(1)) == 1
    assert len(sink.requests) == 1 and store.list_deliveries()[0]["status"] == "sent"


def test_a_channel_that_keeps_failing_is_marked_failed(store: Store, sink: Sink) -> None:
    n = _notifier(store, sink)
    _run(store, "nightly", t.FAILED, T0)
    n.step(T0)
    sink.fail_next = 100
    now = T0
    for _ in range(notify.MAX_ATTEMPTS):
        n.deliver_due(now)
        now += notify.MAX_BACKOFF
    row = store.list_deliveries()[0]
    assert row["status"] == "failed" and row["attempts"] == notify.MAX_ATTEMPTS


def test_discord_gets_content_and_quiet_hours_suppress(store: Store, sink: Sink) -> None:
    channels = {"discord": notify.Channel(name="discord", type="discord", url=sink.url)}
    quiet = notify.QuietHours(start=time(22, 0), end=time(7, 0), timezone="Asia/Seoul")
    n = notify.Notifier(store, channels, default=notify.Rule(channels=("discord",), quiet_hours=quiet))
    _run(store, "a", t.FAILED, T0)
    n.step(T0)  # 12:00 in Seoul: not quiet
    _run(store, "b", t.FAILED, T0)
    n.step(datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc))  # 23:00 in Seoul
    n.deliver_due(T0 + timedelta(days=1))
    assert [set(b) for b in sink.bodies()] == [{"content"}]
    assert sorted(r["status"] for r in store.list_deliveries()) == ["sent", "suppressed"]


def test_the_rate_limit_caps_messages_per_channel_and_hour(store: Store, sink: Sink) -> None:
    channels = {"hook": notify.Channel(name="hook", type="webhook", url=sink.url, rate_limit=2)}
    n = notify.Notifier(store, channels, default=notify.Rule(channels=("hook",)))
    for job in ("a", "b", "c"):
        _run(store, job, t.FAILED, T0)
    n.step(T0)
    assert sorted(r["status"] for r in store.list_deliveries()) == ["pending", "pending", "suppressed"]


def test_the_notifier_thread_delivers_without_the_scheduler(store: Store, sink: Sink) -> None:
    from corral.clock import SystemClock

    n = _notifier(store, sink)
    thread, stop = n.start_thread(SystemClock(), interval=0.05)
    try:
        _run(store, "nightly", t.FAILED, datetime.now(timezone.utc))
        deadline = datetime.now(timezone.utc) + timedelta(seconds=10)
        while not sink.requests and datetime.now(timezone.utc) < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert [b["kind"] for b in sink.bodies()] == ["failure"]


def test_a_crash_between_send_and_mark_sent_resends_once_and_no_more(
    store: Store, sink: Sink, tmp_path: Path
) -> None:
    """At least once, never more: the receiver sees the alert twice at worst,
    both times with the same event_seq to deduplicate on."""
    import os
    import signal
    import subprocess
    import sys

    n = _notifier(store, sink)
    _run(store, "nightly", t.FAILED, T0, message="exited 2")
    n.step(T0 + timedelta(minutes=2))
    # A separate process sends; the sink holds its answer until that process is killed.
    got_first = threading.Event()
    release = threading.Event()
    original = sink.server.RequestHandlerClass.do_POST

    def hold_first(handler: object) -> None:
        if not got_first.is_set():
            body = handler.rfile.read(int(handler.headers["Content-Length"]))  # type: ignore[attr-defined]
            sink.requests.append((dict(handler.headers), body))  # type: ignore[attr-defined]
            got_first.set()
            release.wait(10)
            return  # the sender is dead by now: nobody reads an answer
        original(handler)  # type: ignore[arg-type]

    sink.server.RequestHandlerClass.do_POST = hold_first  # type: ignore[method-assign]
    script = (
        "import sys; from datetime import datetime, timezone\n"
        "from corral import notify\nfrom corral.store import open_store\n"
        f"store = open_store({str(store.url)!r})\n"
        f"ch = {{'hook': notify.Channel(name='hook', type='webhook', url={sink.url!r}, secret={SECRET!r})}}\n"
        "n = notify.Notifier(store, ch, default=notify.Rule(channels=('hook',)), link='http://corral.local')\n"
        f"n.deliver_due(datetime.fromisoformat({(T0 + timedelta(minutes=3)).isoformat()!r}))\n"
    )
    sender = subprocess.Popen([sys.executable, "-c", script], cwd=str(tmp_path))
    try:
        assert got_first.wait(20), "the sender never sent"
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait(10)
    finally:
        release.set()
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    # The next sender (after the restart) finds the delivery still pending and sends it again, once.
    later = T0 + timedelta(hours=2)
    assert n.deliver_due(later) == 1
    assert n.deliver_due(later + timedelta(hours=1)) == 0
    bodies = sink.bodies()
    assert len(bodies) == 2
    assert bodies[0]["event_seq"] == bodies[1]["event_seq"] and bodies[0]["kind"] == "failure"


def test_a_run_that_fails_after_writing_verdict_ok_is_recorded_and_alerted_as_failed(
    tmp_path: Path, sink: Sink
) -> None:
    """Seed 000's revalidation once recorded a timeout as "ok": here an error can never read as success."""
    from tests.e2e.helpers import running_engine, wait_for, write_config

    path = write_config(
        tmp_path,
        f"notify:\n  channels:\n    hook: {{type: webhook, url: '{sink.url}', secret: {SECRET}}}\n"
        "  default: {channels: [hook], on: [failure, recovery]}\n"
        "jobs:\n  revalidate:\n    steps:\n"
        "      - name: check\n"
        "        run: 'echo verdict=ok >> \"$CORRAL_OUTPUT\"; echo note=refresh >> \"$CORRAL_OUTPUT\"; exit 1'\n",
    )
    with running_engine(path) as (engine, store):
        now = datetime.now(timezone.utc)
        rid = store.create_run(job="revalidate", state="pending", trigger="manual", scheduled_for=now, now=now,
                               admitted=False)
        assert rid is not None
        engine.wake()
        run = wait_for(lambda: (r := store.get_run(rid)).state in t.FINAL_STATES and r, timeout=30)
        result = store.get_run_result(rid)
        wait_for(lambda: sink.bodies(), timeout=30, what="the alert")
    assert run.state == t.FAILED
    assert result is not None and result["verdict"] == "error" and "ok" in (result["note"] or "")
    assert [b["kind"] for b in sink.bodies()] == ["failure"]


class SmtpSink:
    """The smallest SMTP server a client can deliver to, on 127.0.0.1, for one test."""

    def __init__(self) -> None:
        import socketserver

        self.messages: list[tuple[str, list[str], str]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def say(line: str) -> None:
                    self.wfile.write((line + "\r\n").encode())

                say("220 sink ready")
                sender, rcpts = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    cmd = raw.decode().strip()
                    upper = cmd.upper()
                    if upper.startswith(("EHLO", "HELO")):
                        say("250 sink")
                    elif upper.startswith("MAIL FROM:"):
                        sender = cmd[10:].strip(" <>")
                        say("250 ok")
                    elif upper.startswith("RCPT TO:"):
                        rcpts.append(cmd[8:].strip(" <>"))
                        say("250 ok")
                    elif upper == "DATA":
                        say("354 go on")
                        data = []
                        while (line := self.rfile.readline().decode()) not in (".\r\n", ""):
                            data.append(line)
                        sink.messages.append((sender, rcpts, "".join(data)))
                        say("250 queued")
                    elif upper == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_email_alerts_reach_an_smtp_server(store: Store) -> None:
    smtp = SmtpSink()
    try:
        channel = notify.Channel(
            name="mail", type="email", to=("ops@example.com",), sender="corral@example.com",
            smtp_host="127.0.0.1", smtp_port=smtp.port,
        )
        n = notify.Notifier(store, {"mail": channel}, default=notify.Rule(channels=("mail",)), link="http://corral.local")
        rid = _run(store, "nightly", t.FAILED, T0, message="exited 2")
        n.step(T0 + timedelta(minutes=2))
        assert n.deliver_due(T0 + timedelta(minutes=2)) == 1
    finally:
        smtp.close()
    [(sender, rcpts, data)] = smtp.messages
    assert sender == "corral@example.com" and rcpts == ["ops@example.com"]
    assert "Subject: [corral]" in data and "nightly" in data and f"http://corral.local/runs/{rid}" in data
