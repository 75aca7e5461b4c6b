"""Server-side SVG charts (no JavaScript, no CDN): lines for latency, bars for usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
from markupsafe import Markup, escape

WIDTH: Final = 560
HEIGHT: Final = 200
PAD_L: Final = 56
PAD_R: Final = 12
PAD_T: Final = 24
PAD_B: Final = 28
COLORS: Final = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


@attrs.frozen
class Series:
    name: str
    values: Sequence[float | None]  # one per label; None where there is no value
    dashed: bool = False
    color_index: int = 0


def _scale(top: float) -> float:
    """A round upper bound for the y axis."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(top))) - 1)
    for step in (1, 2, 5, 10):
        if top <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _frame(title: str, labels: Sequence[str], top: float, unit: str) -> list[str]:
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD_L}" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        y = PAD_T + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{top * i / 4:g}{escape(unit)}</text>"
        )
    every = max(1, len(labels) // 7)
    for i, label in enumerate(labels):
        if i % every == 0:
            x = PAD_L + plot_w * (i + 0.5) / max(1, len(labels))
            out.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">'
                f"{escape(label)}</text>"
            )
    return out


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series], unit: str) -> Markup:
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    values = [v for s in series for v in s.values if v is not None]
    top = _scale(max(values, default=0.0))
    out = _frame(title, labels, top, unit)
    n = max(1, len(labels))
    for k, s in enumerate(series):
        color = COLORS[s.color_index % len(COLORS)]
        points = [
            (PAD_L + plot_w * (i + 0.5) / n, PAD_T + plot_h - plot_h * v / top)
            for i, v in enumerate(s.values)
            if v is not None
        ]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
            )
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points)
        out.append(
            f'<text x="{WIDTH - PAD_R}" y="{PAD_T + 12 * k}" text-anchor="end" '
            f'fill="{color}" class="legend">{escape(s.name)}</text>'
        )
    if not values:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="axis">no data yet</text>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> Markup:
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    top = _scale(max(values, default=0.0))
    out = _frame(title, labels, top, unit)
    n = max(1, len(labels))
    bar = plot_w / n * 0.7
    for i, v in enumerate(values):
        h = plot_h * v / top
        x = PAD_L + plot_w * (i + 0.5) / n - bar / 2
        out.append(
            f'<rect x="{x:.1f}" y="{PAD_T + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" fill="{COLORS[0]}"><title>{escape(labels[i])}: {v:g}'
            f"{escape(unit)}</title></rect>"
        )
    if not values:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="axis">no data yet</text>')
    out.append("</svg>")
    return Markup("".join(out))


STAGES: Final = ("queue_wait", "generation", "upload", "total")


def _day(value: object) -> str:
    return value.strftime("%m-%d") if hasattr(value, "strftime") else str(value)


def latency_charts(rows: Sequence[dict[str, Any]]) -> list[Markup]:
    """One chart per stage: p50 (solid) and p95 (dashed) per backend, per day, in seconds."""
    days = sorted({r["day"] for r in rows}, key=str)
    labels = [_day(d) for d in days]
    backends = sorted({str(r["backend"]) for r in rows})
    charts = []
    for stage in STAGES:
        series = []
        for b, backend in enumerate(backends):
            by_day = {r["day"]: r for r in rows if r["stage"] == stage and r["backend"] == backend}
            for pct, dashed in (("p50", False), ("p95", True)):
                values = [
                    float(by_day[d][f"{pct}_ms"]) / 1000 if d in by_day else None for d in days
                ]
                series.append(Series(f"{backend} {pct}", values, dashed, b))
        charts.append(line_chart(f"{stage} latency per day", labels, series, "s"))
    return charts


def usage_charts(rows: Sequence[dict[str, Any]]) -> list[Markup]:
    """Images per day and estimated cost per day (all backends)."""
    days = sorted({r["day"] for r in rows}, key=str)
    images = [sum(int(r["images"]) for r in rows if r["day"] == d) for d in days]
    cost = [sum(float(r["cost_usd"]) for r in rows if r["day"] == d) for d in days]
    labels = [_day(d) for d in days]
    return [
        bar_chart("images per day", labels, [float(n) for n in images], ""),
        bar_chart("estimated cost per day", labels, cost, "$"),
    ]
