"""``corral up``: one process that schedules, runs and records.

A thin loop around three steps (scheduler.enqueue_due, worker.admit_new /
worker.dispatch, worker.record). It sleeps until the next due instant or until
something wakes it: a process ending, SIGUSR1 from a CLI command that changed
the store, SIGHUP or an edit of the job file (live reload), SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime

from corral import config_child, errors, executor, filewatch, metrics, monitor, notify
from corral.clock import Clock, SystemClock
from corral.scheduler import Scheduler
from corral.spec import Config
from corral.store import Store
from corral.store.queries import default_node_name
from corral.worker import Worker, handover_dir_for

log = logging.getLogger("corral.engine")

RELOAD_CHECK = 2.0
"""Seconds between checks of the job file's modification time where it cannot
be watched (see :mod:`corral.filewatch`); a watched file wakes the loop itself."""
STORE_POLL = 15.0
"""Seconds between looks at a shared store (PostgreSQL) for work that other
machines put there: they cannot wake this process."""
LOCAL_STORE_POLL = 60.0
"""The same for a store only this machine uses (SQLite). Every process that
changes it wakes the engine (:func:`notify_running_engines`), so this look is
only a safety net; it is made with the heartbeat, in one wake-up a minute."""
HEARTBEAT = 60.0
BEAT_SLACK = 5.0
"""Seconds early a heartbeat may be written so that it shares a wake-up with the store poll."""
RECORD_RETRY = 2.0
"""Seconds before trying again to record run ends the store refused."""
WARM_AHEAD = 30.0
"""Seconds before the next slot at which the spawner processes are started (if they are not running)."""


class Engine:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        clock: Clock | None = None,
        node: str | None = None,
        db_override: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock or SystemClock()
        self.node = node or default_node_name()
        self.db_override = db_override
        self._outcomes: queue.SimpleQueue[executor.Outcome] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._external = threading.Event()
        self._next_poll = 0.0
        self._poll_every = LOCAL_STORE_POLL if store.dialect == "sqlite" else STORE_POLL
        self._next_beat = 0.0  # set with the first poll, so that the two share wake-ups
        self._next_start: datetime | None = None
        self._record_retry: float | None = None
        """When to try again to record run ends the store refused (monotonic)."""
        self.supervisor = executor.Supervisor(on_exit=self._on_exit, handover_dir=handover_dir_for(cfg.settings))
        self.scheduler = Scheduler(store, cfg.jobs)
        self.worker = Worker(store, self.supervisor, cfg.settings, cfg.jobs, node=self.node)
        self._config_mtime = self._mtime()
        self.config_error: str | None = None
        self.notifier = notify.Notifier.from_config(store, cfg)
        self.monitors = monitor.Watcher(store, cfg.jobs)
        self._notifier_thread: threading.Thread | None = None
        self._notifier_stop: threading.Event | None = None
        self._watch: filewatch.Watch | None = None

    # -- wiring ---------------------------------------------------------------------

    def _on_exit(self, outcome: executor.Outcome) -> None:
        self._outcomes.put(outcome)
        self._wake.set()

    def wake(self) -> None:
        """Something changed in the store (a CLI command): look at it now."""
        self._external.set()
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        _relay_signals(
            {
                signal.SIGTERM: self.request_stop,
                signal.SIGINT: self.request_stop,
                signal.SIGHUP: self.request_reload,
                signal.SIGUSR1: self.wake,
            }
        )

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.cfg.settings.config_path).st_mtime
        except OSError:
            return None

    # -- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        now = self.clock.now()
        self.store.register_node(self.node, config_path=str(self.cfg.settings.config_path), now=now)
        self.supervisor.start()
        # An edit of the job file wakes the loop (which compares the mtime): no 2 s polling.
        self._watch = filewatch.watch(self.cfg.settings.config_path, self._wake.set)
        self.worker.recover(now)
        # Alerts are evaluated and sent in a thread of their own: a slow webhook
        # never holds up scheduling. It runs without channels too, so alert
        # conditions follow the feed and adding a channel later does not replay history.
        try:
            if self.notifier.catch_up(now):
                log.info("alerts: read the event history once without sending; alerting from now on")
        except errors.CorralError as exc:
            log.error("alerts: could not read the event history: %s", exc)
        self._notifier_thread, self._notifier_stop = self.notifier.start_thread(
            self.clock, interval=notify.IDLE_INTERVAL if self.store.dialect == "sqlite" else notify.SHARED_INTERVAL
        )
        log.info(
            "corral up: %d job(s) from %s, store %s",
            len(self.cfg.jobs),
            self.cfg.settings.config_path,
            self.store.url.split("?")[0],
        )

    def step(self) -> float:
        """Do everything that is due now; return how long to sleep (seconds).

        Store queries are made only when something may have changed: a process
        ended, a CLI command woke us, slots were created, a retry's delay ran
        out, or the periodic store poll (for changes made from other machines)."""
        now = self.clock.now()
        drained = self._drain_outcomes(now)
        changed = drained  # runs changed state here or elsewhere: the notifier has work
        # Only the end of a run (not of a pipeline step) can let another run
        # start; with a limit on processes, the end of a step can too.
        dirty = drained and (self.worker.take_runs_ended() or self.cfg.settings.max_running is not None)
        if self._reload.is_set() or self._mtime() != self._config_mtime:
            self._reload.clear()
            self.reload()
            dirty = True
            now = self.clock.now()
        if self._external.is_set():
            self._external.clear()
            dirty = changed = True
        mono = time.monotonic()
        if mono >= self._next_poll:
            self._next_poll = mono + self._poll_every
            dirty = True
        if mono >= self._next_beat - BEAT_SLACK:  # a wake-up just before it is due does it too
            self._heartbeat()
            self._next_beat = mono + HEARTBEAT
        if self._next_start is not None and now >= self._next_start:
            dirty = True
        step_retry = self.worker.next_step_retry()
        if step_retry is not None and now >= step_retry:
            dirty = True  # dispatch starts the pipeline steps whose retry delay is over
        for job in self.worker.finished_jobs:
            self.scheduler.forget_due(job)
        self.worker.finished_jobs.clear()
        if dirty:
            self.worker.apply_stop_requests(now)
            self.worker.admit_new(now)
        next_slot = None
        if not self._stop.is_set():
            before = self.scheduler.created
            next_slot = self.scheduler.enqueue_due(now)
            if self.scheduler.created != before:
                dirty = changed = True
        if next_slot is not None and (next_slot - now).total_seconds() < WARM_AHEAD:
            self.supervisor.warm()  # start the spawner processes before the slots fall due
        if dirty:
            self._next_start = self.worker.dispatch(now)
        if changed:
            self.notifier.wake()  # new events to alert on
        if dirty or (self.monitors.next_check is not None and now >= self.monitors.next_check):
            try:
                if self.monitors.check(now):
                    self.notifier.wake()  # a monitor changed state: an event to alert on
            except errors.CorralError as exc:
                log.error("monitors: %s", exc)
        step_retry = self.worker.next_step_retry()
        wake_at = [w for w in (next_slot, self._next_start, self.monitors.next_check, step_retry) if w is not None]
        sleep = max(0.0, min(self._next_poll, self._next_beat, self._record_retry or math.inf) - time.monotonic())
        if wake_at:
            sleep = min(sleep, max(0.0, (min(wake_at) - self.clock.now()).total_seconds()))
        if self._watch is not None and self._watch.alive:
            return sleep
        return min(sleep, RELOAD_CHECK)

    def _drain_outcomes(self, now: datetime) -> bool:
        batch: list[executor.Outcome] = []
        while True:
            try:
                batch.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return False
        try:
            self.worker.record_many(batch, now)
        except errors.CorralError as exc:  # store trouble: keep them and try again shortly
            log.error("could not record the end of %d run(s), trying again in %gs: %s", len(batch), RECORD_RETRY, exc)
            for outcome in batch:
                self._outcomes.put(outcome)
            self._record_retry = time.monotonic() + RECORD_RETRY
        else:
            self._record_retry = None
            self.supervisor.recorded(outcome.run_id for outcome in batch)
        return True

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.is_set():
                try:
                    sleep = self.step()
                except errors.StoreError as exc:
                    log.error("store error, retrying in 2s: %s", exc)
                    sleep = 2.0
                if sleep > 0:
                    planned = time.monotonic() + sleep
                    woken = self._wake.wait(sleep)
                    # Lag: how much later than planned a timed wake-up came (0 when woken early).
                    metrics.observe_loop_lag(0.0 if woken else time.monotonic() - planned)
                self._wake.clear()
        finally:
            self.shutdown()

    def _heartbeat(self) -> None:
        try:
            self.store.update_node(self.node, now=self.clock.now(), config_error=self.config_error)
        except errors.StoreError as exc:
            log.warning("heartbeat failed: %s", exc)

    def shutdown(self) -> None:
        """Stop scheduling, let running jobs finish within the drain period, then
        terminate what is left and record it."""
        self.worker.accepting = False
        self.worker.stop_idle_pipelines(self.clock.now())
        drain = self.cfg.settings.drain.total_seconds()
        if self.supervisor.running():
            log.info("draining %d running run(s) for up to %ss", len(self.supervisor.running()), int(drain))
        deadline = time.monotonic() + drain
        while self.supervisor.running() and time.monotonic() < deadline:
            self._drain_outcomes(self.clock.now())
            self.worker.apply_stop_requests(self.clock.now())
            self._wake.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
        for run_id in self.supervisor.running():
            self.supervisor.stop(run_id, "shutdown")
        self.supervisor.wait_idle(timeout=max(15.0, max((j.kill_grace.total_seconds() for j in self.cfg.jobs.values()), default=10.0) + 5))
        self._drain_outcomes(self.clock.now())
        self.worker.stop_idle_pipelines(self.clock.now())
        self.supervisor.close()
        self._stop_notifier()
        if self._watch is not None:
            self._watch.close()
        try:
            self.store.update_node(self.node, now=self.clock.now(), stopped_at=self.clock.now())
        except errors.StoreError:
            pass
        log.info("corral stopped")

    def _stop_notifier(self) -> None:
        """Stop the notifier thread; deliveries not sent yet stay in the outbox
        and go out after the next start (at least once)."""
        if self._notifier_stop is not None and self._notifier_thread is not None:
            self._notifier_stop.set()
            self.notifier.wake()
            self._notifier_thread.join(timeout=15)
            if self._notifier_thread.is_alive():
                log.warning("notifier still sending at shutdown; unsent alerts stay queued")

    # -- live reload ----------------------------------------------------------------------

    def reload(self) -> None:
        self._config_mtime = self._mtime()
        path = self.cfg.settings.config_path
        try:
            new = config_child.load_in_child(path)  # the checker's memory is the child's
        except errors.ConfigError as exc:
            self.config_error = str(exc)
            log.error("job file changed but has errors; keeping the running configuration:\n%s", exc)
            self.store.update_node(self.node, now=self.clock.now(), config_error=self.config_error)
            return
        self.cfg = new
        self.config_error = None
        self.notifier.configure(new)
        self.monitors.set_jobs(new.jobs)
        self.scheduler.set_jobs(new.jobs)
        self.worker.set_jobs(new.settings, new.jobs)
        self.store.update_node(
            self.node, now=self.clock.now(), config_error=None, config_loaded_at=self.clock.now()
        )
        log.info("job file reloaded: %d job(s)", len(new.jobs))


def _relay_signals(actions: dict[signal.Signals, Callable[[], None]]) -> None:
    """Run ``actions[signum]`` when the process gets ``signum``, from a thread of its own.

    A Python signal handler runs in the main thread between two bytecodes,
    possibly while that thread holds the lock inside one of the engine's
    Events (waking up in ``wait``, in ``clear``): calling ``Event.set`` there
    deadlocks. So the handler only writes the signal's number to a pipe."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def relay() -> None:
        while True:
            for signum in os.read(read_fd, 64):
                actions[signal.Signals(signum)]()

    def handler(signum: int, _frame: object) -> None:
        try:
            os.write(write_fd, bytes([signum]))
        except BlockingIOError:  # the pipe is full: the thread has plenty to do already
            pass

    threading.Thread(target=relay, name="corral-signals", daemon=True).start()
    for signum in actions:
        signal.signal(signum, handler)


def notify_running_engines(store: Store) -> int:
    """Wake ``corral up`` processes on this host so they see a change at once
    (otherwise they notice within STORE_POLL seconds). Returns how many were told."""
    import socket

    told = 0
    host = socket.gethostname()
    for node in store.live_nodes():
        if node["hostname"] != host:
            continue
        pid = int(node["pid"])
        if not _is_corral_process(pid, node["started_at"]):
            continue  # that corral died and its pid now belongs to something else
        if not _catches(pid, signal.SIGUSR1):
            # An engine run from Python without corral up's signal handlers
            # (embedded, or a test): SIGUSR1 would end that process. It sees
            # the change at its next store poll.
            continue
        try:
            os.kill(pid, signal.SIGUSR1)
            told += 1
        except (ProcessLookupError, PermissionError):
            continue
    return told



def _catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for ``sig`` (its ``SigCgt`` mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def _is_corral_process(pid: int, started_at: datetime) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        cmdline = " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return False
    return "corral" in cmdline and created <= started_at.timestamp() + 5
