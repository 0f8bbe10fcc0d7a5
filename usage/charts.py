"""Server-rendered SVG bar charts for the usage pages: no JavaScript, no chart library, no CDN."""

from __future__ import annotations

import datetime as dt
from html import escape

# Distinguishable on white and for most colour-blind readers (Okabe-Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# The plot's own units: it stretches to the page's width at a fixed height (portal.css, .chart).
WIDTH, HEIGHT, TOP = 600, 180, 8
LABEL_EVERY = 5  # days between date labels, counted back from today


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
    """One bar per day, stacked by series (label, one value per day).

    The bars are an SVG that stretches to any width; the axis labels are HTML beside and below it,
    placed in percent of the plot, so they keep the page's font size on a phone as on a wide screen
    (text inside a scaled SVG would shrink with it, to 4 px on a phone)."""
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_h = HEIGHT - TOP
    slot = WIDTH / max(1, len(days))
    svg = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    y_labels = []
    for fraction in (0, 0.5, 1):  # grid lines and their values
        y = TOP + plot_h * (1 - fraction)
        svg.append(f'<line x1="0" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" class="grid" '
                   f'vector-effect="non-scaling-stroke"/>')
        y_labels.append(f'<span style="top: {100 * y / HEIGHT:.2f}%">{_short(top * fraction)}</span>')
    x_labels = []
    for i, day in enumerate(days):
        x = i * slot + slot * 0.15
        base = TOP + plot_h
        for index, (label, values) in enumerate(series):
            if not values[i]:
                continue
            h = plot_h * values[i] / top
            base -= h
            svg.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                       f'fill="{colour(index)}"><title>{day:%b %d} · {escape(label)}: {values[i]:g}</title></rect>')
        if (len(days) - 1 - i) % LABEL_EVERY == 0:
            # The last one ends at the plot's right edge rather than hang over it.
            where = "right: 0" if i == len(days) - 1 else f"left: {100 * (i + 0.5) * slot / WIDTH:.2f}%"
            x_labels.append(f'<span style="{where}">{day:%b %d}</span>')
    svg.append("</svg>")
    widest = max((_short(top * f) for f in (0, 0.5, 1)), key=len)
    return (f'<div class="chart-box"><div class="chart-y" aria-hidden="true">{"".join(y_labels)}'
            f'<span class="chart-y-width">{widest}</span></div>{"".join(svg)}'
            f'<div class="chart-x" aria-hidden="true">{"".join(x_labels)}</div></div>')
