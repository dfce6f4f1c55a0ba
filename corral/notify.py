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

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from corral import errors
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

ALERT_KINDS: tuple[str, ...] = ("failure", "recovery", "timeout", "lost", "skipped", "overrun", "missed")
DEFAULT_ON: tuple[str, ...] = ("failure", "recovery", "timeout", "lost")
CHANNEL_TYPES: tuple[str, ...] = ("discord", "slack", "webhook", "email")


@dataclass(frozen=True)
class Channel:
    name: str
    type: str
    url: str = ""
    secret: str = ""
    """HMAC key of a ``webhook`` channel."""
    to: tuple[str, ...] = ()
    sender: str = "corral@localhost"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    rate_limit: int | None = None
    """At most this many messages per hour on this channel (None: no limit)."""


@dataclass(frozen=True)
class QuietHours:
    start: dtime
    end: dtime
    timezone: str = "UTC"

    def covers(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # e.g. 22:00-07:00 spans midnight


@dataclass(frozen=True)
class Rule:
    channels: tuple[str, ...] = ()
    on: tuple[str, ...] = DEFAULT_ON
    remind_every: timedelta | None = None
    quiet_hours: QuietHours | None = None


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


def evaluate(
    event: Event, conditions: Mapping[str, Mapping[str, Any]], rule: Rule, now: datetime
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """(conditions to write, alerts to send) for one event.

    ``conditions`` maps a condition name to its stored row (``active``,
    ``since``, ``notified_at``). Only run transitions into a final state and
    skips matter; everything else returns nothing."""
    if event.type not in ("run.transition", "run.created") or event.new_state not in t.FINAL_STATES:
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
    return writes, alerts


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
    msg.set_content(text)
    try:
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout) as smtp:
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        permanent = isinstance(exc, smtplib.SMTPRecipientsRefused)
        raise DeliveryError(f"channel {channel.name}: SMTP: {exc}", retryable=not permanent) from exc


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
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.default = default
        self.rules = dict(rules or {})
        self.link = link
        """Base URL of the dashboard, for a link to the run page."""

    def rule_for(self, job: str) -> Rule:
        return self.rules.get(job, self.default)

    def step(self, now: datetime, *, limit: int = 500) -> bool:
        """Turn the events after the cursor into deliveries. True when more may be waiting."""
        self.store.publish_events(now=now)
        after = self.store.event_cursor(CONSUMER)
        batch = self.store.events_after(after, limit)
        if not batch:
            return False
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
            for alert in alerts:
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
                    outbox.append(
                        dict(
                            channel=name, job=alert.job, run_id=alert.run_id, kind=alert.kind,
                            event_seq=alert.event_seq, status=status,
                            payload=json.dumps(payload(channel, alert, link=link), sort_keys=True),
                        )
                    )
        self.store.record_alerts(writes, outbox, consumer=CONSUMER, seq=batch[-1].seq, now=now)
        return len(batch) == limit

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
                log.warning("notification %s on %s failed (attempt %d): %s", row["id"], channel.name, attempts, exc)
                self.store.update_delivery(
                    row["id"], attempts=attempts, last_error=str(exc),
                    status="failed" if give_up else "pending", next_attempt_at=now + backoff(attempts),
                )
                continue
            self.store.update_delivery(row["id"], status="sent", attempts=attempts, sent_at=now, last_error=None)
            sent += 1
        return sent

    def run(self, stop: threading.Event, *, clock: Any, interval: float = 1.0) -> None:
        """The loop: never raises, so a broken channel cannot stop it."""
        while not stop.is_set():
            more = False
            try:
                now = clock.now()
                more = self.step(now)
                self.deliver_due(now)
            except errors.CorralError as exc:
                log.error("notifier: %s", exc)
            except Exception:  # noqa: BLE001 - keep notifying whatever one message does
                log.exception("notifier step failed")
            if not more:
                stop.wait(interval)

    def start_thread(self, clock: Any, *, interval: float = 1.0) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), kwargs={"clock": clock, "interval": interval}, name="corral-notifier", daemon=True)
        thread.start()
        return thread, stop
