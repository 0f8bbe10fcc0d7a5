"""Server-rendered SVG bar charts for the usage pages: no JavaScript, no chart library, no CDN."""

from __future__ import annotations

import datetime as dt
from html import escape

# Distinguishable on white and for most colour-blind readers (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 56, 28, 10


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def stacked_bars(title: str, days: list[dt.date], series: list[tuple[str, list[float]]]) -> str:
    """One bar per day, stacked by series (label, one value per day)."""
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(days))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for fraction in (0, 0.5, 1):  # grid lines and their values
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{_short(top * fraction)}</text>')
    for i, day in enumerate(days):
        x = LEFT + i * slot + slot * 0.15
        base = TOP + plot_h
        for index, (label, values) in enumerate(series):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{colour(index)}"><title>{day:%b %d} · {escape(label)}: {values[i]:g}</title></rect>')
        if i % 5 == 0 or i == len(days) - 1:
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">'
                         f'{day:%b %d}</text>')
    parts.append("</svg>")
    return "".join(parts)
