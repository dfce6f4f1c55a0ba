"""Pure pipeline logic: graph order, what runs next, derived run state, reruns, outputs."""

from __future__ import annotations

import random

import pytest

from corral import errors, params, pipeline
from corral.spec import ParamSpec, StepSpec


def step(name: str, *needs: str, cof: bool = False) -> StepSpec:
    return StepSpec(name=name, command=("/bin/true",), shell=False, needs=needs, continue_on_failure=cof)


# seed 004: two groups of three stages, the second needing the whole first
SEED = [step("31"), step("32"), step("33"), *(step(n, "31", "32", "33") for n in ("61", "62", "63"))]


def test_it_finds_a_cycle_and_names_it_in_order() -> None:
    graph = [("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", [])]
    assert pipeline.find_cycle(graph) == ["a", "c", "b", "a"]
    assert pipeline.find_cycle([("a", ["a"])]) == ["a", "a"]
    assert pipeline.find_cycle([("a", []), ("b", ["a", "missing"])]) is None


def test_order_puts_needs_first_and_keeps_file_order_otherwise() -> None:
    steps = [step("load", "fetch"), step("fetch"), step("report", "load"), step("lint")]
    assert [s.name for s in pipeline.order(steps)] == ["fetch", "load", "report", "lint"]


def test_order_takes_the_first_step_in_the_file_whose_needs_are_met_on_random_graphs() -> None:
    import random

    rng = random.Random(7)
    for _ in range(200):
        count = rng.randint(1, 12)
        names = [f"s{i}" for i in range(count)]
        rng.shuffle(names)  # needs point anywhere in the file, never in a cycle
        rank = {name: i for i, name in enumerate(names)}
        steps = [step(name, *rng.sample([n for n in names if rank[n] < rank[name]], k=min(rank[name], rng.randint(0, 3))))
                 for name in sorted(names, key=lambda n: rng.random())]
        done: set[str] = set()
        for picked in pipeline.order(steps):
            first_ready = next(s for s in steps if s.name not in done and all(n in done for n in s.needs))
            assert picked.name == first_ready.name
            done.add(picked.name)
        assert done == set(names)


def test_independent_steps_start_together_up_to_parallelism_in_file_order() -> None:
    assert pipeline.plan(SEED, {}, parallelism=2).start == ("31", "32")
    assert pipeline.plan(SEED, {"31": "running"}, parallelism=2).start == ("32",)
    assert pipeline.plan(SEED, {}, parallelism=1).start == ("31",)
    assert pipeline.plan(SEED, {}, parallelism=10).start == ("31", "32", "33")


def test_a_step_waits_until_all_it_needs_succeeded() -> None:
    states = {"31": "succeeded", "32": "succeeded", "33": "running"}
    assert pipeline.plan(SEED, states, parallelism=6).start == ()
    states["33"] = "succeeded"
    assert pipeline.plan(SEED, states, parallelism=6).start == ("61", "62", "63")


def test_a_failure_skips_dependants_transitively_but_not_siblings() -> None:
    steps = [step("a"), step("b", "a"), step("c", "b"), step("d", "a"), step("e", "c", "d")]
    decided = pipeline.plan(steps, {"a": "succeeded", "b": "failed"}, parallelism=4)
    assert decided.start == ("d",)
    assert [(s.name, s.reason) for s in decided.skip] == [("c", "upstream_failed"), ("e", "upstream_failed")]
    assert decided.skip[0].message == "not run: step b ended failed"
    assert decided.skip[1].message == "not run: step c was skipped"


def test_continue_on_failure_lets_dependants_run_and_the_run_succeed() -> None:
    steps = [step("probe", cof=True), step("report", "probe")]
    assert pipeline.plan(steps, {"probe": "failed"}, parallelism=1).start == ("report",)
    verdict = pipeline.run_state(steps, {"probe": "failed", "report": "succeeded"})
    assert verdict is not None and verdict.state == "succeeded"
    assert "probe failed (continue_on_failure)" in verdict.message


def test_stopping_skips_every_pending_step_with_the_reason() -> None:
    decided = pipeline.plan(SEED, {"31": "running"}, parallelism=3, stopping=("cancelled", "cancelled while running"))
    assert decided.start == ()
    assert {s.name for s in decided.skip} == {"32", "33", "61", "62", "63"}
    assert {s.reason for s in decided.skip} == {"cancelled"}


def _random_pipeline(rng: random.Random) -> list[StepSpec]:
    count = rng.randint(1, 14)
    names = [f"s{i}" for i in range(count)]
    rng.shuffle(names)
    rank = {name: i for i, name in enumerate(names)}
    return [
        step(name, *rng.sample([n for n in names if rank[n] < rank[name]], k=min(rank[name], rng.randint(0, 3))),
             cof=rng.random() < 0.2)
        for name in sorted(names, key=lambda n: rng.random())
    ]


def test_progress_decides_what_plan_decides_through_random_runs() -> None:
    """Progress is plan kept up to date: at every point of a run, with steps
    starting, ending in every final state, going back to pending for a retry,
    held for a retry delay or stopped, both decide the same."""
    rng = random.Random(11)
    finals = ("succeeded", "succeeded", "succeeded", "failed", "timed_out", "cancelled", "lost")
    for _ in range(400):
        steps = _random_pipeline(rng)
        parallelism = rng.randint(1, 4)
        # a resumed attempt starts with some steps kept as succeeded
        states = {s.name: "succeeded" for s in steps if rng.random() < 0.15}
        progress = pipeline.Progress(steps, states, parallelism=parallelism)
        for _ in range(60):
            held = {s.name for s in steps if states.get(s.name, "pending") == "pending" and rng.random() < 0.2}
            stopping = ("cancelled", "cancelled while running") if rng.random() < 0.03 else None
            expected = pipeline.plan(steps, states, parallelism=parallelism, held=held, stopping=stopping)
            got = progress.next(held=held, stopping=stopping)
            assert got == expected, (steps, states, held)
            for skip in expected.skip:
                states[skip.name] = "skipped"
                progress.set(skip.name, "skipped")
            for name in expected.start:
                if rng.random() < 0.8:
                    states[name] = "running"
                    progress.set(name, "running")
            running = [name for name, state in states.items() if state == "running"]
            if running and rng.random() < 0.7:
                name = rng.choice(running)
                states[name] = "pending" if rng.random() < 0.15 else rng.choice(finals)  # pending: retried
                progress.set(name, states[name])
            if all(states.get(s.name, "pending") not in ("pending", "running") for s in steps):
                break


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"a": "succeeded", "b": "succeeded"}, ("succeeded", None)),
        ({"a": "failed", "b": "skipped"}, ("failed", "step_failed")),
        ({"a": "timed_out", "b": "skipped"}, ("timed_out", "step_timeout")),
        ({"a": "cancelled", "b": "skipped"}, ("cancelled", "cancelled")),
        ({"a": "lost", "b": "skipped"}, ("failed", "step_failed")),
    ],
)
def test_the_run_state_is_derived_from_the_steps(states: dict[str, str], expected: tuple[str, str | None]) -> None:
    verdict = pipeline.run_state([step("a"), step("b", "a")], states)
    assert verdict is not None and (verdict.state, verdict.reason) == expected


def test_no_run_state_while_a_step_is_pending_or_running() -> None:
    assert pipeline.run_state([step("a"), step("b")], {"a": "succeeded", "b": "running"}) is None
    assert pipeline.run_state([step("a"), step("b")], {"a": "succeeded"}) is None


def test_from_failed_reruns_exactly_the_steps_that_did_not_succeed() -> None:
    before = {"31": "succeeded", "32": "failed", "33": "succeeded", "61": "skipped", "62": "skipped"}
    assert pipeline.to_rerun(SEED, before, from_failed=True) == ["32", "61", "62", "63"]
    assert pipeline.to_rerun(SEED, before, from_failed=False) == ["31", "32", "33", "61", "62", "63"]


def test_outputs_are_key_value_lines_or_a_json_object() -> None:
    assert pipeline.parse_outputs("files=12\n# comment\n\nnote=a=b\n") == ({"files": "12", "note": "a=b"}, [])
    assert pipeline.parse_outputs('{"files": 12, "ok": true, "name": "x"}') == (
        {"files": "12", "ok": "true", "name": "x"},
        [],
    )
    outputs, problems = pipeline.parse_outputs("good=1\nno equals\n9bad=2\n")
    assert outputs == {"good": "1"}
    assert problems == ["$CORRAL_OUTPUT line 2 has no '=': 'no equals'", "$CORRAL_OUTPUT key '9bad' ignored; use letters, digits and _"]
    assert pipeline.parse_outputs("{nope")[1][0].startswith("$CORRAL_OUTPUT is not valid JSON")
    assert pipeline.output_env({"files": "12"}) == {"CORRAL_OUTPUT_FILES": "12"}


def test_a_run_that_did_not_succeed_never_has_an_ok_verdict() -> None:
    ok = pipeline.result_of({"verdict": "ok", "note": "fine", "x": "1"}, state="succeeded", message=None)
    assert ok == {"verdict": "ok", "note": "fine"}
    bad = pipeline.result_of({"verdict": "ok"}, state="timed_out", message="step ask timed out")
    assert bad == {"verdict": "error", "note": "run timed_out: step ask timed out (a step had written verdict=ok)"}
    assert pipeline.result_of({"x": "1"}, state="succeeded", message=None) is None


PARAMS = (
    ParamSpec("region", "choice", "eu", ("eu", "us")),
    ParamSpec("count", "int", 3),
    ParamSpec("dry_run", "bool", False),
    ParamSpec("label", "string", None),
)


def test_parameters_are_checked_converted_and_defaulted() -> None:
    values = params.resolve(PARAMS, {"label": "x; rm -rf /", "count": "-2", "dry_run": "yes"}, job="j")
    assert values == {"region": "eu", "count": -2, "dry_run": True, "label": "x; rm -rf /"}
    assert params.env(values) == {
        "CORRAL_PARAM_REGION": "eu",
        "CORRAL_PARAM_COUNT": "-2",
        "CORRAL_PARAM_DRY_RUN": "true",
        "CORRAL_PARAM_LABEL": "x; rm -rf /",
    }


def test_parameter_mistakes_are_all_reported_at_once() -> None:
    with pytest.raises(errors.ParamError) as caught:
        params.resolve(PARAMS, {"regoin": "eu", "region": "asia", "count": "3.5"}, job="j")
    assert str(caught.value) == (
        'unknown parameter "regoin"; did you mean "region"?; '
        "parameter region: 'asia' is not one of eu, us; "
        "parameter count: '3.5' is not a whole number, like 3 or -1; "
        "parameter label is required; pass --param label=VALUE"
    )
    with pytest.raises(errors.ParamError, match="is not NAME=VALUE"):
        params.parse_pairs(["novalue"])
    assert params.parse_pairs(["a=b=c", "e="]) == {"a": "b=c", "e": ""}
