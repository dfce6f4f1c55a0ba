"""Pure pipeline logic: the step graph and what happens next in a run.

A pipeline job has ``steps``, each naming the steps it ``needs``. Nothing here
does I/O or reads the clock: the worker passes the steps' current states and
gets back which steps to start, which to skip and, once nothing is left to
do, the run's state derived from its steps.

Step states are the run states that apply to one process: ``pending``,
``running``, then one of ``succeeded``, ``failed``, ``timed_out``,
``cancelled``, ``lost`` or ``skipped`` (with a reason such as
``upstream_failed``).
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from corral.spec import StepSpec

from corral.states import CANCELLED, FAILED, LOST, PENDING, RUNNING, SKIPPED, SUCCEEDED, TIMED_OUT

ACTIVE = (PENDING, RUNNING)
"""A step is never queued: its states are those of a run without ``queued``."""
FAILURES = (FAILED, TIMED_OUT, LOST)
"""Final states that ``continue_on_failure`` lets dependants run after."""

UPSTREAM_FAILED = "upstream_failed"
KEPT = "kept"
"""Reason of a step carried over, succeeded, from an earlier attempt (``retry --from-failed``)."""

OUTPUT_MAX_BYTES = 64 * 1024
_OUTPUT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESULT_KEYS = ("verdict", "note")
"""Output keys that make up the run-level result."""


# -- the graph -------------------------------------------------------------------


def find_cycle(graph: Sequence[tuple[str, Sequence[str]]]) -> list[str] | None:
    """A cycle of ``(name, needs)`` pairs as ``[a, b, ..., a]`` (a needs b ...), or None.

    Names in ``needs`` that are not in the graph are ignored (they are a
    separate mistake). The first cycle found in file order is returned, so
    the message is stable."""
    needs = {name: list(wanted) for name, wanted in graph}
    color: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        color[name] = 1
        path.append(name)
        for nxt in needs.get(name, ()):
            if nxt not in needs:
                continue
            if color.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in color:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        color[name] = 2
        return None

    for name, _ in graph:
        if name not in color:
            found = visit(name)
            if found:
                return found
    return None


def order(steps: Sequence[StepSpec]) -> list[StepSpec]:
    """Steps so that each comes after everything it needs; otherwise in file order
    (of the steps whose needs are met, the first in the file comes first).

    The graph must be acyclic (the job file loader guarantees it)."""
    position = {step.name: index for index, step in enumerate(steps)}
    waiting_on = [sum(1 for n in set(step.needs) if n in position) for step in steps]
    needed_by: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        for need in set(step.needs):
            if need in position:
                needed_by.setdefault(need, []).append(index)
    ready = [index for index, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)
    out: list[StepSpec] = []
    while ready:
        index = heapq.heappop(ready)
        out.append(steps[index])
        for later in needed_by.get(steps[index].name, ()):
            waiting_on[later] -= 1
            if waiting_on[later] == 0:
                heapq.heappush(ready, later)
    if len(out) != len(steps):  # pragma: no cover - a cycle; the loader rejects those
        raise ValueError(f"steps {[s.name for s in steps if s not in out]} form a cycle")
    return out


# -- deciding what happens next ---------------------------------------------------


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    start: tuple[str, ...]
    """Steps to start now, in file order, at most ``parallelism`` minus the running ones."""
    skip: tuple[Skip, ...]
    """Pending steps that will never run."""


def _lets_through(step: StepSpec, state: str) -> bool:
    return state == SUCCEEDED or (step.continue_on_failure and state in FAILURES)


def plan(
    steps: Sequence[StepSpec],
    states: Mapping[str, str],
    *,
    parallelism: int,
    stopping: tuple[str, str] | None = None,
    held: Collection[str] = (),
) -> Plan:
    """What to do with the pending steps of a run, given every step's state.

    ``stopping`` is ``(reason, message)`` when the run is being stopped
    (cancel, timeout, shutdown): then nothing starts and every pending step is
    skipped with that reason. Otherwise a pending step whose needs did not all
    pass is skipped with reason ``upstream_failed``, and the pending steps
    whose needs all passed start, in file order, up to ``parallelism``;
    except the ``held`` ones (waiting out the delay before a retry), which
    stay pending."""
    by_name = {step.name: step for step in steps}
    position = {step.name: index for index, step in enumerate(steps)}
    current = dict(states)
    skips: list[Skip] = []
    ready: list[str] = []
    for step in order(steps):
        if current.get(step.name, PENDING) != PENDING:
            continue
        if stopping is not None:
            skips.append(Skip(step.name, stopping[0], stopping[1]))
            current[step.name] = SKIPPED
            continue
        blocker = None
        waiting = False
        for need in step.needs:
            upstream = by_name.get(need)
            state = current.get(need, PENDING)
            if upstream is None:
                continue
            if state in ACTIVE:
                waiting = True
            elif not _lets_through(upstream, state):
                blocker = (need, state)
                break
        if blocker is not None:
            need, state = blocker
            verb = "was skipped" if state == SKIPPED else f"ended {state}"
            skips.append(Skip(step.name, UPSTREAM_FAILED, f"not run: step {need} {verb}"))
            current[step.name] = SKIPPED
        elif not waiting and step.name not in held:
            ready.append(step.name)
    running = sum(1 for state in current.values() if state == RUNNING)
    room = max(0, parallelism - running)
    ready.sort(key=position.__getitem__)
    return Plan(start=tuple(ready[:room]), skip=tuple(skips))


class Progress:
    """:func:`plan` kept up to date as steps change state, for a run in flight.

    :func:`plan` looks at every step each time; a run calls it after each
    step's end, so a pipeline of n steps would cost n² looks. Here a change
    of state costs the work of the step's dependants: each step keeps the
    count of its needs that have not passed yet, and the steps whose count
    is zero and which are pending are the ready ones. :meth:`next` decides
    exactly what :func:`plan` decides for the same states (the tests compare
    the two on random graphs)."""

    def __init__(self, steps: Sequence[StepSpec], states: Mapping[str, str], *, parallelism: int) -> None:
        self.parallelism = parallelism
        self._specs = {step.name: step for step in steps}
        self._position = {step.name: index for index, step in enumerate(steps)}
        self._rank = {step.name: index for index, step in enumerate(order(steps))}
        self._needs = {step.name: tuple(dict.fromkeys(n for n in step.needs if n in self._specs)) for step in steps}
        self._dependants: dict[str, list[str]] = {name: [] for name in self._specs}
        for name, needs in self._needs.items():
            for need in needs:
                self._dependants[need].append(name)
        self._count({name: states.get(name, PENDING) for name in self._specs})

    def _count(self, states: dict[str, str]) -> None:
        """Derive the counts, the ready steps and the blocked ones from every step's state."""
        self._state = states
        self._unmet = {
            name: sum(1 for need in needs if not _lets_through(self._specs[need], self._state[need]))
            for name, needs in self._needs.items()
        }
        self._ready = {name for name, count in self._unmet.items() if count == 0 and self._state[name] == PENDING}
        self._running = sum(1 for state in self._state.values() if state == RUNNING)
        # Pending steps with a need that ended without passing: skipped by the next plan.
        self._blocked = {
            name for name, needs in self._needs.items()
            if self._state[name] == PENDING and any(self._fails(need) for need in needs)
        }

    def _fails(self, name: str) -> bool:
        """Whether the step ended in a way that does not let its dependants run."""
        state = self._state[name]
        return state not in ACTIVE and not _lets_through(self._specs[name], state)

    def set(self, name: str, state: str) -> None:
        """A step's new state (as the run records it)."""
        old = self._state[name]
        if old == state:
            return
        if old not in ACTIVE:  # a final state is final within a run; if not, count again
            self._count({**self._state, name: state})
            return
        self._state[name] = state
        self._running += (state == RUNNING) - (old == RUNNING)
        if state == PENDING and self._unmet[name] == 0:
            self._ready.add(name)
        elif state != PENDING:
            self._ready.discard(name)
            self._blocked.discard(name)
        if state in ACTIVE:
            return
        passed = _lets_through(self._specs[name], state)
        for later in self._dependants[name]:
            if passed:
                self._unmet[later] -= 1
                if self._unmet[later] == 0 and self._state[later] == PENDING:
                    self._ready.add(later)
            elif self._state[later] == PENDING:
                self._blocked.add(later)

    def next(self, *, stopping: tuple[str, str] | None = None, held: Collection[str] = ()) -> Plan:
        """What :func:`plan` would decide now. The skipped steps are taken as
        skipped here at once (the caller records them; :meth:`set` with the
        same state is then a no-op)."""
        skips: list[Skip] = []
        if stopping is not None:
            for name in sorted((n for n, s in self._state.items() if s == PENDING), key=self._rank.__getitem__):
                skips.append(Skip(name, stopping[0], stopping[1]))
                self.set(name, SKIPPED)
            return Plan(start=(), skip=tuple(skips))
        todo = [(self._rank[name], name) for name in self._blocked]
        heapq.heapify(todo)
        while todo:
            _, name = heapq.heappop(todo)
            if self._state[name] != PENDING:
                continue
            for need in self._needs[name]:
                if self._fails(need):
                    state = self._state[need]
                    verb = "was skipped" if state == SKIPPED else f"ended {state}"
                    skips.append(Skip(name, UPSTREAM_FAILED, f"not run: step {need} {verb}"))
                    self.set(name, SKIPPED)
                    for later in self._dependants[name]:
                        heapq.heappush(todo, (self._rank[later], later))
                    break
        self._blocked.clear()
        room = max(0, self.parallelism - self._running)
        ready = sorted((n for n in self._ready if n not in held), key=self._position.__getitem__) if room else []
        return Plan(start=tuple(ready[:room]), skip=tuple(skips))


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str | None
    message: str


def run_state(steps: Sequence[StepSpec], states: Mapping[str, str]) -> Verdict | None:
    """The run's state derived from its steps; None while a step is pending or running.

    A failure of a ``continue_on_failure`` step does not fail the run. Of the
    other failures, a cancelled step makes the run cancelled, then a timed-out
    one timed_out, then any other failure failed."""
    if any(states.get(step.name, PENDING) in ACTIVE for step in steps):
        return None
    blocking = [s for s in steps if states.get(s.name) in FAILURES + (CANCELLED,) and not _lets_through(s, states[s.name])]
    skipped = [s.name for s in steps if states.get(s.name) == SKIPPED]
    tolerated = [s.name for s in steps if s.continue_on_failure and states.get(s.name) in FAILURES]
    tail = f"; {len(skipped)} skipped ({', '.join(skipped)})" if skipped else ""
    if not blocking:
        ok = sum(1 for s in steps if states.get(s.name) == SUCCEEDED)
        note = f"; step(s) {', '.join(tolerated)} failed (continue_on_failure)" if tolerated else ""
        return Verdict(SUCCEEDED, None, f"{ok} of {len(steps)} step(s) succeeded{note}{tail}")
    names = ", ".join(s.name for s in blocking)
    kinds = {states[s.name] for s in blocking}
    if CANCELLED in kinds:
        return Verdict(CANCELLED, "cancelled", f"step(s) {names} cancelled{tail}")
    if TIMED_OUT in kinds:
        return Verdict(TIMED_OUT, "step_timeout", f"step(s) {names} timed out{tail}")
    return Verdict(FAILED, "step_failed", f"step(s) {names} failed{tail}")


def to_rerun(steps: Sequence[StepSpec], previous: Mapping[str, str], *, from_failed: bool) -> list[str]:
    """Names of the steps a new attempt runs: all of them, or with
    ``from_failed`` every step that did not succeed last time (failed,
    timed out, cancelled, lost, skipped, or new in the job file)."""
    if not from_failed:
        return [step.name for step in steps]
    return [step.name for step in steps if previous.get(step.name) != SUCCEEDED]


# -- outputs ------------------------------------------------------------------------


def parse_outputs(text: str) -> tuple[dict[str, str], list[str]]:
    """Outputs a step wrote to ``$CORRAL_OUTPUT``, and complaints about what was ignored.

    Either one JSON object (values that are not text are kept as JSON text) or
    ``key=value`` lines (blank lines and ``#`` comments ignored). Keys are
    letters, digits and ``_``, not starting with a digit."""
    outputs: dict[str, str] = {}
    problems: list[str] = []
    stripped = text.strip()
    if not stripped:
        return outputs, problems
    items: list[tuple[str, str]] = []
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            return outputs, [f"$CORRAL_OUTPUT is not valid JSON: {exc}"]
        if not isinstance(data, dict):  # pragma: no cover - starts with "{"
            return outputs, ["$CORRAL_OUTPUT JSON must be an object"]
        for key, value in data.items():
            items.append((str(key), value if isinstance(value, str) else json.dumps(value)))
    else:
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                problems.append(f"$CORRAL_OUTPUT line {number} has no '=': {line[:60]!r}")
                continue
            items.append((key.strip(), value))
    for key, value in items:
        if not _OUTPUT_KEY.match(key):
            problems.append(f"$CORRAL_OUTPUT key {key[:60]!r} ignored; use letters, digits and _")
            continue
        outputs[key] = value
    return outputs, problems


def output_env(outputs: Mapping[str, str]) -> dict[str, str]:
    """Environment variables a later step gets for earlier steps' outputs: ``CORRAL_OUTPUT_<KEY>``."""
    return {f"CORRAL_OUTPUT_{key.upper()}": value for key, value in outputs.items()}


def result_of(outputs: Mapping[str, str], *, state: str, message: str | None) -> dict[str, str] | None:
    """The run-level result (``verdict``, ``note``) from the outputs of its succeeded steps.

    A run that did not succeed never reads as success: its verdict is
    ``error`` whatever a step wrote, and the note says why."""
    written = {key: outputs[key] for key in RESULT_KEYS if key in outputs}
    if state != SUCCEEDED:
        note = f"run {state}" + (f": {message}" if message else "")
        if written.get("verdict"):
            note += f" (a step had written verdict={written['verdict']})"
        return {"verdict": "error", "note": note}
    return written or None
