"""Pure replay/audit report logic: timelines, projection diffs, JSONL logs, --since, plots."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from imagen_actors.cli.reports import audit as ar
from imagen_actors.cli.reports import replay as rr
from imagen_actors.core import events as ev
from imagen_actors.core import fold

JOB = uuid.UUID("33333333-3333-4333-8333-333333333333")
OWNER = uuid.UUID("11111111-1111-4111-8111-111111111111")
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def stream() -> list[ev.AnyEvent]:
    """Submitted, claimed, failed transiently, requeued, claimed again, failed for good."""
    at = T0
    out: list[ev.AnyEvent] = [
        ev.JobSubmitted(
            job_id=JOB,
            occurred_at=at,
            actor="database",
            owner_user_id=OWNER,
            prompt="owl",
            backend="mock",
            width=64,
            height=64,
        )
    ]

    def nxt(ms: int) -> datetime:
        nonlocal at
        at = at + timedelta(milliseconds=ms)
        return at

    common = {"job_id": JOB, "actor": "executor", "worker_id": "w1"}
    out += [
        ev.JobClaimed(
            **common, occurred_at=nxt(1500), attempt=1, lease_expires_at=T0 + timedelta(minutes=1)
        ),
        ev.GenerationFailed(**common, occurred_at=nxt(250), error="reset", error_class="transient"),
        ev.JobRequeued(**common, occurred_at=nxt(10), reason="transient failure", error="reset"),
        ev.JobClaimed(
            **common, occurred_at=nxt(3000), attempt=2, lease_expires_at=T0 + timedelta(minutes=2)
        ),
        ev.JobFailed(**common, occurred_at=nxt(125_000), error="gone", error_class="permanent"),
    ]
    return out


def test_timeline_entries_seq_gaps_and_details() -> None:
    """Each entry has its seq, the gap since the previous event and its key fields."""
    tl = rr.timeline(JOB, stream())
    assert [e.seq for e in tl.events] == [1, 2, 3, 4, 5, 6]
    assert [e.since_previous_ms for e in tl.events] == [None, 1500, 250, 10, 3000, 125_000]
    assert tl.events[1].details["attempt"] == 1
    assert tl.events[2].details == {"error_class": "transient", "error": "reset"}
    assert tl.events[3].details == {"reason": "transient failure", "error": "reset"}
    assert (tl.status, tl.error) == ("failed", None)


def test_format_timeline_is_readable() -> None:
    """The text timeline shows durations, types, worker and key=value details."""
    text = rr.format_timeline(rr.timeline(JOB, stream()))
    assert text.splitlines()[0].startswith(f"job {JOB}  (6 events, status failed)")
    assert "+1.50s" in text and "+250ms" in text and "+2.1min" in text
    assert "attempt=2" in text and "error_class=permanent" in text and "w1" in text


def test_timeline_reports_an_illegal_stream() -> None:
    """A stream that does not fold still gets a timeline, plus the fold's complaint."""
    broken = [e for e in stream() if not isinstance(e, ev.JobRequeued)]
    tl = rr.timeline(JOB, broken)
    assert tl.status is None and tl.error is not None and "JobClaimed" in tl.error
    assert "replay fails" in rr.format_timeline(tl)


def test_verify_detects_each_differing_column() -> None:
    """verify names every projected column where the row disagrees with the replay."""
    events = stream()
    row = fold.replay(events).projection()
    assert rr.verify(JOB, events, row).ok
    tampered = {**row, "error": "x", "attempts": 1}
    result = rr.verify(JOB, events, tampered)
    assert not result.ok
    assert [(d.column, d.replayed, d.stored) for d in result.diffs] == [
        ("error", "gone", "x"),
        ("attempts", 2, 1),
    ]
    text = rr.format_verify(result)
    assert "MISMATCH in 2 column(s)" in text and "'x'" in text
    assert not rr.verify(JOB, events, None).ok


def test_verify_stream_and_summary() -> None:
    """A log stream either folds or reports its illegal event; the summary counts both."""
    good = rr.verify_stream(JOB, stream())
    bad = rr.verify_stream(JOB, stream()[1:])
    assert good.ok and not bad.ok and "no JobSubmitted" in (bad.error or "")
    summary = rr.summarize([good, bad])
    assert (summary.checked, summary.ok, summary.mismatched) == (2, 1, 1)
    assert rr.format_summary(summary).endswith("checked 2 job(s): 1 ok, 1 mismatched")
    doc = json.loads(rr.to_json(summary))
    assert doc["results"][1]["ok"] is False


def test_read_log_groups_by_job_and_rejects_garbage() -> None:
    """JSONL lines decode into per-job streams in order; a bad line names its number."""
    other = uuid.UUID(int=5)
    a = stream()
    b = [msgspec.structs.replace(e, job_id=other) for e in a[:2]]
    lines = [ev.encode(a[0]), ev.encode(b[0]), b"", ev.encode(a[1]), ev.encode(b[1])]
    streams = rr.read_log(lines)
    assert list(streams) == [JOB, other]
    assert [type(e).__name__ for e in streams[JOB]] == ["JobSubmitted", "JobClaimed"]
    with pytest.raises(rr.LogError, match="line 2"):
        rr.read_log([ev.encode(a[0]), b'{"type": "Nope"}'])


def test_parse_since_forms() -> None:
    """--since takes ISO dates (naive = UTC), datetimes and spans like 24h."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert ar.parse_since(None) is None
    assert ar.parse_since("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert ar.parse_since("2026-01-02T03:04:05+01:00") == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert ar.parse_since("24h", now=now) == now - timedelta(hours=1 * 24)
    assert ar.parse_since("90m", now=now) == now - timedelta(minutes=90)
    with pytest.raises(ValueError, match="span"):
        ar.parse_since("yesterday")


def test_report_tables_and_plots(tmp_path: Path) -> None:
    """The text tables carry the numbers; the plots are real PNG files."""
    lat = [
        ar.LatencyRow(
            backend="mock",
            stage="queue_wait",
            n=3,
            p50_ms=500,
            p95_ms=1500,
            p99_ms=1900,
            max_ms=2000,
        ),
        ar.LatencyRow(
            backend="mock",
            stage="total",
            n=3,
            p50_ms=5000,
            p95_ms=150_000,
            p99_ms=190_000,
            max_ms=200_000,
        ),
    ]
    text = ar.format_latency(lat)
    assert "500ms" in text and "1.50s" in text and "3.2min" in text
    thr = [
        ar.ThroughputRow(hour=T0, outcome="done", jobs=4),
        ar.ThroughputRow(hour=T0, outcome="failed", jobs=1),
        ar.ThroughputRow(hour=T0 + timedelta(hours=3), outcome="done", jobs=2),
    ]
    assert ar.throughput_table(thr)[0] == (T0, {"done": 4, "failed": 1, "cancelled": 0})
    assert "2026-01-01 10:00  4     1       0          5" in ar.format_throughput(thr)
    ar.plot_latency(lat, tmp_path / "l.png")
    ar.plot_throughput(thr, tmp_path / "t.png")
    assert (tmp_path / "l.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")
    assert ar.format_failures([]) == "no failures in that window"
