"""The inventory as one self-contained HTML file a person can mail to the team.

Inline CSS, no scripts, no external assets; every value from the hosts is
escaped by Jinja2's autoescape (a crontab line is untrusted text).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import jinja2

from corral.discover import inventory as inv
from corral.discover import parse

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>corral discover: {{ jobs }} job(s) on {{ hosts|length }} host(s)</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d5d9e0; padding-bottom: .2em; }
.sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin-top: .5em; }
th, td { text-align: left; vertical-align: top; padding: .35em .5em; border-bottom: 1px solid #e6e9ee; }
th { background: #f3f5f8; font-weight: 600; position: sticky; top: 0; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all; }
.status { font-weight: 600; padding: .05em .45em; border-radius: .3em; white-space: nowrap; }
.ok { background: #e3f5e8; color: #1c6b35; }
.bad { background: #fde8e8; color: #a31d1d; }
.warn { background: #fff4dc; color: #7a5200; }
.muted { color: #6b7385; }
.kind-disabled td, .kind-invalid td { background: #fafafa; }
.findings { margin: 0; padding-left: 1.1em; }
.findings li { margin: .1em 0; }
.f-invalid, .f-overlap, .f-every_minute, .f-same_command_on_hosts { color: #a31d1d; }
.summary td { border: none; padding: .1em 1em .1em 0; }
</style>
</head>
<body>
<h1>Batch jobs found by corral discover</h1>
<p class="sub">Collected {{ collected_at }} &middot; {{ hosts|length }} host(s), {{ jobs }} job(s),
{{ counts.disabled }} disabled, {{ counts.invalid }} invalid line(s), {{ flagged }} entr{{ 'y' if flagged == 1 else 'ies' }} with findings.</p>

<h2>Hosts</h2>
<table>
<tr><th>host</th><th>status</th><th>timezone</th><th>jobs</th><th>error</th></tr>
{% for host in hosts %}
<tr>
<td>{{ host.name }}</td>
<td><span class="status {{ 'ok' if host.status == 'ok' else ('warn' if host.status == 'permission_denied' else 'bad') }}">{{ host.status }}</span></td>
<td>{{ host.timezone or '-' }}</td>
<td>{{ per_host.get(host.name, 0) }}</td>
<td>{% if host.error %}{{ host.error }}{% endif %}
{% for source, message in host.file_errors %}<div class="muted"><code>{{ source }}</code>: {{ message }}</div>{% endfor %}</td>
</tr>
{% endfor %}
</table>

{% if finding_counts %}
<h2>Findings</h2>
<table class="summary">
{% for code, count in finding_counts %}<tr><td>{{ count }}</td><td class="f-{{ code }}">{{ code.replace('_', ' ') }}</td></tr>{% endfor %}
</table>
{% endif %}

<h2>Entries</h2>
<table>
<tr><th>host</th><th>user</th><th>source</th><th>schedule</th><th>when</th><th>next run</th><th>command</th><th>runtime</th><th>MAILTO</th><th>findings</th></tr>
{% for e in entries %}
<tr class="kind-{{ e.kind }}">
<td>{{ e.host }}</td>
<td>{{ e.user or '-' }}</td>
<td><code>{{ e.source }}:{{ e.line }}</code>{% if e.kind != 'job' %}<div class="muted">{{ e.kind }}</div>{% endif %}</td>
<td><code>{{ e.schedule }}</code></td>
<td>{{ e.description }}</td>
<td>{{ e.next_run or '-' }}{% if e.timezone %}<div class="muted">{{ e.timezone }}</div>{% endif %}</td>
<td><code>{{ e.command }}</code>{% if e.stdin %}<div class="muted">stdin: <code>{{ e.stdin }}</code></div>{% endif %}
{% if e.kind == 'invalid' and e.reason %}<div class="muted">{{ e.reason }}</div>{% endif %}</td>
<td>{{ e.runtime or '-' }}</td>
<td>{{ e.mailto if e.mailto is not none else '-' }}</td>
<td>{% if e.findings %}<ul class="findings">{% for f in e.findings %}<li class="f-{{ f.code }}">{{ f.message }}</li>{% endfor %}</ul>{% endif %}</td>
</tr>
{% endfor %}
</table>
<p class="muted">Next runs are in each entry's timezone (its CRON_TZ/TZ, else the host's), counted from the collection time.
Import the jobs with <code>corral import INVENTORY.json -o corral.yaml</code>.</p>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _when(text: str | None, tz: str | None) -> str | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    zone = parse.zone(tz)
    if zone is not None:
        moment = moment.astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()


def render(inventory: inv.Inventory) -> str:
    """The HTML report of ``inventory`` (entries with findings, hosts with status)."""
    data = inv.to_json(inventory)
    entries: list[dict[str, Any]] = [dict(e, next_run=_when(e["next_run"], e["timezone"])) for e in data["entries"] if e["kind"] != "env"]
    kinds = Counter(e["kind"] for e in entries)
    per_host = Counter(e["host"] for e in entries if e["kind"] == "job")
    codes = Counter(f["code"] for e in entries for f in e["findings"])
    template = _ENV.from_string(_TEMPLATE)
    return template.render(
        collected_at=inventory.collected_at.isoformat(timespec="seconds"),
        hosts=inventory.hosts,
        entries=entries,
        jobs=kinds.get("job", 0),
        counts={"disabled": kinds.get("disabled", 0), "invalid": kinds.get("invalid", 0)},
        flagged=sum(1 for e in entries if e["findings"]),
        per_host=per_host,
        finding_counts=codes.most_common(),
    )


__all__ = ["render"]
