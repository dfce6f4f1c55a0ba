"""Pipelines with real processes and a real store: parallel steps, skips,
resume from the failed steps, outputs and results, parameters, cancel and timeout."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from corral.engine import Engine
from corral.store import Store, open_store
from corral.store import tables as t
from tests.e2e.helpers import pid_alive, run_cli, running_engine, store_outage, wait_for, write_config

pytestmark = pytest.mark.slow


def _trigger(engine: Engine, store: Store, job: str, params: dict[str, Any] | None = None) -> int:
    now = datetime.now(timezone.utc)
    run_id = store.create_run(
        job=job, state=t.PENDING, trigger="manual", scheduled_for=now, now=now, admitted=False, params=params
    )
    assert run_id is not None
    engine.wake()
    return run_id


def _finished(store: Store, run_id: int, timeout: float = 20) -> Any:
    return wait_for(
        lambda: (r := store.get_run(run_id)).state in t.FINAL_STATES and r, timeout=timeout, what=f"run {run_id} ends"
    )


def _steps(store: Store, run_id: int) -> dict[str, Any]:
    return {step.name: step for step in store.get_steps(run_id)}


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_independent_steps_overlap_up_to_parallelism_and_dependants_wait(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  fan:
    parallelism: 2
    steps:
      - {name: "31", run: "sleep 0.5"}
      - {name: "32", run: "sleep 0.5"}
      - {name: "33", run: "sleep 0.5"}
      - {name: "61", run: "sleep 0.1", needs: ["31", "32", "33"]}
""",
    )
    with running_engine(path) as (engine, store):
        run = _finished(store, _trigger(engine, store, "fan"))
        steps = _steps(store, run.id)
    assert run.state == t.SUCCEEDED and run.exit_code == 0
    first = [(steps[n].started_at, steps[n].ended_at) for n in ("31", "32", "33")]
    assert _most_at_once(first) == 2  # they overlapped, never more than parallelism
    assert steps["31"].started_at < steps["32"].ended_at and steps["32"].started_at < steps["31"].ended_at
    assert steps["61"].started_at >= max(end for _, end in first)
    assert all(s.state == t.SUCCEEDED and s.exit_code == 0 and s.log_path for s in steps.values())
    assert run.started_at <= steps["31"].started_at and run.ended_at >= steps["61"].ended_at


def test_a_failed_step_skips_its_dependants_not_its_siblings_and_from_failed_reruns_exactly_those(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  stages:
    parallelism: 3
    steps:
      - {name: a, run: "echo a >> ran"}
      - {name: b, run: "echo b >> ran; test -f fixed || exit 3", needs: [a]}
      - {name: c, run: "echo c >> ran", needs: [b]}
      - {name: d, run: "echo d >> ran", needs: [a]}
      - {name: e, run: "echo e >> ran", needs: [c, d]}
""",
    )
    ran = tmp_path / "ran"
    with running_engine(path) as (engine, store):
        first = _finished(store, _trigger(engine, store, "stages"))
        steps = _steps(store, first.id)
        assert first.state == t.FAILED and first.reason == "step_failed" and first.exit_code == 3
        assert {n: s.state for n, s in steps.items()} == {
            "a": t.SUCCEEDED, "b": t.FAILED, "c": t.SKIPPED, "d": t.SUCCEEDED, "e": t.SKIPPED,
        }
        assert steps["c"].reason == steps["e"].reason == "upstream_failed"
        assert "step b ended failed" in (steps["c"].message or "")
        assert sorted(ran.read_text().split()) == ["a", "b", "d"]

        ran.write_text("")
        (tmp_path / "fixed").touch()
        out = run_cli(path, "retry", str(first.id), "--from-failed").stdout
        assert "reruns b, c, e, keeps a, d" in out
        second_id = store.list_runs(job="stages", limit=1)[0].id
        engine.wake()
        second = _finished(store, second_id)
        again = _steps(store, second.id)
    assert sorted(ran.read_text().split()) == ["b", "c", "e"]
    assert second.state == t.SUCCEEDED and second.retry_of == first.id and second.attempt == 2
    assert (again["a"].reason, again["a"].kept_from) == ("kept", steps["a"].id)
    assert (again["d"].reason, again["d"].kept_from) == ("kept", steps["d"].id)
    assert all(again[n].state == t.SUCCEEDED and again[n].kept_from is None for n in "bce")


def test_outputs_reach_later_steps_and_the_result_never_reads_ok_after_an_error(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  check:
    steps:
      - {name: count, run: 'printf "files=12\\nverdict=refresh\\nnote=PID is stale\\n" > "$CORRAL_OUTPUT"'}
      - {name: report, run: 'echo "{\\"bytes\\": 34}" > "$CORRAL_OUTPUT"; echo "$CORRAL_OUTPUT_FILES" > seen', needs: [count]}
  broken:
    steps:
      - {name: ask, run: 'echo verdict=ok > "$CORRAL_OUTPUT"; echo "read timed out" >&2; exit 1'}
""",
    )
    with running_engine(path) as (engine, store):
        good = _finished(store, _trigger(engine, store, "check"))
        bad = _finished(store, _trigger(engine, store, "broken"))
    assert (tmp_path / "seen").read_text().strip() == "12"
    shown = json.loads(run_cli(path, "show", str(good.id), "--json").stdout)
    assert shown["state"] == t.SUCCEEDED
    assert shown["outputs"] == {"files": "12", "verdict": "refresh", "note": "PID is stale", "bytes": "34"}
    assert shown["result"] == {"verdict": "refresh", "note": "PID is stale"}
    assert [(s["name"], s["state"], s["exit_code"]) for s in shown["steps"]] == [
        ("count", "succeeded", 0), ("report", "succeeded", 0),
    ]
    assert set(shown["steps"][0]) >= {"name", "state", "reason", "started_at", "ended_at", "exit_code"}
    failed = json.loads(run_cli(path, "show", str(bad.id), "--json").stdout)
    assert failed["state"] == t.FAILED and failed["exit_code"] == 1
    assert failed["result"]["verdict"] == "error" and "verdict=ok" in failed["result"]["note"]
    assert failed["outputs"] == {}
    assert run_cli(path, "logs", str(bad.id), "--step", "ask").stdout == "read timed out\n"
    every = run_cli(path, "logs", str(good.id)).stdout
    assert "==> step count (succeeded) <==" in every and "==> step report (succeeded) <==" in every
    unknown = run_cli(path, "logs", str(good.id), "--step", "reprot", check=False)
    assert unknown.returncode == 1 and 'no step "reprot"; did you mean "report"?' in unknown.stderr


HOSTILE = "it's \"quoted\"; touch pwned1 $(touch pwned2) `touch pwned3` && echo $HOME\nline two\\n"


def test_hostile_parameter_values_arrive_intact_and_unexecuted(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  steps-job:
    params:
      msg: {type: string}
      count: {type: int, default: 2}
      loud: {type: bool, default: false}
    steps:
      - {name: echo, run: 'printf "%s" "$CORRAL_PARAM_MSG" > got-step; echo "$CORRAL_PARAM_COUNT $CORRAL_PARAM_LOUD" > typed'}
  plain-job:
    params:
      msg: {type: string, default: x}
    run: 'printf "%s" "$CORRAL_PARAM_MSG" > got-plain'
""",
    )
    bad = run_cli(path, "trigger", "steps-job", "--param", "msg=x", "--param", "count=many", check=False)
    assert bad.returncode == 1 and "parameter count: 'many' is not a whole number" in bad.stderr
    missing = run_cli(path, "trigger", "steps-job", check=False)
    assert missing.returncode == 1 and "parameter msg is required; pass --param msg=VALUE" in missing.stderr
    with running_engine(path) as (engine, store):
        first = json.loads(run_cli(path, "trigger", "steps-job", "--param", f"msg={HOSTILE}", "--param", "loud=yes", "--json").stdout)
        second = json.loads(run_cli(path, "trigger", "plain-job", "--param", f"msg={HOSTILE}", "--json").stdout)
        engine.wake()
        assert _finished(store, first["id"]).state == t.SUCCEEDED
        assert _finished(store, second["id"]).state == t.SUCCEEDED
    assert first["params"] == {"msg": HOSTILE, "count": 2, "loud": True}
    assert (tmp_path / "got-step").read_text() == HOSTILE
    assert (tmp_path / "got-plain").read_text() == HOSTILE
    assert (tmp_path / "typed").read_text().split() == ["2", "true"]
    assert not any((tmp_path / f"pwned{i}").exists() for i in (1, 2, 3))


def test_cancel_stops_every_running_step_tree_and_skips_the_rest(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  long:
    parallelism: 2
    kill_grace: 1s
    steps:
      - {name: left, run: "sleep 300 & echo $! >> kids; wait"}
      - {name: right, run: "sleep 300 & echo $! >> kids; wait"}
      - {name: after, run: "true", needs: [left, right]}
""",
    )
    kids = tmp_path / "kids"
    with running_engine(path) as (engine, store):
        run_id = _trigger(engine, store, "long")
        wait_for(lambda: kids.exists() and len(kids.read_text().split()) == 2, what="both steps running")
        store.request_stop(run_id, "cancel", now=datetime.now(timezone.utc))
        engine.wake()
        run = _finished(store, run_id)
        steps = _steps(store, run_id)
    assert run.state == t.CANCELLED and run.reason == "cancelled"
    assert steps["left"].state == steps["right"].state == t.CANCELLED
    assert (steps["after"].state, steps["after"].reason) == (t.SKIPPED, "cancelled")
    wait_for(lambda: not any(pid_alive(int(pid)) for pid in kids.read_text().split()), timeout=10, what="trees gone")


def test_a_run_timeout_stops_all_steps_and_a_step_retry_runs_again(tmp_path: Path) -> None:
    # The timeout leaves the flaky step time for both of its tries (a fraction of
    # a second, but much longer on a loaded machine) before it stops the hang.
    path = write_config(
        tmp_path,
        """
jobs:
  slow:
    timeout: 5s
    kill_grace: 1s
    parallelism: 2
    steps:
      - {name: flaky, run: "echo x >> tries; test $(wc -l < tries) -ge 2", retries: {attempts: 2, backoff: 0s}}
      - {name: hang, run: "sleep 300"}
      - {name: never, run: "true", needs: [hang]}
""",
    )
    with running_engine(path) as (engine, store):
        run = _finished(store, _trigger(engine, store, "slow"))
        steps = _steps(store, run.id)
    assert run.state == t.TIMED_OUT and run.reason == "timeout"
    assert (steps["flaky"].state, steps["flaky"].attempt) == (t.SUCCEEDED, 2)
    assert steps["hang"].state == t.TIMED_OUT
    assert (steps["never"].state, steps["never"].reason) == (t.SKIPPED, "timeout")
    assert (tmp_path / "tries").read_text().count("x") == 2
    assert os.path.exists(steps["hang"].log_path)


def test_a_step_retry_waits_out_its_backoff_and_a_run_timeout_is_not_held_up_by_one(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  flaky:
    steps:
      - {name: fetch, run: "date +%s.%N >> tries; test $(wc -l < tries) -ge 2",
         retries: {attempts: 2, backoff: 1500ms, jitter: 0}}
      - {name: after, run: "true", needs: [fetch]}
  patient:
    timeout: 3s
    steps:
      - {name: never-good, run: "exit 75", retries: {attempts: 3, backoff: 1h, exit_codes: [75]}}
""",
    )
    with running_engine(path) as (engine, store):
        flaky = _finished(store, _trigger(engine, store, "flaky"))
        steps = _steps(store, flaky.id)
        started = datetime.now(timezone.utc)
        patient = _finished(store, _trigger(engine, store, "patient"))
        waited = (datetime.now(timezone.utc) - started).total_seconds()
        patient_steps = _steps(store, patient.id)
    assert flaky.state == t.SUCCEEDED
    assert (steps["fetch"].state, steps["fetch"].attempt) == (t.SUCCEEDED, 2)
    first, second = (float(x) for x in (tmp_path / "tries").read_text().split())
    assert second - first >= 1.5  # the backoff, not at once
    assert steps["after"].state == t.SUCCEEDED
    # The retry would come in an hour; the run's timeout of 3 s (time enough for
    # the first try, even on a loaded machine) ends it first.
    assert patient.state == t.TIMED_OUT, patient.message
    assert waited < 15
    step = patient_steps["never-good"]
    assert (step.state, step.attempt) == (t.SKIPPED, 2)
    assert step.reason == "timeout"


def test_a_run_waiting_to_retry_a_step_ends_at_shutdown_instead_of_staying_running(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
jobs:
  waits:
    steps:
      - {name: fetch, run: "exit 3", retries: {attempts: 2, backoff: 1h}}
      - {name: load, run: "true", needs: [fetch]}
""",
    )

    def fetch_waits(store: Store, run_id: int) -> bool:
        step = _steps(store, run_id).get("fetch")
        return step is not None and step.state == t.PENDING and step.attempt == 2

    with running_engine(path) as (engine, store):
        run_id = _trigger(engine, store, "waits")
        wait_for(lambda: fetch_waits(store, run_id), what="first try failed, its retry waiting")
    # Leaving running_engine stopped the engine, as SIGTERM does.
    reopened = open_store(f"sqlite:///{tmp_path / '.corral' / 'corral.db'}")
    try:
        run, steps = reopened.get_run(run_id), _steps(reopened, run_id)
    finally:
        reopened.close()
    assert (run.state, run.reason) == (t.CANCELLED, "shutdown"), run.message
    assert (steps["fetch"].state, steps["fetch"].reason) == (t.SKIPPED, "shutdown")
    assert steps["load"].state == t.SKIPPED


def test_a_store_that_fails_mid_pipeline_loses_no_step_and_the_run_ends(tmp_path: Path) -> None:
    """The write of a step's end (with the start of the next) fails in the
    database itself; once the store works again, both are recorded, the
    last step's end is too, and the run ends. A trigger that fails (on
    malformed JSON) makes the real SQLite refuse exactly that write."""
    path = write_config(
        tmp_path,
        "jobs:\n  chain:\n    steps:\n"
        "      - {name: one, run: 'true'}\n"
        "      - {name: two, run: 'touch two-done', needs: [one]}\n"
        f"      - {{name: three, run: \"while [ ! -e '{tmp_path / 'gate'}' ]; do sleep 0.02; done\", needs: [two]}}\n",
    )
    with running_engine(path) as (engine, store):
        end_outage = store_outage(tmp_path, "UPDATE ON steps", "NEW.name = 'two' AND NEW.state = 'succeeded'")
        run_id = _trigger(engine, store, "chain")
        wait_for(lambda: (tmp_path / "two-done").exists(), timeout=20, what="step two ran")
        wait_for(lambda: _steps(store, run_id)["two"].state == t.RUNNING and _steps(store, run_id)["three"].state == t.PENDING,
                 timeout=5, what="the write of two's end was refused")
        time.sleep(0.3)
        assert _steps(store, run_id)["two"].state == t.RUNNING  # still refused
        end_outage()
        # Step three is still running; its start and two's end are recorded
        # on the engine's next try, without waiting for three to end.
        wait_for(lambda: _steps(store, run_id)["two"].state == t.SUCCEEDED, timeout=10, what="two's end recorded")
        assert _steps(store, run_id)["three"].state == t.RUNNING
        (tmp_path / "gate").touch()
        run = _finished(store, run_id)
    assert run.state == t.SUCCEEDED, run.message
    steps = _steps(store, run_id)
    assert {name: s.state for name, s in steps.items()} == dict.fromkeys(("one", "two", "three"), t.SUCCEEDED)
    assert all(s.started_at is not None and s.ended_at is not None and s.exit_code == 0 for s in steps.values())
    assert steps["two"].ended_at <= steps["three"].started_at  # type: ignore[operator]


def test_a_store_that_fails_as_a_pipeline_ends_still_ends_the_run(tmp_path: Path) -> None:
    path = write_config(tmp_path, "jobs:\n  last:\n    steps:\n      - {name: only, run: 'echo verdict=ok > $CORRAL_OUTPUT'}\n")
    with running_engine(path) as (engine, store):
        end_outage = store_outage(tmp_path, "UPDATE ON runs", "NEW.job = 'last' AND NEW.state = 'succeeded'")
        run_id = _trigger(engine, store, "last")
        wait_for(lambda: _steps(store, run_id).get("only") is not None and _steps(store, run_id)["only"].state == t.SUCCEEDED,
                 timeout=20, what="the step's end recorded")
        time.sleep(0.5)
        assert store.get_run(run_id).state == t.RUNNING  # its end refused
        end_outage()
        run = _finished(store, run_id, timeout=10)
        result = store.get_run_result(run_id)
    assert run.state == t.SUCCEEDED, run.message
    assert result is not None and result["verdict"] == "ok" and result["outputs"] == {"verdict": "ok"}


def test_a_store_that_refuses_a_pipelines_steps_at_its_start_holds_the_run_until_it_works(tmp_path: Path) -> None:
    path = write_config(tmp_path, "jobs:\n  held:\n    steps:\n      - {name: a, run: 'true'}\n      - {name: b, run: 'true', needs: [a]}\n")
    with running_engine(path) as (engine, store):
        end_outage = store_outage(tmp_path, "INSERT ON steps")
        run_id = _trigger(engine, store, "held")
        wait_for(lambda: store.get_run(run_id).state == t.RUNNING, timeout=20, what="the run claimed")  # type: ignore[union-attr]
        time.sleep(0.5)
        assert _steps(store, run_id) == {}  # its step rows refused
        end_outage()
        run = _finished(store, run_id, timeout=10)
    assert run.state == t.SUCCEEDED, run.message
    assert {name: s.state for name, s in _steps(store, run_id).items()} == {"a": t.SUCCEEDED, "b": t.SUCCEEDED}
