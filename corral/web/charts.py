"""Geometry of the dashboard's SVG charts, as plain numbers.

Pure functions of their inputs (no clock, no store): the templates draw
rectangles, lines and text from these values, and Jinja escapes every label,
so a job name or message can never become markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from corral import durations

# ---------------------------------------------------------------------------
# Sparkline


@dataclass(frozen=True)
class Spark:
    width: int
    height: int
    points: str
    """``x,y x,y ...`` for an SVG polyline."""
    last_x: float
    last_y: float
    top_seconds: float
    count: int


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24, pad: float = 2.0) -> Spark | None:
    """A polyline of ``values`` (oldest first) scaled into ``width`` x ``height``."""
    if not values:
        return None
    top = max(values) or 1.0
    inner_w, inner_h = width - 2 * pad, height - 2 * pad
    step = inner_w / (len(values) - 1) if len(values) > 1 else 0.0
    coords = []
    for i, value in enumerate(values):
        x = pad + (i * step if len(values) > 1 else inner_w / 2)
        y = pad + inner_h - (max(0.0, value) / top) * inner_h
        coords.append((round(x, 1), round(y, 1)))
    points = " ".join(f"{x:g},{y:g}" for x, y in coords)
    return Spark(width, height, points, coords[-1][0], coords[-1][1], top, len(values))


# ---------------------------------------------------------------------------
# Shared pieces


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str
    href: str | None = None


@dataclass(frozen=True)
class Line:
    y: float
    css: str
    label: str
    label_y: float = 0.0
    """Baseline of the label: near ``y``, moved apart from the other labels so none overlap."""


LABEL_GAP = 14.0
"""Least vertical distance between two reference-line labels, in chart units."""


def spread_labels(lines: Sequence[Line]) -> list[Line]:
    """The lines with label baselines at least :data:`LABEL_GAP` apart (p50, p95
    and the schedule interval are often within a few pixels of each other)."""
    ordered = sorted(lines, key=lambda line: line.y)
    placed: list[Line] = []
    for line in ordered:
        want = line.y + 4
        if placed and want - placed[-1].label_y < LABEL_GAP:
            want = placed[-1].label_y + LABEL_GAP
        placed.append(Line(line.y, line.css, line.label, want))
    return placed


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    major: bool = True


_NICE_SECONDS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400,
)  # fmt: skip


def nice_step(rough: float) -> float:
    """A round duration step (1s, 5m, 1h, ...) at least ``rough`` seconds."""
    for step in _NICE_SECONDS:
        if step >= rough:
            return float(step)
    return float(math.ceil(rough / (7 * 86400)) * 7 * 86400)


# ---------------------------------------------------------------------------
# Duration chart: one bar per finished run, p50 / p95 and the schedule interval


@dataclass(frozen=True)
class Sample:
    run_id: int
    seconds: float
    state: str
    label: str
    """When the run started, as shown in the tooltip."""


@dataclass(frozen=True)
class DurationChart:
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    bars: list[Bar]
    lines: list[Line]
    yticks: list[Tick]
    note: str | None = None


def duration_chart(
    samples: Sequence[Sample],
    *,
    p50: float | None,
    p95: float | None,
    interval: float | None,
    width: int = 760,
    height: int = 240,
) -> DurationChart | None:
    """Bars for ``samples`` (oldest first) with p50, p95 and the schedule interval.

    The interval is drawn only when it fits the scale of the runs (within 3x of
    the longest); a daily job whose runs take seconds gets a note instead of a
    line that would flatten every bar.
    """
    if not samples:
        return None
    left, top, right, bottom = 64.0, 12.0, float(width - 150), float(height - 24)
    longest = max(max(s.seconds for s in samples), p95 or 0.0, p50 or 0.0)
    note = None
    draw_interval = interval is not None and interval > 0 and interval <= 3 * max(longest, 1e-9)
    scale_top = max(longest, interval if draw_interval and interval is not None else 0.0, 1e-3) * 1.1
    step = nice_step(scale_top / 4)
    scale_top = max(step, math.ceil(scale_top / step) * step)
    plot_h = bottom - top

    def y_of(seconds: float) -> float:
        return round(bottom - (max(0.0, seconds) / scale_top) * plot_h, 1)

    slot = (right - left) / max(len(samples), 12)
    bars = []
    for i, sample in enumerate(samples):
        y = y_of(sample.seconds)
        h = max(1.0, round(bottom - y, 1))
        bars.append(
            Bar(
                x=round(left + i * slot + slot * 0.1, 1),
                y=min(y, bottom - 1),
                w=round(max(1.0, slot * 0.8), 1),
                h=h,
                css=f"state-{sample.state}",
                title=(
                    f"run {sample.run_id}: {durations.format(sample.seconds)}, {sample.state}, started {sample.label}"
                ),
                href=f"/runs/{sample.run_id}",
            )
        )
    lines = []
    if p50 is not None:
        lines.append(Line(y_of(p50), "p50", f"p50 {durations.format(p50)}"))
    if p95 is not None:
        lines.append(Line(y_of(p95), "p95", f"p95 {durations.format(p95)}"))
    if interval is not None and interval > 0:
        if draw_interval:
            lines.append(Line(y_of(interval), "interval", f"schedule every {durations.format(interval)}"))
        else:
            note = (
                f"The schedule interval ({durations.format(interval)}) is far above these runs "
                f"(longest {durations.format(longest)}), so runs fit comfortably between slots."
            )
    ticks = []
    value = 0.0
    while value <= scale_top + 1e-9:
        ticks.append(Tick(y_of(value), durations.format(value) if value else "0"))
        value += step
    return DurationChart(width, height, left, top, right, bottom, bars, spread_labels(lines), ticks, note)


# ---------------------------------------------------------------------------
# Gantt chart: one row per job, bars for executions, markers for skipped slots


@dataclass(frozen=True)
class Item:
    row: str
    start: datetime
    end: datetime | None
    """None: still going, the bar reaches ``now``."""
    css: str
    title: str
    href: str | None = None
    marker: bool = False
    """Draw a marker at ``start`` (a skipped slot) instead of a bar."""


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    css: str
    title: str
    href: str | None = None

    @property
    def points(self) -> str:
        """A small diamond around (x, y)."""
        r = 4.5
        return (
            f"{self.x:g},{self.y - r:g} {self.x + r:g},{self.y:g} {self.x:g},{self.y + r:g} {self.x - r:g},{self.y:g}"
        )


@dataclass(frozen=True)
class Row:
    label: str
    y: float
    height: float
    lanes: int
    href: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Gantt:
    width: int
    height: int
    plot_left: float
    plot_right: float
    axis_y: float
    rows: list[Row]
    bars: list[Bar]
    markers: list[Marker]
    ticks: list[Tick]
    now_x: float | None
    overlaps: int
    """Bars that share time with another bar of the same row (drawn in extra lanes)."""
    zone: str = "UTC"
    notes: list[str] = field(default_factory=list)


def _lanes(items: Sequence[Item], now: datetime) -> list[int]:
    """Greedy lane per bar so that bars in one lane never overlap."""
    ends: list[datetime] = []
    out = []
    for item in items:
        end = item.end or now
        for lane, lane_end in enumerate(ends):
            if lane_end <= item.start:
                ends[lane] = end
                out.append(lane)
                break
        else:
            ends.append(end)
            out.append(len(ends) - 1)
    return out


def _merge(items: Sequence[Item], close: timedelta, now: datetime) -> list[Item]:
    """Consecutive items that look alike (same class) and nearly touch, as one.

    ``items`` are all bars or all markers, by start. Bars merge only when they
    do not overlap, so a merged bar never hides an overlap.
    """
    out: list[Item] = []
    group: list[Item] = []

    def reach(members: Sequence[Item]) -> datetime:
        if members[0].marker:
            return members[-1].start
        return max(m.end or now for m in members)

    def flush() -> None:
        if len(group) == 1:
            out.append(group[0])
        elif group:
            first, last = group[0], group[-1]
            end = None if first.marker or any(m.end is None for m in group) else reach(group)
            what = "skipped slots" if first.marker else "runs"
            title = (
                f"{len(group)} {what} drawn as one at this scale (choose a shorter range to see each): "
                f"first {first.title}; last {last.title}"
            )
            out.append(Item(first.row, first.start, end, first.css, title, None, first.marker))
        group.clear()

    for item in items:
        if group:
            edge = reach(group)
            if item.css == group[0].css and timedelta(0) <= item.start - edge <= close:
                group.append(item)
                continue
            flush()
        group.append(item)
    flush()
    return out


def gantt(
    rows: Sequence[str],
    items: Sequence[Item],
    *,
    start: datetime,
    end: datetime,
    zone: str,
    now: datetime,
    width: int = 1000,
    label_w: int = 170,
    lane_h: float = 14.0,
    row_links: Mapping[str, str] | None = None,
    row_notes: Mapping[str, str] | None = None,
) -> Gantt:
    """Lay out ``items`` over [start, end] with the time axis in ``zone``."""
    plot_left, plot_right = float(label_w), float(width - 10)
    span = (end - start).total_seconds() or 1.0
    axis_y = 22.0

    def x_of(moment: datetime) -> float:
        seconds = (min(max(moment, start), end) - start).total_seconds()
        return round(plot_left + seconds / span * (plot_right - plot_left), 1)

    names = list(dict.fromkeys(list(rows) + [i.row for i in items]))
    by_row: dict[str, list[Item]] = {name: [] for name in names}
    for item in items:
        by_row[item.row].append(item)

    out_rows: list[Row] = []
    bars: list[Bar] = []
    markers: list[Marker] = []
    overlaps = 0
    y = axis_y + 6
    pad = 4.0
    # Neighbours closer than this (1.5 px) are drawn as one: a week of an
    # every-minute job would otherwise be 10,000 bars, most under a pixel wide.
    close = timedelta(seconds=1.5 * span / (plot_right - plot_left))
    for name in names:
        row_items = by_row[name]
        spans = _merge(sorted((i for i in row_items if not i.marker), key=lambda i: i.start), close, now)
        points = _merge(sorted((i for i in row_items if i.marker), key=lambda i: i.start), close, now)
        lanes = _lanes(spans, now)
        lane_count = max(lanes, default=0) + 1
        height = lane_count * lane_h + 2 * pad
        for item, lane in zip(spans, lanes, strict=True):
            x0 = x_of(item.start)
            x1 = x_of(item.end or now)
            overlaps += lane > 0
            css = item.css + (" overlap" if lane > 0 else "")
            bars.append(
                Bar(
                    x0,
                    round(y + pad + lane * lane_h + 1, 1),
                    max(1.5, round(x1 - x0, 1)),
                    lane_h - 2,
                    css,
                    item.title,
                    item.href,
                )
            )
        for item in points:
            markers.append(Marker(x_of(item.start), round(y + pad + lane_h / 2, 1), item.css, item.title, item.href))
        out_rows.append(
            Row(
                name,
                round(y, 1),
                height,
                lane_count,
                (row_links or {}).get(name),
                (row_notes or {}).get(name),
            )
        )
        y += height
    ticks = [Tick(x_of(moment), label, major) for moment, label, major in time_ticks(start, end, zone)]
    now_x = x_of(now) if start <= now <= end else None
    return Gantt(
        width, int(y + 8), plot_left, plot_right, axis_y, out_rows, bars, markers, ticks, now_x, overlaps, zone
    )


_TICK_MINUTES = (15, 30, 60, 120, 180, 360, 720, 1440)


def time_ticks(start: datetime, end: datetime, zone: str, *, most: int = 13) -> list[tuple[datetime, str, bool]]:
    """Instants in (start, end] on round wall-clock times of ``zone``.

    The step (15 min ... 1 day) is the smallest giving at most ``most`` ticks.
    Ticks are found on the zone's wall clock, so they stay on round local
    times through DST changes and in zones with :30 or :45 offsets.
    Midnights are major ticks labelled with the date.
    """
    tz = ZoneInfo(zone)
    span_minutes = (end - start).total_seconds() / 60
    step = next((m for m in _TICK_MINUTES if span_minutes / m <= most), None)
    if step is None:
        step = 1440 * math.ceil(span_minutes / 1440 / most)
    # Every 15 minutes of absolute time is a candidate: each zone offset in use
    # is a multiple of 15 minutes, so every round local time is among them.
    probe = start.astimezone(timezone.utc).replace(second=0, microsecond=0)
    probe -= timedelta(minutes=probe.minute % 15)
    out: list[tuple[datetime, str, bool]] = []
    day_step = max(1, step // 1440)
    while probe <= end:
        if probe > start:
            local = probe.astimezone(tz)
            minutes = local.hour * 60 + local.minute
            midnight = minutes == 0
            if step < 1440:
                keep = minutes % step == 0
            else:
                keep = midnight and local.toordinal() % day_step == 0
            if keep:
                label = local.strftime("%a %d %b") if midnight else local.strftime("%H:%M")
                out.append((probe, label, midnight))
        probe += timedelta(minutes=15)
    return out


# ---------------------------------------------------------------------------
# Step graph: a pipeline run's steps as boxes in columns by DAG depth


@dataclass(frozen=True)
class Node:
    """A step to draw: its name, ``needs`` and what the box says."""

    name: str
    needs: tuple[str, ...]
    state: str
    detail: str
    """Second line of the box, e.g. ``succeeded · 1m05s``."""
    title: str
    """Tooltip."""


@dataclass(frozen=True)
class Box:
    name: str
    x: float
    y: float
    w: float
    h: float
    state: str
    detail: str
    title: str
    href: str


@dataclass(frozen=True)
class Arrow:
    path: str
    """SVG path data from the needed step's right edge to the dependant's left edge."""
    title: str


@dataclass(frozen=True)
class StepGraph:
    width: float
    height: float
    boxes: list[Box]
    arrows: list[Arrow]


def step_depths(nodes: Sequence[Node]) -> dict[str, int]:
    """Longest chain of ``needs`` above each step (0 for a step that needs nothing).

    Needs naming no drawn step are ignored; a cycle (impossible in a valid
    job file) is cut where it is met, so drawing never loops."""
    by_name = {n.name: n for n in nodes}
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def of(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in visiting:
            return 0
        visiting.add(name)
        above = [of(need) for need in by_name[name].needs if need in by_name]
        visiting.discard(name)
        depth[name] = 1 + max(above) if above else 0
        return depth[name]

    for node in nodes:
        of(node.name)
    return depth


def step_graph(
    nodes: Sequence[Node], *, box_w: float = 168, box_h: float = 44, gap_x: float = 56, gap_y: float = 14, pad: float = 8
) -> StepGraph | None:
    """Boxes in one column per depth (in the given order within a column) and
    an arrow for every need; None without steps."""
    if not nodes:
        return None
    depth = step_depths(nodes)
    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for node in nodes:
        col = depth[node.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        boxes[node.name] = Box(
            node.name,
            pad + col * (box_w + gap_x),
            pad + row * (box_h + gap_y),
            box_w,
            box_h,
            node.state,
            node.detail,
            node.title,
            f"#step-{node.name}",
        )
    arrows = []
    for node in nodes:
        to = boxes[node.name]
        for need in node.needs:
            src = boxes.get(need)
            if src is None:
                continue
            x1, y1 = src.x + src.w, src.y + src.h / 2
            x2, y2 = to.x - 4, to.y + to.h / 2
            bend = max((x2 - x1) / 2, 12)
            path = f"M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}"
            arrows.append(Arrow(path, f"{node.name} needs {need}"))
    columns = max(depth.values()) + 1
    width = 2 * pad + columns * box_w + (columns - 1) * gap_x
    tallest = max(rows.values())
    height = 2 * pad + tallest * box_h + (tallest - 1) * gap_y
    return StepGraph(width, height, list(boxes.values()), arrows)
