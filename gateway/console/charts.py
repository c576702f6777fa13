"""Charts as inline SVG, drawn on the server: no script, no library, nothing to download.

Each chart is an ``<svg role="img">`` with a title and a description that say what it shows
in words (and the page puts the numbers in a table beside it), scales to its container
through its viewBox, and takes its colours from the console's stylesheet by class, so that
the Content Security Policy needs no inline style.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from markupsafe import Markup, escape

_ids = itertools.count(1)


def _frame(title: str, description: str, width: int, height: int, body: list[str]) -> Markup:
    n = next(_ids)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart{n}t chart{n}d" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart{n}t">{escape(title)}</title>'
        f'<desc id="chart{n}d">{escape(description)}</desc>{"".join(body)}</svg>')


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at or above ``value`` (at least 1)."""
    top = 1.0
    while top < value:
        for step in (2, 2.5, 2):
            top *= step
            if top >= value:
                break
    return top


def bars(title: str, points: Sequence[tuple[float, float, bool]], unit: str,
         slots: int = 60, width: int = 600, height: int = 150) -> Markup:
    """One bar per (time, value, partial) point in ``slots`` places, the newest on the
    right (so the axis is always the same span, however few points there are yet); a
    partial point (the minute still running) is drawn lighter. The y axis starts at 0."""
    left, bottom, top_pad = 40, 20, 10
    plot_w, plot_h = width - left - 5, height - bottom - top_pad
    points = list(points)[-slots:]
    top = nice_top(max((v for _, v, _ in points), default=0))
    body = [_axis(left, top_pad, plot_w, plot_h, top)]
    slot = plot_w / slots
    first = slots - len(points)
    for i, (at, value, partial) in enumerate(points, start=first):
        h = plot_h * value / top
        x = left + i * slot + slot * 0.1
        body.append(f'<rect class="bar{" partial" if partial else ""}" x="{x:.1f}" '
                    f'y="{top_pad + plot_h - h:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}">'
                    f'<title>{_clock(at)}: {value:g} {escape(unit)}</title></rect>')
    if points:
        body.append(_label(left, height - 4, f"{slots} min ago", "start"))
        body.append(_label(width - 5, height - 4, _clock(points[-1][0]), "end"))
    total = sum(v for _, v, _ in points)
    description = (f"{len(points)} minutes, {total:g} {unit} in all, at most "
                   f"{max((v for _, v, _ in points), default=0):g} in a minute")
    return _frame(title, description, width, height, body)


def stacked(title: str, rows: Sequence[tuple[str, dict[str, float]]], order: Sequence[str],
            width: int = 600, row_height: int = 26) -> Markup:
    """One horizontal bar per (label, counts by status), each split by status in ``order``
    and scaled to its own total (the mix, not the volume); the total is written after it."""
    left, right = 110, 70
    plot_w = width - left - right
    height = max(len(rows), 1) * row_height + 4
    body = []
    for i, (label, counts) in enumerate(rows):
        y, total = 2 + i * row_height, sum(counts.values())
        body.append(_label(left - 6, y + row_height * 0.65, label, "end"))
        x = float(left)
        for status in order:
            count = counts.get(status, 0)
            if not count:
                continue
            w = plot_w * count / total
            body.append(f'<rect class="st-{escape(status)}" x="{x:.1f}" y="{y + 3}" '
                        f'width="{w:.1f}" height="{row_height - 8}"><title>{escape(label)}: '
                        f'{count:g} {escape(status)} ({100 * count / total:.1f}%)</title></rect>')
            x += w
        body.append(_label(left + plot_w + 6, y + row_height * 0.65, f"{total:g}", "start"))
    description = "; ".join(
        f"{label}: " + ", ".join(f"{counts[s]:g} {s}" for s in order if counts.get(s))
        for label, counts in rows) or "no messages"
    return _frame(title, description, width, height, body)


def _axis(left: int, top_pad: int, plot_w: float, plot_h: float, top: float) -> str:
    base = top_pad + plot_h
    return (f'<line class="axis" x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}"/>'
            f'<line class="grid" x1="{left}" y1="{top_pad}" x2="{left + plot_w}" '
            f'y2="{top_pad}"/>' + _label(left - 4, top_pad + 4, f"{top:g}", "end")
            + _label(left - 4, base, "0", "end"))


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))
