"""The ``notify:`` part of a job file: channels and alert rules.

Called by :class:`corral.config._Checker` (it reports through the checker, so
every mistake comes with file, line, job and key like the rest of the file)::

    notify:
      dashboard_url: https://corral.example.com     # links in messages
      channels:
        ops:  {type: discord, url: {secret: "https://discord.com/api/webhooks/..."}}
        hook: {type: webhook, url: "https://example.com/corral", secret: "${CORRAL_HOOK_SECRET}", rate_limit: 30}
        mail: {type: email, to: [ops@example.com], smtp_host: localhost}
      default: {channels: [ops], on: [failure, recovery, timeout, lost], remind_every: 1d}
    jobs:
      nightly:
        expected_duration: 2h
        notify: {channels: [ops, mail], on: [failure, recovery, overrun]}

A job's ``notify:`` overrides the default key by key; ``notify: false`` silences
the job. Text values may be ``{secret: "..."}`` or contain ``${VAR}`` (read from
the environment when the file is loaded); such values are masked wherever
corral shows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from corral import durations, errors, spec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from corral.config import _Checker

_Path = tuple[Any, ...]

CHANNEL_KEYS: dict[str, tuple[str, ...]] = {
    "discord": ("type", "url", "rate_limit"),
    "slack": ("type", "url", "rate_limit"),
    "webhook": ("type", "url", "secret", "rate_limit"),
    "email": ("type", "to", "from", "smtp_host", "smtp_port", "rate_limit"),
}
RULE_KEYS: tuple[str, ...] = ("channels", "on", "remind_every", "quiet_hours", "overrun_factor", "missed_after")
TOP_KEYS: tuple[str, ...] = ("channels", "default", "dashboard_url")
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_URL_EXAMPLE = {
    "discord": "https://discord.com/api/webhooks/ID/TOKEN",
    "slack": "https://hooks.slack.com/services/T000/B000/XXXX",
    "webhook": "https://example.com/corral-hook",
}


class _Reader:
    def __init__(self, checker: _Checker, environ: Mapping[str, str]) -> None:
        self.c = checker
        self.environ = environ
        self.secrets: set[str] = set()
        self.ok = True

    def add(self, path: _Path, message: str, *, of_key: bool = False) -> None:
        self.ok = False
        job, key = _split(path)
        line = self.c.doc.line([()], path, of_key=of_key)
        self.c.add(line, job, key, message)

    def shown(self, path: _Path, value: Any) -> str:
        return self.c.doc.shown(path, value)

    def keys(self, path: _Path, raw: dict[str, Any], valid: tuple[str, ...], what: str = "") -> None:
        from corral.config import _unknown_key

        for key in raw:
            if key not in valid:
                message = _unknown_key(str(key), list(valid))
                self.add((*path, key), message + (f" ({what})" if what else ""), of_key=True)

    # -- values --------------------------------------------------------------------

    def text(self, path: _Path, value: Any, what: str) -> str | None:
        """A text value; ``{secret: ...}`` and ``${VAR}`` are resolved and remembered as secrets."""
        secret = False
        if isinstance(value, dict) and list(value) == ["secret"]:
            value, path, secret = value["secret"], (*path, "secret"), True
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"{'no value given' if value in (None, '') else self.shown(path, value) + ' is not text'}; expected {what}")
            return None
        missing = [name for name in _VAR.findall(value) if name not in self.environ]
        if missing:
            self.add(
                path,
                f"${{{missing[0]}}} is not set in the environment; export {missing[0]} before starting corral, "
                'or write the value itself as {secret: "..."}',
            )
            return None
        if _VAR.search(value):
            for name in _VAR.findall(value):
                if self.environ[name]:
                    self.secrets.add(self.environ[name])
            value = _VAR.sub(lambda m: self.environ[m.group(1)], value)
        if secret:
            self.secrets.add(value)
        return value

    def url(self, path: _Path, value: Any, kind: str) -> str | None:
        url = self.text(path, value, f"a URL like {_URL_EXAMPLE.get(kind, 'https://example.com/hook')}")
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = '"' + spec_mask(url, self.secrets) + '"'
            self.add(path, f"{shown} is not an http(s) URL; write it like {_URL_EXAMPLE.get(kind, 'https://example.com/hook')}")
            return None
        return url

    def count(self, path: _Path, value: Any, what: str, *, low: int = 1, high: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            self.add(path, f"{self.shown(path, value)} is not {what}")
            return None
        return value

    def duration(self, path: _Path, value: Any) -> timedelta | None:
        try:
            delta = durations.parse(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        except errors.DurationError as exc:
            self.add(path, str(exc))
            return None
        if delta is None or delta <= timedelta(0):
            self.add(path, f"{self.shown(path, value)} is not a duration longer than 0, like 90s, 30m, 26h or 2d")
            return None
        return delta

    # -- sections -------------------------------------------------------------------

    def channel(self, name: str, raw: Any) -> spec.Channel | None:
        from corral.config import _did_you_mean

        path: _Path = ("notify", "channels", name)
        if not CHANNEL_NAME.match(str(name)):
            self.add(path, f'"{name}" is not a channel name; use letters, digits, _, . and -, like ops or oncall-mail', of_key=True)
            return None
        if not isinstance(raw, dict):
            self.add(path, f'{self.shown(path, raw)} is not a channel; write it like {{type: discord, url: "{_URL_EXAMPLE["discord"]}"}}')
            return None
        kind = raw.get("type")
        if "type" not in raw:
            self.add(path, f'missing key "type": one of {", ".join(spec.CHANNEL_TYPES)}', of_key=True)
            return None
        if kind not in spec.CHANNEL_TYPES:
            hint = _did_you_mean(kind, spec.CHANNEL_TYPES) if isinstance(kind, str) else None
            self.add(
                (*path, "type"),
                f"{self.shown((*path, 'type'), kind)} is not one of {', '.join(spec.CHANNEL_TYPES)}"
                + (f'; did you mean "{hint}"?' if hint else ""),
            )
            return None
        before = self.ok
        self.ok = True
        self.keys(path, raw, CHANNEL_KEYS[kind], f"a {kind} channel")
        values: dict[str, Any] = {}
        if "rate_limit" in raw and raw["rate_limit"] is not None:
            values["rate_limit"] = self.count((*path, "rate_limit"), raw["rate_limit"], "a whole number of messages per hour, 1 or more")
        if kind == "email":
            to = raw.get("to")
            items = [to] if isinstance(to, str) else to
            if "to" not in raw:
                self.add(path, 'missing key "to": the addresses to mail, like [ops@example.com]', of_key=True)
            elif not isinstance(items, list) or not items:
                self.add((*path, "to"), f"{self.shown((*path, 'to'), to)} is not a list of addresses like [ops@example.com]")
            else:
                bad = [item for item in items if not (isinstance(item, str) and _EMAIL.match(item))]
                if bad:
                    self.add((*path, "to"), f"{self.shown((*path, 'to'), bad[0])} is not an email address like ops@example.com")
                values["to"] = tuple(str(item) for item in items)
            if "from" in raw:
                sender = self.text((*path, "from"), raw["from"], "an address like corral@example.com")
                if sender is not None and not _EMAIL.match(sender):
                    self.add((*path, "from"), f'"{sender}" is not an email address like corral@example.com')
                values["sender"] = sender
            if "smtp_host" in raw:
                values["smtp_host"] = self.text((*path, "smtp_host"), raw["smtp_host"], "a host name like localhost")
            if "smtp_port" in raw:
                values["smtp_port"] = self.count((*path, "smtp_port"), raw["smtp_port"], "a port number from 1 to 65535", high=65535)
        else:
            if "url" not in raw:
                self.add(path, f'missing key "url": the {kind} webhook URL, like {_URL_EXAMPLE[kind]}', of_key=True)
            else:
                values["url"] = self.url((*path, "url"), raw["url"], kind)
            if "secret" in raw:
                secret = self.text((*path, "secret"), raw["secret"], 'the HMAC key, like "${CORRAL_HOOK_SECRET}"')
                if secret is not None:
                    self.secrets.add(secret)
                values["secret"] = secret
        good = self.ok
        self.ok = before and good
        if not good:
            return None
        return spec.Channel(name=name, type=kind, **values)

    def rule(self, path: _Path, raw: Any, base: spec.Rule, channels: Mapping[str, spec.Channel]) -> spec.Rule | None:
        from corral.config import _did_you_mean

        example = "{channels: [ops], on: [failure, recovery]}"
        if raw is False:
            return spec.Rule(channels=(), on=())
        if not isinstance(raw, dict):
            self.add(path, f"{self.shown(path, raw)} is not a rule; write it like {example}, or false for no alerts")
            return None
        before = self.ok
        self.ok = True
        self.keys(path, raw, RULE_KEYS)
        values: dict[str, Any] = {}
        if "channels" in raw:
            names = [raw["channels"]] if isinstance(raw["channels"], str) else raw["channels"]
            where = (*path, "channels")
            if not isinstance(names, list):
                self.add(where, f"{self.shown(where, raw['channels'])} is not a list of channel names like [ops, mail]")
            else:
                for index, item in enumerate(names):
                    if item not in channels:
                        known = list(channels)
                        hint = _did_you_mean(item, known) if isinstance(item, str) else None
                        tail = f'did you mean "{hint}"?' if hint else (
                            f"channels are {', '.join(known)}" if known else 'define it under "notify: {channels: ...}"'
                        )
                        self.add((*where, index) if isinstance(raw["channels"], list) else where, f'unknown channel {self.shown((*where, index), item)}; {tail}')
                values["channels"] = tuple(str(item) for item in names)
        if "on" in raw:
            kinds = [raw["on"]] if isinstance(raw["on"], str) else raw["on"]
            where = (*path, "on")
            if not isinstance(kinds, list):
                self.add(where, f"{self.shown(where, raw['on'])} is not a list of {', '.join(spec.ALERT_KINDS)}")
            else:
                for index, item in enumerate(kinds):
                    if item not in spec.ALERT_KINDS:
                        hint = _did_you_mean(item, spec.ALERT_KINDS) if isinstance(item, str) else None
                        at = (*where, index) if isinstance(raw["on"], list) else where
                        self.add(
                            at,
                            f"{self.shown(at, item)} is not one of {', '.join(spec.ALERT_KINDS)}"
                            + (f'; did you mean "{hint}"?' if hint else ""),
                        )
                values["on"] = tuple(str(item) for item in kinds)
        for key in ("remind_every", "missed_after"):
            if key in raw:
                values[key] = None if raw[key] is None else self.duration((*path, key), raw[key])
        if "overrun_factor" in raw:
            factor = raw["overrun_factor"]
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 1:
                self.add((*path, "overrun_factor"), f"{self.shown((*path, 'overrun_factor'), factor)} is not a number above 1, like 2 or 1.5")
            else:
                values["overrun_factor"] = float(factor)
        if "quiet_hours" in raw:
            values["quiet_hours"] = self.quiet_hours((*path, "quiet_hours"), raw["quiet_hours"])
        good = self.ok
        self.ok = before and good
        if not good:
            return None
        rule = spec.Rule(
            channels=values.get("channels", base.channels),
            on=values.get("on", base.on),
            remind_every=values.get("remind_every", base.remind_every),
            quiet_hours=values.get("quiet_hours", base.quiet_hours),
            overrun_factor=values.get("overrun_factor", base.overrun_factor),
            missed_after=values.get("missed_after", base.missed_after),
        )
        if "missed" in rule.on and rule.missed_after is None:
            self.add((*path, "on"), '"missed" needs a window: add missed_after, like missed_after: 26h (no successful run for that long)')
            return None
        return rule

    def quiet_hours(self, path: _Path, raw: Any) -> spec.QuietHours | None:
        from corral.config import check_timezone

        example = '{start: "22:00", end: "07:00", timezone: Asia/Seoul}'
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.add(path, f"{self.shown(path, raw)} is not quiet hours; write them like {example}")
            return None
        self.keys(path, raw, ("start", "end", "timezone"))
        got: dict[str, time] = {}
        for key in ("start", "end"):
            value = raw.get(key)
            if key not in raw:
                self.add(path, f'missing key "{key}": a time like "22:00"; write quiet hours like {example}', of_key=True)
                continue
            match = _HHMM.match(value) if isinstance(value, str) else None
            if isinstance(value, int) and not isinstance(value, bool):
                # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
                self.add((*path, key), f'{self.shown((*path, key), value)} is read as a number; put the time in quotes: "{value // 60:02d}:{value % 60:02d}"')
            elif match is None:
                self.add((*path, key), f'{self.shown((*path, key), value)} is not a time; write it like "22:00"')
            else:
                got[key] = time(int(match.group(1)), int(match.group(2)))
        zone = raw.get("timezone", "UTC")
        try:
            check_timezone(zone) if isinstance(zone, str) else None
        except Exception as exc:  # noqa: BLE001 - PydanticCustomError carries our message
            message = getattr(exc, "context", None) or {}
            self.add((*path, "timezone"), str(message.get("m", exc)) if isinstance(message, dict) else str(exc))
            return None
        if not isinstance(zone, str):
            self.add((*path, "timezone"), f'{self.shown((*path, "timezone"), zone)} is not a time zone like "Asia/Seoul"')
            return None
        if len(got) != 2:
            return None
        return spec.QuietHours(start=got["start"], end=got["end"], timezone=zone)


def spec_mask(text: str, secrets: set[str] | tuple[str, ...]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value:
            text = text.replace(value, "********")
    return text


def _split(path: _Path) -> tuple[str | None, str | None]:
    from corral.config import _split as split

    return split(path)


def check(
    checker: _Checker,
    raw: Any,
    raw_jobs: Any,
    environ: Mapping[str, str],
    settings: spec.Settings,
) -> spec.NotifySettings:
    """The ``notify:`` section and every job's ``notify:`` as frozen values
    (problems go to ``checker``; what is wrong is left out)."""
    r = _Reader(checker, environ)
    dashboard = f"http://{settings.web_host}:{settings.web_port}"
    channels: dict[str, spec.Channel] = {}
    default = spec.Rule()
    declared: dict[str, spec.Channel] = {}
    if raw is not None and not isinstance(raw, dict):
        r.add(("notify",), f"{r.shown(('notify',), raw)} is not a mapping; write it like {{channels: {{ops: {{type: discord, url: ...}}}}, default: {{channels: [ops]}}}}")
        raw = {}
    raw = raw or {}
    r.keys(("notify",), raw, TOP_KEYS)
    if "dashboard_url" in raw:
        url = r.url(("notify", "dashboard_url"), raw["dashboard_url"], "dashboard")
        dashboard = url.rstrip("/") if url else dashboard
    raw_channels = raw.get("channels")
    if raw_channels is not None and not isinstance(raw_channels, dict):
        r.add(("notify", "channels"), f"{r.shown(('notify', 'channels'), raw_channels)} is not a mapping of channel name to channel")
    elif raw_channels:
        for name, body in raw_channels.items():
            declared[str(name)] = spec.Channel(name=str(name), type="webhook")  # for name checks, even if broken
            channel = r.channel(str(name), body)
            if channel is not None:
                channels[str(name)] = channel
    # Without a default rule every channel gets the default kinds.
    default = spec.Rule(channels=tuple(declared))
    if "default" in raw:
        rule = r.rule(("notify", "default"), raw["default"], default, declared)
        default = rule if rule is not None else default
    rules: dict[str, spec.Rule] = {}
    if isinstance(raw_jobs, dict):
        for job, body in raw_jobs.items():
            if isinstance(body, dict) and "notify" in body:
                rule = r.rule(("jobs", job, "notify"), body["notify"], default, declared)
                if rule is not None:
                    rules[str(job)] = rule
    secrets = tuple(sorted(r.secrets, key=lambda v: (-len(v), v)))
    return spec.NotifySettings(channels=channels, default=default, rules=rules, dashboard_url=dashboard, secret_values=secrets)
