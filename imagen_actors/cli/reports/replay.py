"""Pure logic behind ``imagen-actors replay``: timelines, replay-vs-row diffs, JSONL logs.

Nothing here touches the database or prints; the CLI feeds it events and rows and writes
what it returns.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import attrs
import msgspec

from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    occurred_at: datetime
    since_previous_ms: float | None
    type: str
    actor: str
    worker_id: str | None
    details: dict[str, Any]


class JobTimeline(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    events: list[TimelineEntry]
    status: str | None = None
    error: str | None = None


class FieldDiff(msgspec.Struct, frozen=True, kw_only=True):
    column: str
    replayed: Any
    stored: Any


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    ok: bool
    events: int
    diffs: list[FieldDiff] = msgspec.field(default_factory=list)
    error: str | None = None
    # Broken rules of the log itself: seq gaps, hashes that do not chain, unreadable events;
    # with --objects, a stored object that is missing or not the one its sha256 names.
    problems: list[str] = msgspec.field(default_factory=list)
    # The stored row's status (None without a row).
    status: str | None = None


class VerifySummary(msgspec.Struct, frozen=True, kw_only=True):
    checked: int
    ok: int
    mismatched: int
    # Every result for a log (``summarize``); for the database (``Tally``), only the jobs
    # that did not verify: `replay --all` keeps nothing per good job, whatever the history.
    results: list[VerifyResult]


@attrs.define
class Tally:
    """Counts results as they stream past, keeping only the ones that are not ok."""

    checked: int = 0
    ok: int = 0
    failed: list[VerifyResult] = attrs.Factory(list)

    def add(self, result: VerifyResult) -> None:
        self.checked += 1
        if result.ok:
            self.ok += 1
        else:
            self.failed.append(result)

    def add_ok(self, count: int) -> None:
        """``count`` more jobs that verified, counted where they were checked (another
        process) and not sent."""
        self.checked += count
        self.ok += count

    def summary(self) -> VerifySummary:
        return VerifySummary(
            checked=self.checked, ok=self.ok, mismatched=len(self.failed), results=self.failed
        )


def details(event: ev.Event) -> dict[str, Any]:
    """The fields worth a glance for each event type (attempt, error, lease, path, …)."""
    match event:
        case ev.JobSubmitted():
            return {
                "backend": event.backend,
                "size": f"{event.width}x{event.height}",
                "seed": event.seed,
                "max_attempts": event.max_attempts,
            }
        case ev.JobClaimed():
            return {"attempt": event.attempt, "lease": event.lease_expires_at}
        case ev.LeaseExtended():
            return {"lease": event.lease_expires_at}
        case ev.GenerationStarted():
            return {"backend": event.backend, "seed": event.seed}
        case ev.GenerationProgress():
            return {"step": f"{event.step}/{event.total}"}
        case ev.PredictionCreated():
            return {"backend": event.backend, "external_id": event.external_id}
        case ev.GenerationSucceeded():
            return {"model": event.model, "latency_ms": event.latency_ms, "bytes": event.bytes}
        case ev.GenerationReused():
            return {"reused": event.path, "sha256": event.sha256}
        case ev.GenerationFailed() | ev.JobFailed():
            return {"error_class": event.error_class, "error": event.error}
        case ev.ImageStored():
            return {"path": f"{event.bucket}/{event.storage_path}", "image_id": event.image_id}
        case ev.JobCompleted():
            return {"image_id": event.image_id}
        case ev.ImageDiscarded():
            return {"paths": [f"{event.bucket}/{k}" for k in event.storage_paths]}
        case ev.JobRequeued():
            out: dict[str, Any] = {"reason": event.reason}
            if event.error is not None:
                out["error"] = event.error
            if event.retry_at is not None:
                out["retry_at"] = event.retry_at
            if event.refund_attempt:
                out["refund_attempt"] = True
            if event.kept_image is not None:
                out["kept_image"] = event.kept_image
            return out
        case ev.JobCancelRequested() | ev.JobCancelled():
            return {"reason": event.reason}
        case ev.UsageRecorded():
            return {"usage_id": event.usage_id, "cost_usd": event.cost_usd_estimate}
        case ev.UsageFailed():
            return {"error": event.error}
    return {}


def timeline(job_id: uuid.UUID, stream: Sequence[ev.Event]) -> JobTimeline:
    """One entry per event (seq = position in the stream), plus the replayed outcome."""
    entries: list[TimelineEntry] = []
    previous: datetime | None = None
    for seq, event in enumerate(stream, start=1):
        delta = None
        if previous is not None:
            delta = (event.occurred_at - previous).total_seconds() * 1000
        previous = event.occurred_at
        entries.append(
            TimelineEntry(
                seq=seq,
                occurred_at=event.occurred_at,
                since_previous_ms=delta,
                type=type(event).__name__,
                actor=event.actor,
                worker_id=event.worker_id,
                details=details(event),
            )
        )
    status: str | None = None
    error: str | None = None
    try:
        status = fl.replay(stream).status if stream else None
    except fl.IllegalTransitionError as exc:
        error = str(exc)
    return JobTimeline(job_id=job_id, events=entries, status=status, error=error)


def format_duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if abs(ms) < 1000:
        return f"+{ms:.0f}ms"
    if abs(ms) < 120_000:
        return f"+{ms / 1000:.2f}s"
    return f"+{ms / 60_000:.1f}min"


def _value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, str) and (" " in value or not value):
        return repr(value)
    return str(value)


def format_timeline(tl: JobTimeline) -> str:
    lines = [f"job {tl.job_id}  ({len(tl.events)} events, status {tl.status or '?'})"]
    for e in tl.events:
        extra = "  ".join(f"{k}={_value(v)}" for k, v in e.details.items())
        at = e.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        lines.append(
            f"  {e.seq:>3}  {at}  {format_duration(e.since_previous_ms):>9}  {e.type:<20} "
            f"{e.actor:<10} {e.worker_id or '-':<12} {extra}".rstrip()
        )
    if tl.error:
        lines.append(f"  !! replay fails: {tl.error}")
    return "\n".join(lines)


# ---- verification ------------------------------------------------------------------


_REPLAYED: Final = operator.attrgetter(*fl.PROJECTED_COLUMNS)
_STORED: Final = operator.itemgetter(*fl.PROJECTED_COLUMNS)


def diff_projection(state: fl.JobState, row: Mapping[str, Any]) -> list[FieldDiff]:
    """Every projected column where the replayed state and the stored row disagree."""
    try:
        # All columns at once in C (tuple equality is each pair's ==): the usual answer.
        if _REPLAYED(state) == _STORED(row):
            return []
    except KeyError:
        pass  # a column the row lacks: compared below as None
    replayed = state.projection()
    return [
        FieldDiff(column=name, replayed=replayed[name], stored=row.get(name))
        for name in fl.PROJECTED_COLUMNS
        if replayed[name] != row.get(name)
    ]


def verify(
    job_id: uuid.UUID,
    stream: Sequence[ev.Event],
    row: Mapping[str, Any] | None,
    *,
    problems: Sequence[str] = (),
    stored_events: int | None = None,
) -> VerifyResult:
    """Replay ``stream`` and compare it with the job's ``imagen.jobs`` row.

    ``problems`` are what the log check found (gaps, broken chain, undecodable events);
    ``stored_events`` counts the rows read, decodable or not. A stream with an undecodable
    event is not folded: what is left of it cannot stand for the row.
    """
    found = list(problems)
    count = len(stream) if stored_events is None else stored_events
    if row is None:
        return VerifyResult(
            job_id=job_id, ok=False, events=count, error="no imagen.jobs row", problems=found
        )
    if count != len(stream):
        return VerifyResult(
            job_id=job_id,
            ok=False,
            events=count,
            error=f"poisoned: {count - len(stream)} of {count} event(s) cannot be decoded",
            problems=found,
        )
    try:
        state = fl.replay(stream)
    except (fl.IllegalTransitionError, ValueError) as exc:
        return VerifyResult(job_id=job_id, ok=False, events=count, error=str(exc), problems=found)
    diffs = diff_projection(state, row)
    return VerifyResult(
        job_id=job_id,
        ok=not diffs and not found,
        events=count,
        diffs=diffs,
        problems=found,
        status=row.get("status"),
    )


def with_problem(result: VerifyResult, problem: str) -> VerifyResult:
    """``result`` with one more problem found outside the log (a stored object)."""
    return msgspec.structs.replace(result, ok=False, problems=[*result.problems, problem])


def verify_stream(job_id: uuid.UUID, stream: Sequence[ev.Event]) -> VerifyResult:
    """For a log with no row to compare: the stream must fold without an illegal event."""
    try:
        fl.replay(stream)
    except (fl.IllegalTransitionError, ValueError) as exc:
        return VerifyResult(job_id=job_id, ok=False, events=len(stream), error=str(exc))
    return VerifyResult(job_id=job_id, ok=True, events=len(stream))


def summarize(results: Iterable[VerifyResult]) -> VerifySummary:
    kept = list(results)
    ok = sum(1 for r in kept if r.ok)
    return VerifySummary(checked=len(kept), ok=ok, mismatched=len(kept) - ok, results=kept)


def format_verify(result: VerifyResult) -> str:
    if result.ok:
        return (
            f"job {result.job_id}: OK ({result.events} events chain and replay to the stored row)"
        )
    if result.error:
        lines = [f"job {result.job_id}: FAILED: {result.error}"]
    elif result.diffs:
        lines = [f"job {result.job_id}: MISMATCH in {len(result.diffs)} column(s)"]
    else:
        lines = [f"job {result.job_id}: BROKEN LOG in {len(result.problems)} place(s)"]
    lines.extend(f"  log: {p}" for p in result.problems)
    width = max((len(d.column) for d in result.diffs), default=0)
    for d in result.diffs:
        lines.append(f"  {d.column:<{width}}  replayed {d.replayed!r}")
        lines.append(f"  {'':<{width}}  stored   {d.stored!r}")
    return "\n".join(lines)


def format_summary(summary: VerifySummary) -> str:
    lines = [format_verify(r) for r in summary.results if not r.ok]
    lines.append(
        f"checked {summary.checked} job(s): {summary.ok} ok, {summary.mismatched} mismatched"
    )
    return "\n".join(lines)


# ---- JSONL logs ----------------------------------------------------------------------


class LogError(ValueError):
    """A line of an event log that is not an event."""


def read_log(lines: Iterable[str | bytes]) -> dict[uuid.UUID, list[ev.AnyEvent]]:
    """Decode a JSONL event log into per-job streams, in order of first appearance."""
    streams: dict[uuid.UUID, list[ev.AnyEvent]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = ev.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise LogError(f"line {number}: not an event: {exc}") from None
        streams.setdefault(event.job_id, []).append(event)
    return streams


def to_json(value: Any) -> bytes:
    return msgspec.json.encode(value)
