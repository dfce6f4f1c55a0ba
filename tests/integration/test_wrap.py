"""``corral wrap --ping URL -- command``, end to end against a local HTTP sink (127.0.0.1)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PING = "/ping/3f2b8c1e-6d4a-4e8b-9c1f-2a7d5e9b0c44"


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.requests.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(sink.status)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"OK\n")

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PING}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def wrap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", "wrap", *args], capture_output=True, text=True, timeout=60)


def test_it_pings_start_then_the_exit_code_with_the_tail_and_exits_with_the_commands_status(sink: Sink) -> None:
    script = "for i in $(seq 1 80); do echo line $i; done; echo oops >&2; exit 3"
    done = wrap("--ping", sink.url, "--", "sh", "-c", script)
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"line {i}" for i in range(1, 81)]  # passed through unchanged
    assert done.stderr == "oops\n"
    assert [(m, p) for m, p, _ in sink.requests] == [("POST", f"{PING}/start"), ("POST", f"{PING}/3")]
    # Both streams go into the tail (how they interleave depends on timing).
    lines = sink.requests[1][2].decode().splitlines()
    assert len(lines) == 50 and set(lines) <= {"oops", *(f"line {i}" for i in range(1, 81))}


def test_the_tail_is_the_last_lines(sink: Sink) -> None:
    done = wrap("--ping", sink.url, "--", "sh", "-c", "for i in $(seq 1 80); do echo line $i; done")
    assert done.returncode == 0
    assert sink.requests[1][2].decode().splitlines() == [f"line {i}" for i in range(31, 81)]
    wrap("--ping", sink.url, "--tail", "200", "--", "sh", "-c", "echo one; echo two >&2; echo three")
    assert sorted(sink.requests[3][2].decode().splitlines()) == ["one", "three", "two"]


def test_success_pings_zero_and_options_after_the_dashes_belong_to_the_command(sink: Sink) -> None:
    done = wrap("--ping", sink.url + "/", "--tail", "1", "--", "echo", "--ping", "x")
    assert done.returncode == 0 and done.stdout == "--ping x\n"
    assert [p for _, p, _ in sink.requests] == [f"{PING}/start", f"{PING}/0"]
    assert sink.requests[1][2] == b"--ping x\n"


def test_a_missing_command_is_127_and_an_unreachable_monitor_never_changes_the_status(sink: Sink) -> None:
    done = wrap("--ping", sink.url, "--", "/nonexistent/backup.sh")
    assert done.returncode == 127 and "cannot run '/nonexistent/backup.sh'" in done.stderr
    assert sink.requests[-1][1] == f"{PING}/127"
    sink.status = 404  # e.g. a wrong id: reported, not retried, the command's status kept
    done = wrap("--ping", sink.url, "--timeout", "2", "--", "sh", "-c", "exit 0")
    assert done.returncode == 0
    assert "start ping not delivered: HTTP 404" in done.stderr and "exit ping not delivered: HTTP 404" in done.stderr
    assert len(sink.requests) == 4  # 2 from the first wrap, then one attempt each for the 404s
