"""Alerts on a change of state, delivered at least once.

The notifier is a consumer of the event feed (docs/events.md):

1. ``evaluate`` (pure): an event plus the job's current alert conditions and
   its rule give the new conditions and the alerts to send. A condition is
   raised once and cleared once: fail, fail, fail, succeed sends one failure
   alert and one recovery alert (plus reminders, if ``remind_every`` is set).
2. ``Notifier.step`` reads the events after its cursor, applies ``evaluate``,
   and writes the new conditions, one delivery row per alert and channel, and
   the cursor in one transaction (the delivery outbox).
3. ``Notifier.deliver_due`` sends due deliveries; a failure is retried with
   backoff, and after ``MAX_ATTEMPTS`` the delivery is marked ``failed``
   (visible in ``/metrics`` and the deliveries list). A crash between sending
   and marking sent sends that one message again: at least once.

``Notifier.run`` loops both in a thread of its own, so a slow webhook never
holds up the scheduler.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral import errors, spec
from corral.store import Store
from corral.store import tables as t
from corral.store.queries import Event

log = logging.getLogger("corral.notify")

CONSUMER = "notifier"
MAX_ATTEMPTS = 8
BACKOFF = timedelta(seconds=15)
MAX_BACKOFF = timedelta(hours=1)
SIGNATURE_HEADER = "X-Corral-Signature"
TIMESTAMP_HEADER = "X-Corral-Timestamp"
LOG_TAIL_LINES = 10
TIME_CHECK = timedelta(seconds=30)
"""The shortest time between two looks of ``run`` for overrunning runs and
missed jobs; it looks only when one of them may have fallen due."""
MIN_HISTORY = 5
"""Finished runs needed before k x p95 is trusted for ``overrun``."""

ALERT_KINDS = spec.ALERT_KINDS
DEFAULT_ON = spec.DEFAULT_ALERT_ON
CHANNEL_TYPES = spec.CHANNEL_TYPES
# The frozen values live in spec (the job file's ``notify:`` section); re-exported here.
Channel = spec.Channel
QuietHours = spec.QuietHours
Rule = spec.Rule


@dataclass(frozen=True)
class Alert:
    kind: str
    job: str
    run_id: int | None
    text: str
    event_seq: int | None = None
    reminder: bool = False
    data: dict[str, Any] = field(default_factory=dict)


# -- pure decisions ----------------------------------------------------------------

_FAILING = {t.FAILED: "failure", t.TIMED_OUT: "timeout", t.LOST: "lost"}


ALERT_TYPES = ("monitor.transition",)
"""Events :func:`evaluate` can always do something with."""
RUN_EVENT_TYPES = ("run.created", "run.transition")
"""Run events, which it can do something with only when they end the run
(a skip, an end: a state in FINAL_STATES). The notifier reads no other event."""


def _may_alert(event: Event) -> bool:
    """Whether :func:`evaluate` can do anything with this event (what :meth:`Notifier.step` reads)."""
    if event.type in ALERT_TYPES:
        return True
    return event.type in RUN_EVENT_TYPES and event.new_state in t.FINAL_STATES


def evaluate(
    event: Event, conditions: Mapping[str, Mapping[str, Any]], rule: Rule, now: datetime
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """(conditions to write, alerts to send) for one event.

    ``conditions`` maps a condition name to its stored row (``active``,
    ``since``, ``notified_at``). Only run transitions into a final state and
    skips matter; everything else returns nothing."""
    if event.type == "monitor.transition":
        return evaluate_monitor(event, conditions, rule, now)
    if not _may_alert(event):
        return [], []
    writes: list[dict[str, Any]] = []
    alerts: list[Alert] = []
    failing = conditions.get("failure")
    is_active = bool(failing and failing["active"])
    state = event.new_state
    what = f"run {event.run_id} of {event.job}"
    base = dict(job=event.job, run_id=event.run_id, event_seq=event.seq)
    if state in _FAILING:
        kind = _FAILING[state]
        if not is_active:
            writes.append(dict(job=event.job, condition="failure", active=True, since=event.at, run_id=event.run_id, notified_at=now))
            # A timeout or a lost run is a failure too: rules may name it alone.
            sent_as = kind if kind in rule.on else "failure" if "failure" in rule.on else None
            if sent_as is not None:
                alerts.append(Alert(kind=sent_as, text=f"{what} {_verb(state)}: {event.message or event.reason or state}", **base))
        elif rule.remind_every is not None and failing is not None:
            last = failing.get("notified_at") or failing["since"]
            if now - last >= rule.remind_every:
                writes.append(dict(job=event.job, condition="failure", active=True, since=failing["since"], run_id=event.run_id, notified_at=now))
                since = failing["since"]
                alerts.append(
                    Alert(kind=kind, reminder=True, text=f"{event.job} is still failing since {since:%Y-%m-%d %H:%M}Z; latest: {what} {_verb(state)}", **base)
                )
    elif state == t.SUCCEEDED and is_active and failing is not None:
        writes.append(dict(job=event.job, condition="failure", active=False, since=event.at, run_id=event.run_id, notified_at=now))
        if "recovery" in rule.on:
            down = event.at - failing["since"]
            alerts.append(Alert(kind="recovery", text=f"{event.job} recovered: {what} succeeded after failing for {_human(down)}", **base))
    elif state == t.SKIPPED and "skipped" in rule.on:
        skipped = conditions.get("skipped")
        if not (skipped and skipped["active"]):
            writes.append(dict(job=event.job, condition="skipped", active=True, since=event.at, run_id=event.run_id, notified_at=now))
            alerts.append(Alert(kind="skipped", text=f"{what} skipped ({event.reason}): {event.message or ''}".rstrip(": "), **base))
    if state in (t.SUCCEEDED, *_FAILING) and (conditions.get("skipped") or {}).get("active"):
        writes.append(dict(job=event.job, condition="skipped", active=False, since=event.at, run_id=event.run_id, notified_at=None))
    over = conditions.get("overrun")
    if over and over["active"] and over.get("run_id") == event.run_id:
        writes.append(dict(job=event.job, condition="overrun", active=False, since=event.at, run_id=event.run_id, notified_at=over.get("notified_at")))
    if state == t.SUCCEEDED and ("missed" in rule.on or conditions.get("missed")):
        # A success restarts the "no success within missed_after" window.
        writes.append(dict(job=event.job, condition="missed", active=False, since=event.at, run_id=event.run_id, notified_at=None))
    return writes, alerts


def evaluate_monitor(
    event: Event, conditions: Mapping[str, Mapping[str, Any]], rule: Rule, now: datetime
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """A monitor-only job's state change (issue 6, item 4), alerted like a job:
    ``down`` raises the ``failure`` condition (a ``failure`` alert), ``late``
    raises ``late`` (a ``missed`` alert, when the rule has ``on: [missed]``),
    and ``up`` clears both (a ``recovery`` alert after ``down``)."""
    writes: list[dict[str, Any]] = []
    alerts: list[Alert] = []
    base = dict(job=event.job, run_id=None, event_seq=event.seq)
    failing = conditions.get("failure")
    late = conditions.get("late")
    detail = f": {event.message}" if event.message else ""
    if event.new_state == "down" and not (failing and failing["active"]):
        writes.append(dict(job=event.job, condition="failure", active=True, since=event.at, run_id=None, notified_at=now))
        if "failure" in rule.on:
            alerts.append(Alert(kind="failure", text=f"monitor {event.job} is down{detail}", **base))
    elif event.new_state == "late" and not (late and late["active"]):
        writes.append(dict(job=event.job, condition="late", active=True, since=event.at, run_id=None, notified_at=now))
        if "missed" in rule.on:
            alerts.append(Alert(kind="missed", text=f"monitor {event.job} is late{detail}", **base))
    elif event.new_state == "up":
        if failing and failing["active"]:
            writes.append(dict(job=event.job, condition="failure", active=False, since=event.at, run_id=None, notified_at=now))
            if "recovery" in rule.on:
                text = f"monitor {event.job} is up again after being down for {_human(event.at - failing['since'])}"
                alerts.append(Alert(kind="recovery", text=text, **base))
    if event.new_state in ("up", "down") and late and late["active"]:
        writes.append(dict(job=event.job, condition="late", active=False, since=event.at, run_id=None, notified_at=None))
    return writes, alerts


def overrun(
    job: str, run_id: int, started_at: datetime, limit: timedelta, why: str,
    conditions: Mapping[str, Mapping[str, Any]], now: datetime,
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """An ``overrun`` alert for a run still going past ``limit``, once per run."""
    if now - started_at <= limit or _alerted(conditions.get("overrun"), run_id):
        return [], []
    write = dict(job=job, condition="overrun", active=True, since=now, run_id=run_id, notified_at=now)
    text = f"run {run_id} of {job} is overrunning: still running after {_human(now - started_at)} ({why})"
    return [write], [Alert(kind="overrun", job=job, run_id=run_id, text=text, data={"limit_seconds": limit.total_seconds()})]


def _alerted(row: Mapping[str, Any] | None, run_id: int) -> bool:
    return bool(row and row["active"] and row.get("run_id") == run_id)


def missed(
    job: str, rule: Rule, conditions: Mapping[str, Mapping[str, Any]], now: datetime
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """A ``missed`` alert when no run of ``job`` succeeded within ``rule.missed_after``.

    The window starts at the last success, or when corral first watched the
    job (a row written here with ``active=False``); it alerts once per window."""
    if "missed" not in rule.on or rule.missed_after is None:
        return [], []
    row = conditions.get("missed")
    if row is None:
        return [dict(job=job, condition="missed", active=False, since=now, run_id=None, notified_at=None)], []
    if row["active"] or now - row["since"] < rule.missed_after:
        return [], []
    write = dict(job=job, condition="missed", active=True, since=row["since"], run_id=row.get("run_id"), notified_at=now)
    text = f"{job} missed: no successful run for {_human(now - row['since'])} (expected one within {_human(rule.missed_after)})"
    return [write], [Alert(kind="missed", job=job, run_id=None, text=text)]


def describe(alert: Alert, run: Any | None, log_tail: str, now: datetime) -> Alert:
    """The alert with what a person needs to act: duration and the log's last lines."""
    if run is None:
        return alert
    started, ended = getattr(run, "started_at", None), getattr(run, "ended_at", None)
    lines = [alert.text]
    data = dict(alert.data)
    if started is not None:
        took = (ended or now) - started
        lines.append(f"job {alert.job}, run {run.id}, {'ran' if ended else 'running'} for {_human(took)}")
        data["duration_seconds"] = round(took.total_seconds(), 3)
    if log_tail:
        lines.append("last lines of the log:\n" + log_tail)
        data["log_tail"] = log_tail
    return dataclasses.replace(alert, text="\n".join(lines), data=data)


def read_tail(path: str | None, *, lines: int = LOG_TAIL_LINES, max_bytes: int = 4096, secrets: tuple[str, ...] = ()) -> str:
    """The last ``lines`` lines of a log file (at most ``max_bytes``), secrets masked."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            chunk = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = "\n".join(chunk.rstrip("\n").splitlines()[-lines:])
    return mask(text, secrets)


def mask(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, "********")
    return text


def _verb(state: str) -> str:
    return {t.FAILED: "failed", t.TIMED_OUT: "timed out", t.LOST: "was lost"}.get(state, state)


def _human(delta: timedelta) -> str:
    from corral import durations

    return durations.format(delta)


def payload(channel: Channel, alert: Alert, *, link: str | None = None) -> dict[str, Any]:
    """The JSON body for ``channel`` (email uses ``text`` only)."""
    text = alert.text + (f"\n{link}" if link else "")
    if channel.type == "discord":
        return {"content": text[:2000]}
    if channel.type == "slack":
        return {"text": text}
    return {
        "kind": alert.kind,
        "job": alert.job,
        "run_id": alert.run_id,
        "text": alert.text,
        "reminder": alert.reminder,
        "event_seq": alert.event_seq,
        "link": link,
        **alert.data,
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body), as sent in
    ``X-Corral-Signature``; see docs/alerts.md for checking it."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def backoff(attempts: int) -> timedelta:
    return min(MAX_BACKOFF, BACKOFF * (2 ** max(0, attempts - 1)))


# -- delivery ------------------------------------------------------------------------------


class DeliveryError(errors.CorralError):
    """A notification could not be delivered."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def send(channel: Channel, body: dict[str, Any], *, now: datetime, timeout: float = 10.0) -> None:
    """Deliver one message; raises DeliveryError (retryable or not)."""
    if channel.type == "email":
        _send_email(channel, body, timeout=timeout)
        return
    import httpx

    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "corral"}
    if channel.type == "webhook" and channel.secret:
        stamp = str(int(now.timestamp()))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = signature(channel.secret, stamp, data)
    try:
        res = httpx.post(channel.url, content=data, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"channel {channel.name}: {type(exc).__name__}: {exc}", retryable=True) from exc
    if res.status_code >= 500 or res.status_code == 429:
        raise DeliveryError(f"channel {channel.name}: HTTP {res.status_code}", retryable=True)
    if res.status_code >= 400:
        raise DeliveryError(f"channel {channel.name}: HTTP {res.status_code}: {res.text[:200]}", retryable=False)


def _send_email(channel: Channel, body: dict[str, Any], *, timeout: float) -> None:
    import smtplib
    from email.message import EmailMessage

    msg = EmailMessage()
    text = str(body.get("text", ""))
    msg["Subject"] = "[corral] " + text.splitlines()[0][:120] if text else "[corral] alert"
    msg["From"] = channel.sender
    msg["To"] = ", ".join(channel.to)
    link = body.get("link")
    msg.set_content(text + (f"\n\n{link}\n" if link else ""))
    try:
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        permanent = isinstance(exc, smtplib.SMTPRecipientsRefused)
        raise DeliveryError(f"channel {channel.name}: SMTP: {exc}", retryable=not permanent) from exc


COALESCE = 0.3
"""Seconds the notifier waits after being woken before it reads the new events."""
IDLE_INTERVAL = 600.0
"""At most this many seconds between two looks of the notifier thread when
nothing woke it and nothing fell due (a safety net: every change wakes it)."""
ERROR_RETRY = 30.0
"""Seconds before the notifier tries again after a failed step (a store it could not use)."""
SHARED_INTERVAL = 30.0
"""The same on a shared store (PostgreSQL), where other machines' events are
not announced to this process."""


class Notifier:
    """Event consumer + delivery loop. ``rules`` maps a job to its rule; a job
    without one uses ``default``."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        default: Rule,
        rules: Mapping[str, Rule] | None = None,
        link: str | None = None,
        jobs: Mapping[str, Any] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.default = default
        self.rules = dict(rules or {})
        self.link = link
        """Base URL of the dashboard, for a link to the run page."""
        self.jobs: dict[str, Any] = dict(jobs or {})
        """JobSpecs by name: ``expected_duration``, secret env values, which jobs ``missed`` watches."""
        self.secrets = secrets
        """Channel secrets (webhook URLs, keys): masked in recorded errors."""
        self._next_time_check: datetime | None = None
        self._last_time_check: datetime | None = None
        self.next_time_alert: datetime | None = None
        """Set by :meth:`check_time`: when a time-based alert could next fall due (None: none can
        until a run starts or a job's rules change)."""
        self._wake = threading.Event()

    def wake(self) -> None:
        """New events may be in the feed: look now instead of at the next idle tick."""
        self._wake.set()

    @classmethod
    def from_config(cls, store: Store, cfg: Any) -> Notifier:
        """A notifier for a loaded job file (:class:`corral.spec.Config`)."""
        n = cls(store, {}, default=Rule())
        n.configure(cfg)
        return n

    def configure(self, cfg: Any) -> None:
        """Take channels and rules from a (re)loaded job file; each attribute is
        replaced whole, so the notifier thread sees the old or the new one."""
        settings: spec.NotifySettings = cfg.notify
        self.channels = dict(settings.channels)
        self.default = settings.default
        self.rules = dict(settings.rules)
        self.link = settings.dashboard_url
        self.jobs = dict(cfg.jobs)
        self.secrets = settings.secret_values
        self._last_time_check = None  # other rules: look at time-based alerts again
        self.wake()

    def rule_for(self, job: str) -> Rule:
        return self.rules.get(job, self.default)

    def step(self, now: datetime, *, limit: int = 500, silent: bool = False) -> bool:
        """Turn the events after the cursor into deliveries. True when more may be waiting.

        ``silent`` updates the alert conditions and the cursor but sends nothing
        (see :meth:`catch_up`)."""
        self.store.publish_events(now=now)
        after = self.store.event_cursor(CONSUMER)
        last = self.store.last_event_seq()
        if last <= after:
            return False
        upto = min(last, after + limit)
        # Most events (a run created or started) cannot change a condition: not even read.
        batch = self.store.events_between(
            after, upto, types=ALERT_TYPES, run_types=RUN_EVENT_TYPES, run_states=tuple(t.FINAL_STATES)
        )
        conditions: dict[str, dict[str, dict[str, Any]]] = {}
        writes: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for event in batch:
            if event.job not in conditions:
                conditions[event.job] = self.store.alert_states(event.job)
            rule = self.rule_for(event.job)
            new, alerts = evaluate(event, conditions[event.job], rule, now)
            for row in new:
                conditions[event.job][row["condition"]] = row
                writes.append(row)
            for alert in alerts if not silent else []:
                outbox.extend(self._outbox(alert, rule, now, counts))
        self.store.record_alerts(writes, outbox, consumer=CONSUMER, seq=upto, now=now)
        return upto < last

    def catch_up(self, now: datetime) -> int:
        """On a store whose feed this notifier has never read (a store from
        before alerts, or alerts just switched on): follow the whole history
        silently, so the first start does not announce every old failure and
        recovery. Returns how many events were read that way."""
        if self.store.event_cursor(CONSUMER) != 0:
            return 0
        self.store.publish_events(now=now)
        if self.store.last_event_seq() == 0:
            return 0
        while self.step(now, silent=True):
            pass
        return self.store.event_cursor(CONSUMER)

    def check_time(self, now: datetime) -> int:
        """Raise the alerts that come from time passing, not from an event:
        ``overrun`` (a run still going past ``expected_duration`` or k x p95 of
        its history) and ``missed`` (no success within ``missed_after``).
        Returns how many alerts were raised, and sets :attr:`next_time_alert`:
        the earliest instant at which one of them could next become due."""
        writes: list[dict[str, Any]] = []
        due: list[datetime] = []
        outbox: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        raised = 0
        conditions: dict[str, dict[str, dict[str, Any]]] = {}

        def states(job: str) -> dict[str, dict[str, Any]]:
            if job not in conditions:
                conditions[job] = self.store.alert_states(job)
            return conditions[job]

        for run in self.store.list_runs(states=[t.RUNNING], limit=1000):
            rule = self.rule_for(run.job)
            if "overrun" not in rule.on or run.started_at is None:
                continue
            limit = self.overrun_limit(run.job, rule)
            if limit is None:
                continue
            new, alerts = overrun(run.job, run.id, run.started_at, limit[0], limit[1], states(run.job), now)
            if not new and not _alerted(states(run.job).get("overrun"), run.id):
                due.append(run.started_at + limit[0])
            writes.extend(new)
            for alert in alerts:
                raised += 1
                outbox.extend(self._outbox(alert, rule, now, counts))
        for job in self.jobs:
            rule = self.rule_for(job)
            if "missed" not in rule.on or getattr(self.jobs[job], "monitor", None) is not None:
                continue
            new, alerts = missed(job, rule, states(job), now)
            row = new[0] if new else states(job).get("missed")
            if rule.missed_after is not None and row is not None and not row["active"]:
                due.append(row["since"] + rule.missed_after)
            writes.extend(new)
            for alert in alerts:
                raised += 1
                outbox.extend(self._outbox(alert, rule, now, counts))
        if writes or outbox:
            self.store.record_alerts(writes, outbox, consumer=None, seq=0, now=now)
        self.next_time_alert = min(due, default=None)
        return raised

    def overrun_limit(self, job: str, rule: Rule) -> tuple[timedelta, str] | None:
        """How long a run of ``job`` may go before it overruns, and why."""
        spec_ = self.jobs.get(job)
        expected = getattr(spec_, "expected_duration", None)
        if expected is not None:
            return expected, f"expected_duration {_human(expected)}"
        from corral import forecast

        history = self.store.durations(job)
        stats = forecast.percentiles(history) if len(history) >= MIN_HISTORY else None
        if stats is None:
            return None
        limit = timedelta(seconds=stats[1] * rule.overrun_factor)
        return limit, f"{rule.overrun_factor:g} x its p95 of {_human(timedelta(seconds=stats[1]))}"

    def _outbox(self, alert: Alert, rule: Rule, now: datetime, counts: dict[str, int]) -> list[dict[str, Any]]:
        """Delivery rows for one alert: one per channel of the rule."""
        if not any(name in self.channels for name in rule.channels):
            return []
        if alert.run_id is not None:
            try:
                run = self.store.get_run(alert.run_id)
            except errors.NotFound:
                run = None
            job = self.jobs.get(alert.job)
            tail = read_tail(getattr(run, "log_path", None), secrets=tuple(getattr(job, "secret_values", ()) or ()))
            alert = describe(alert, run, tail, now)
        rows = []
        for name in rule.channels:
            channel = self.channels.get(name)
            if channel is None:
                continue
            status = "pending"
            if rule.quiet_hours is not None and rule.quiet_hours.covers(now):
                status = "suppressed"
            elif channel.rate_limit is not None:
                sent = counts.setdefault(name, self.store.deliveries_since(name, now - timedelta(hours=1)))
                if sent >= channel.rate_limit:
                    status = "suppressed"
                else:
                    counts[name] = sent + 1
            link = f"{self.link.rstrip('/')}/runs/{alert.run_id}" if self.link and alert.run_id else None
            rows.append(
                dict(
                    channel=name, job=alert.job, run_id=alert.run_id, kind=alert.kind,
                    event_seq=alert.event_seq, status=status,
                    payload=json.dumps(payload(channel, alert, link=link), sort_keys=True),
                )
            )
        return rows

    def deliver_due(self, now: datetime) -> int:
        """Send what is due; returns how many were sent."""
        sent = 0
        for row in self.store.due_deliveries(now):
            channel = self.channels.get(row["channel"])
            attempts = int(row["attempts"]) + 1
            if channel is None:
                self.store.update_delivery(row["id"], status="failed", attempts=attempts, last_error="channel no longer configured")
                continue
            try:
                send(channel, json.loads(row["payload"]), now=now)
            except DeliveryError as exc:
                give_up = not exc.retryable or attempts >= MAX_ATTEMPTS
                error = mask(str(exc), self.secrets)
                log.warning("notification %s on %s failed (attempt %d): %s", row["id"], channel.name, attempts, error)
                self.store.update_delivery(
                    row["id"], attempts=attempts, last_error=error,
                    status="failed" if give_up else "pending", next_attempt_at=now + backoff(attempts),
                )
                continue
            self.store.update_delivery(row["id"], status="sent", attempts=attempts, sent_at=now, last_error=None)
            sent += 1
        return sent

    def run(self, stop: threading.Event, *, clock: Any, interval: float = 1.0) -> None:
        """The loop: never raises, so a broken channel cannot stop it.

        Between wake-ups from the engine it sleeps until the next thing that
        time alone can make due (a delivery's retry, a run's overrun limit, a
        job's ``missed`` window) and at most ``interval``: an idle corral with
        nothing to watch does not wake up for nothing."""
        while not stop.is_set():
            more = False
            wait = interval
            try:
                now = clock.now()
                more = self.step(now)
                self.look_at_time(now)
                self.deliver_due(now)
                wait = self.idle_wait(clock.now(), interval)
            except errors.CorralError as exc:
                log.error("notifier: %s", exc)
                wait = min(interval, ERROR_RETRY)
            except Exception:  # noqa: BLE001 - keep notifying whatever one message does
                log.exception("notifier step failed")
                wait = min(interval, ERROR_RETRY)
            if not more and not stop.is_set():
                # Woken by the engine when runs change; otherwise asleep until
                # something falls due, so an idle corral stays idle.
                if self._wake.wait(wait):
                    # Woken by a change: let the rest of a burst arrive, so
                    # one step handles the events of many runs.
                    stop.wait(COALESCE)
                    self._changed()
                self._wake.clear()

    def look_at_time(self, now: datetime) -> None:
        """:meth:`check_time` when it is due: on the first look, when an alert
        may have fallen due, within TIME_CHECK of a change of runs or rules,
        and never more often than every TIME_CHECK otherwise."""
        if self._last_time_check is not None and (self._next_time_check is None or now < self._next_time_check):
            return
        self.check_time(now)
        self._last_time_check = now
        alert_at = self.next_time_alert
        self._next_time_check = None if alert_at is None else max(alert_at, now + TIME_CHECK)

    def idle_wait(self, now: datetime, interval: float) -> float:
        """Seconds the thread may sleep when nothing wakes it: until the next
        look at time-based alerts or the next delivery retry, at most ``interval``."""
        due = [d for d in (self._next_time_check, self.store.next_delivery_at()) if d is not None]
        if not due:
            return interval
        return min(interval, max(0.0, (min(due) - now).total_seconds()))

    def _changed(self) -> None:
        """Runs started or ended: time-based alerts may now be due at other
        instants, so look again within TIME_CHECK of the last look."""
        if self._last_time_check is not None:
            soon = self._last_time_check + TIME_CHECK
            if self._next_time_check is None or soon < self._next_time_check:
                self._next_time_check = soon

    def start_thread(self, clock: Any, *, interval: float = IDLE_INTERVAL) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), kwargs={"clock": clock, "interval": interval}, name="corral-notifier", daemon=True)
        thread.start()
        return thread, stop
