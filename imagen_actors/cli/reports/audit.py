"""Pure logic behind ``imagen-actors audit``: typed report rows, text tables, plots.

The numbers come from the named blocks in ``sql/audit.sql`` (over the views of
``schema/0005_audit_views.sql``); this module only shapes and draws them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from imagen_actors.core.errors import UsageError

if TYPE_CHECKING:
    from types import ModuleType

T = TypeVar("T")

STAGES: Final = ("queue_wait", "generation", "upload", "total")
OUTCOMES: Final = ("done", "failed", "cancelled")
_RELATIVE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class LatencyRow(msgspec.Struct, frozen=True, kw_only=True):
    backend: str
    stage: str
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class FailureRow(msgspec.Struct, frozen=True, kw_only=True):
    error_class: str
    error: str
    attempts_failed: int
    jobs_failed: int
    jobs: int
    last_seen: datetime


class StuckRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    reason: str
    status: str
    backend: str
    worker_id: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    lease_expires_at: datetime | None
    run_after: datetime | None
    overdue_s: float
    # How many jobs are stuck in all (the report lists the most overdue ones only).
    total: int = 0


class ThroughputRow(msgspec.Struct, frozen=True, kw_only=True):
    hour: datetime
    outcome: str
    jobs: int


class OwnerJobRow(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    status: str
    backend: str
    created_at: datetime
    finished_at: datetime | None
    attempts: int
    error: str | None
    prompt: str
    bucket: str | None
    storage_path: str | None
    local_path: str | None


def rows_as(cls: type[T], rows: Iterable[Mapping[str, Any]]) -> list[T]:
    """Database rows (dicts) as typed report rows; extra columns are ignored."""
    return [msgspec.convert(dict(r), cls) for r in rows]


def parse_since(
    text: str | None, *, now: datetime | None = None, flag: str = "--since"
) -> datetime | None:
    """``--since`` (and ``archive --before``, ``flag``): an ISO date or datetime (naive =
    UTC), a span back from now (``24h``, ``90d``), or ``all`` (no window: None)."""
    if text is None or text.strip().lower() == "all":
        return None
    m = _RELATIVE.match(text)
    if m:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{flag} {text!r} is neither an ISO date/datetime (2026-11-01, "
            "2026-11-01T08:00) nor a span like 90m, 24h, 7d"
            + ("; 'all' reads the whole history" if flag == "--since" else "")
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ---- text tables -------------------------------------------------------------------------


def _table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def ms(value: float) -> str:
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 120_000:
        return f"{value / 1000:.2f}s"
    return f"{value / 60_000:.1f}min"


def _at(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_latency(rows: Sequence[LatencyRow]) -> str:
    if not rows:
        return "no finished stages in that window"
    body = [
        [r.backend, r.stage, str(r.n), ms(r.p50_ms), ms(r.p95_ms), ms(r.p99_ms), ms(r.max_ms)]
        for r in rows
    ]
    return _table(["backend", "stage", "n", "p50", "p95", "p99", "max"], body)


def format_failures(rows: Sequence[FailureRow]) -> str:
    if not rows:
        return "no failures in that window"
    body = [
        [
            r.error_class,
            str(r.attempts_failed),
            str(r.jobs_failed),
            str(r.jobs),
            _at(r.last_seen),
            r.error if len(r.error) <= 80 else r.error[:77] + "...",
        ]
        for r in rows
    ]
    return _table(
        ["class", "failed attempts", "jobs ended failed", "jobs", "last_seen (UTC)", "cause"], body
    )


def format_stuck(rows: Sequence[StuckRow]) -> str:
    if not rows:
        return "nothing stuck"
    body = [
        [
            str(r.id),
            r.reason,
            r.backend,
            r.worker_id or "-",
            f"{r.attempts}/{r.max_attempts}",
            f"{r.overdue_s:.0f}s",
            _at(r.lease_expires_at if r.status == "running" else r.created_at),
        ]
        for r in rows
    ]
    text = _table(["job", "reason", "backend", "worker", "attempts", "overdue", "since"], body)
    more = rows[0].total - len(rows)
    if more > 0:
        text += f"\n+{more:,} more stuck job(s) not listed (--limit raises the count)"
    return text


def throughput_table(rows: Sequence[ThroughputRow]) -> list[tuple[datetime, dict[str, int]]]:
    """Pivot to one entry per hour with a count per outcome (zeros filled in)."""
    hours: dict[datetime, dict[str, int]] = {}
    for r in rows:
        hours.setdefault(r.hour, dict.fromkeys(OUTCOMES, 0))[r.outcome] = r.jobs
    return sorted(hours.items())


def format_throughput(rows: Sequence[ThroughputRow]) -> str:
    pivot = throughput_table(rows)
    if not pivot:
        return "no jobs finished in that window"
    body = [
        [_at(h)[:13] + ":00", *(str(c[o]) for o in OUTCOMES), str(sum(c.values()))]
        for h, c in pivot
    ]
    return _table(["hour (UTC)", *OUTCOMES, "total"], body)


def format_owner(rows: Sequence[OwnerJobRow]) -> str:
    if not rows:
        return "no jobs for that owner"
    body = [
        [
            str(r.id),
            r.status,
            _at(r.created_at),
            r.backend,
            r.local_path or (f"{r.bucket}/{r.storage_path}" if r.storage_path else "-"),
            repr(r.prompt),
        ]
        for r in rows
    ]
    return _table(["job", "status", "created (UTC)", "backend", "image", "prompt"], body)


# ---- plots (matplotlib, Agg) -------------------------------------------------------------

PLOT_EXTRA_MISSING: Final = (
    "--plot needs matplotlib, which is not installed; install the plot extra with "
    "pip install 'imagen-actors[plot]' (or run the report without --plot)"
)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, imported on first use: matplotlib is the optional
    ``plot`` extra. Raises UsageError naming the extra when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(PLOT_EXTRA_MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(rows: Sequence[LatencyRow], path: Path) -> None:
    """Grouped bars: p50/p95/p99 seconds per stage, one panel per backend."""
    plt = pyplot()
    backends = sorted({r.backend for r in rows}) or ["(none)"]
    fig, axes = plt.subplots(len(backends), 1, figsize=(8, 3.2 * len(backends)), squeeze=False)
    width = 0.25
    for ax, backend in zip(axes[:, 0], backends, strict=True):
        by_stage = {r.stage: r for r in rows if r.backend == backend}
        stages = [s for s in STAGES if s in by_stage]
        xs = list(range(len(stages)))
        for k, (label, attr) in enumerate(
            (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"))
        ):
            values = [getattr(by_stage[s], attr) / 1000 for s in stages]
            ax.bar([x + (k - 1) * width for x in xs], values, width, label=label)
        ax.set_xticks(xs)
        ax.set_xticklabels(stages)
        ax.set_ylabel("seconds")
        ax.set_title(f"stage latency, backend {backend}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_throughput(rows: Sequence[ThroughputRow], path: Path) -> None:
    """Stacked bars: jobs finished per hour by outcome (empty hours shown as gaps)."""
    plt = pyplot()
    pivot = dict(throughput_table(rows))
    hours: list[datetime] = []
    if pivot:
        hour, last = min(pivot), max(pivot)
        while hour <= last:
            hours.append(hour)
            hour += timedelta(hours=1)
    empty = dict.fromkeys(OUTCOMES, 0)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(hours) + 2), 4))
    xs = list(range(len(hours)))
    bottom = [0] * len(hours)
    for outcome in OUTCOMES:
        counts = [pivot.get(h, empty)[outcome] for h in hours]
        ax.bar(xs, counts, 0.8, bottom=bottom, label=outcome)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, len(hours) // 24)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([h.astimezone(UTC).strftime("%m-%d %H:00") for h in hours[::step]])
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_ylabel("jobs finished")
    ax.set_xlabel("hour (UTC)")
    ax.set_title("throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def to_json(value: Any) -> bytes:
    return msgspec.json.encode(value)
