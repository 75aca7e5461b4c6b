"""Server-side SVG charts: values land where they should, text is escaped."""

from __future__ import annotations

from datetime import UTC, datetime

from imagen_actors.web import charts


def test_a_line_chart_skips_missing_points_and_escapes_names() -> None:
    svg = str(
        charts.line_chart(
            "<script>",
            ["a", "b", "c"],
            [charts.Series("x<y", [1.0, None, 3.0]), charts.Series("p95", [2.0, 2.0, 2.0], True)],
            "s",
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "x&lt;y" in svg
    assert svg.count("<circle") == 5
    assert 'stroke-dasharray="5 3"' in svg
    # The y axis tops at a round number at or above the largest value.
    assert ">5s</text>" in svg


def test_latency_charts_have_one_chart_per_stage_in_seconds() -> None:
    day = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        {"day": day, "backend": "mock", "stage": "total", "p50_ms": 1500.0, "p95_ms": 4000.0},
    ]
    out = [str(c) for c in charts.latency_charts(rows)]
    assert len(out) == 4
    total = out[3]
    assert "total latency per day" in total and "mock p50" in total and "mock p95" in total
    assert "12-01" in total and ">5s</text>" in total
    assert "no data yet" in out[0]


def test_usage_charts_sum_backends_per_day() -> None:
    day = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        {"day": day, "backend": "a", "images": 3, "cost_usd": 0.5},
        {"day": day, "backend": "b", "images": 2, "cost_usd": 0.25},
    ]
    images, cost = (str(c) for c in charts.usage_charts(rows))
    assert "12-01: 5" in images
    assert "12-01: 0.75$" in cost
