"""An idle ``corral up`` stays small and asleep: the job file is checked in a
child process (YAML, pydantic and the dashboard's libraries stay out of the
long-lived one), and an edit of the file wakes the engine instead of a look
every 2 seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corral import config, config_child, errors, filewatch
from corral.store import Store

JOB_FILE = textwrap.dedent(
    """\
    timezone: Europe/Berlin
    notify:
      channels:
        ops: {type: discord, url: {secret: "https://discord.com/api/webhooks/1/tok"}}
      default: {channels: [ops], on: [failure, missed], missed_after: 26h}
    jobs:
      nightly:
        run: "echo $TOKEN"
        env: {TOKEN: {secret: abc}, PLAIN: 1}
        schedule: ["0 1 * * *", {every: 30h}, "@daily"]
        retries: 3
      staged:
        steps:
          - {name: one, run: "echo 1"}
          - {name: two, run: ["echo", 2], needs: one}
        schedule: {after_completion: 6h}
    """
)

HEAVY = ["pydantic", "yaml", "corral.config", "alembic", "starlette", "jinja2", "httpx", "prometheus_client", "rich", "asyncssh", "uvicorn"]


def test_an_engine_built_as_corral_up_builds_it_imports_no_checker_and_no_dashboard(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    script = textwrap.dedent(
        f"""\
        import json, sys
        from corral import cli
        from corral.config_child import load_in_child
        from corral.engine import Engine
        from corral.store import Store, migrate

        cfg = load_in_child({str(path)!r})
        store = Store(cfg.settings.store_url)
        migrate.upgrade_in_child(cfg.settings.store_url, store.engine)
        engine = Engine(cfg, store)
        engine.start()
        engine.step()
        engine.request_stop()
        engine.shutdown()
        print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_the_child_returns_what_loading_in_process_returns(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    assert config_child.load_in_child(path) == config.load(path)


def test_the_child_reports_the_same_problems(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text("jobs:\n  a:\n    run: 'true'\n    schedule: '0 25 * * *'\n    retries: lots\n")
    with pytest.raises(errors.ConfigError) as here:
        config.load(path)
    with pytest.raises(errors.ConfigError) as child:
        config_child.load_in_child(path)
    assert child.value.problems == here.value.problems and str(child.value) == str(here.value)


def test_the_child_sees_the_environment_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text("jobs:\n  a:\n    run: 'true'\n")
    environ = dict(os.environ, CORRAL_DB="sqlite:////elsewhere/corral.db")
    assert config_child.load_in_child(path, environ=environ).settings.store_url == "sqlite:////elsewhere/corral.db"


def test_a_child_that_cannot_run_means_loading_in_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text(JOB_FILE)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    assert config_child.load_in_child(path) == config.load(path)


def _watched(path: Path) -> tuple[filewatch.Watch, threading.Event]:
    woken = threading.Event()
    watch = filewatch.watch(path, woken.set)
    if watch is None:
        pytest.skip("inotify is not available here")
    return watch, woken


def _wakes(woken: threading.Event, change: Callable[[], object]) -> bool:
    woken.clear()
    change()
    return woken.wait(10)  # at once when it works; the deadline only stops a failing test


def test_a_watch_wakes_on_writes_renames_touches_and_deletes_of_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "corral.yaml"
    path.write_text("a")
    (tmp_path / "new.yaml").write_text("c")
    watch, woken = _watched(path)
    try:
        assert _wakes(woken, lambda: path.write_text("b"))
        assert _wakes(woken, lambda: os.replace(tmp_path / "new.yaml", path))  # as editors save
        assert _wakes(woken, lambda: os.utime(path))
        assert _wakes(woken, lambda: path.unlink())
        woken.clear()
        (tmp_path / "other.txt").write_text("x")
        assert not woken.wait(0.3)
    finally:
        watch.close()
    assert not watch.alive


def test_a_watch_through_a_symlink_wakes_on_the_target_and_on_a_swapped_link(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "corral.yaml").write_text("a")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "corral.yaml").write_text("b")
    os.symlink("v1", tmp_path / "..data")
    os.symlink("..data/corral.yaml", tmp_path / "corral.yaml")
    watch, woken = _watched(tmp_path / "corral.yaml")
    try:
        assert _wakes(woken, lambda: (tmp_path / "v1" / "corral.yaml").write_text("c"))
        # A ConfigMap update: a new link renamed over ..data.
        os.symlink("v2", tmp_path / "..data_tmp")
        assert _wakes(woken, lambda: os.replace(tmp_path / "..data_tmp", tmp_path / "..data"))
    finally:
        watch.close()


def test_a_watch_whose_directory_goes_away_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    watch, woken = _watched(folder / "corral.yaml")
    try:
        assert _wakes(woken, lambda: folder.rmdir())
        deadline = time.monotonic() + 10
        while watch.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not watch.alive
    finally:
        watch.close()


def test_an_idle_engine_with_a_watched_job_file_sleeps_until_the_store_poll_and_an_edit_wakes_it(
    tmp_path: Path, store: Store
) -> None:
    from corral.engine import RELOAD_CHECK, Engine

    path = tmp_path / "corral.yaml"
    path.write_text("jobs:\n  daily:\n    run: 'true'\n    schedule: '0 3 * * *'\n")
    engine = Engine(config.load(path, environ={}), store)
    engine.start()
    try:
        if engine._watch is None:
            pytest.skip("inotify is not available here")
        engine.step()
        assert engine.step() > RELOAD_CHECK  # no 2 s look at the file
        engine._wake.clear()
        path.write_text("jobs:\n  daily:\n    run: 'true'\n    schedule: '0 4 * * *'\n")
        assert engine._wake.wait(10)
        engine.step()
        assert engine.cfg.jobs["daily"].schedules[0].text == "0 4 * * *"
    finally:
        engine.request_stop()
        engine.shutdown()


def test_an_idle_engine_wakes_once_a_minute_on_sqlite_with_the_heartbeat_and_every_15s_on_a_shared_store(
    tmp_path: Path, store: Store
) -> None:
    from datetime import datetime, timezone

    from corral import engine as engine_mod
    from corral.clock import FakeClock
    from corral.engine import Engine

    path = tmp_path / "corral.yaml"
    path.write_text("jobs:\n  daily:\n    run: 'true'\n    schedule: '0 3 * * *'\n")
    clock = FakeClock(datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc))
    engine = Engine(config.load(path, environ={}), store, clock=clock)
    engine.start()
    try:
        if engine._watch is None:
            pytest.skip("inotify is not available here")
        engine.step()
        sleep = engine.step()
        if store.dialect == "sqlite":
            # Every writer of a SQLite store is on this machine and wakes the engine:
            # the look at the store is a safety net, made with the heartbeat.
            assert engine_mod.LOCAL_STORE_POLL - 5 < sleep <= engine_mod.LOCAL_STORE_POLL
        else:
            assert engine_mod.STORE_POLL - 5 < sleep <= engine_mod.STORE_POLL
        # The heartbeat falls on a poll's wake-up (every one on SQLite, every 4th on PostgreSQL) ...
        assert (engine._next_beat - engine._next_poll) % engine._poll_every < 1
        # ... and that wake-up writes it when it is due within BEAT_SLACK.
        engine._next_poll = time.monotonic()
        engine._next_beat = time.monotonic() + engine_mod.BEAT_SLACK / 2
        clock.advance(60)
        engine.step()
        [node] = [n for n in store.live_nodes() if n["name"] == engine.node]
        assert node["heartbeat_at"] == clock.now()
    finally:
        engine.request_stop()
        engine.shutdown()


_NODE = textwrap.dedent(
    """\
    import signal, sys, time
    from datetime import datetime, timezone
    from corral.store import open_store
    if sys.argv[2] == "handler":
        signal.signal(signal.SIGUSR1, lambda *_: print("woken", flush=True))
    open_store(sys.argv[1]).register_node(sys.argv[3], config_path="corral.yaml", now=datetime.now(timezone.utc))
    print("ready", flush=True)
    time.sleep(30)
    """
)


def test_a_change_wakes_the_engines_that_handle_the_signal_and_kills_none(tmp_path: Path, sqlite_url: str) -> None:
    """An engine embedded in a Python program (no corral up, no signal
    handlers) is registered like any other; the signal that wakes corral up
    would end it, so it is not sent there."""
    from corral.engine import notify_running_engines
    from corral.store import open_store

    script = tmp_path / "corral_node.py"  # "corral" in its command line, as corral up has
    script.write_text(_NODE)
    open_store(sqlite_url).close()
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for kind in ("handler", "bare"):
            procs[kind] = subprocess.Popen(
                [sys.executable, str(script), sqlite_url, kind, f"node-{kind}"], stdout=subprocess.PIPE, text=True
            )
            assert procs[kind].stdout is not None and procs[kind].stdout.readline().strip() == "ready"
        store = open_store(sqlite_url)
        try:
            assert notify_running_engines(store) == 1
        finally:
            store.close()
        assert procs["handler"].stdout is not None and procs["handler"].stdout.readline().strip() == "woken"
        time.sleep(0.3)
        assert procs["bare"].poll() is None, "the engine without a handler was ended by the signal"
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
