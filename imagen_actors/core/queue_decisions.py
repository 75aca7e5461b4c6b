"""Decisions about the queue rather than one claim's work: jobs nobody can run, expired
leases, give-backs and the clean-up of failed jobs. Pure, like ``decisions`` (whose shared
checks they use); ``decisions`` re-exports them, so callers see one module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from imagen_actors.core import events as ev
from imagen_actors.core.decisions import _attempts, _header, failure
from imagen_actors.core.fold import JobState, replay
from imagen_actors.core.records import Decide


def unserved_reason(backend: str, grace_s: float) -> str:
    return (
        f"no worker has offered backend {backend!r} for {grace_s:g} s "
        "(worker.unserved_backend_grace_s); add it under backends: on a worker host, "
        "or fix the job's backend"
    )


def fail_unserved(claim: Decide, grace_s: float) -> Decide:
    """``claim``, then fail the job at once (permanent): no worker has offered its backend
    for ``grace_s``, so nobody can run it."""
    return fail_in_claim(claim, lambda state: unserved_reason(state.backend, grace_s))


def unavailable_reason(name: str, since: datetime, reason: str, max_wait_s: float) -> str:
    what = "storage" if name == "storage" else f"backend {name!r}"
    return (
        f"{what} unavailable since {since:%Y-%m-%d %H:%M:%S} UTC: {reason} (waited more than "
        f"worker.max_wait_s={max_wait_s:g} s); fix it and resubmit the job"
    )


def fail_in_claim(claim: Decide, reason: Callable[[JobState], str]) -> Decide:
    """``claim``, then fail the job at once (permanent) with ``reason(state)``: used for a
    job nobody can run (an unserved backend, one unavailable for longer than max_wait_s)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        # Only the claim itself: a job failed in its claim never started a generation.
        claimed = [e for e in claim(state, now) if isinstance(e, ev.JobClaimed)]
        held = replay(claimed, onto=state)
        fail = failure(
            held.worker_id or "",
            reason(state),
            "permanent",
            "claimer",
            attempt=held.attempts,
            record_generation_failed=False,
        )
        return [*claimed, *fail(held, now)]

    return decide


def discard_objects(
    worker_id: str, bucket: str, keys: Sequence[str], actor: str = "reaper"
) -> Decide:
    """Record that a failed job's leftover objects are gone (once; after the deletes)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.status not in ("failed", "cancelled") or state.objects_discarded:
            return []
        return [
            ev.ImageDiscarded(
                **_header(state, now, actor, worker_id), bucket=bucket, storage_paths=tuple(keys)
            )
        ]

    return decide


def reap(worker_id: str, *, own: bool = False, actor: str = "reaper") -> Decide:
    """Requeue an expired (or, at start-up, our own) lease; fail it when attempts are used up.

    Re-checks under the row lock, so a lease extended meanwhile is left alone.
    """

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.status != "running" or state.lease_expires_at is None:
            return []
        if own:
            if state.worker_id != worker_id:
                return []
            why = f"worker {worker_id} restarted while holding the job"
        else:
            if state.lease_expires_at >= now:
                return []
            why = f"lease held by {state.worker_id} expired at {state.lease_expires_at:%H:%M:%S}"
        if state.attempts >= state.max_attempts:
            return [
                ev.JobFailed(
                    **_header(state, now, actor, worker_id),
                    error=f"lease expired after {_attempts(state.attempts)} ({why})",
                    error_class="transient",
                )
            ]
        return [
            ev.JobRequeued(
                **_header(state, now, actor, worker_id),
                reason=why,
                error=state.error,
            )
        ]

    return decide


def abort_in_flight(
    worker_id: str, reason: str, *, attempt: int, actor: str = "supervisor"
) -> Decide:
    """Give a job back to the queue at once (shutdown, a failed hand-over); nothing to do
    when the claim of ``attempt`` no longer holds it."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        held = (state.status, state.worker_id, state.attempts) == ("running", worker_id, attempt)
        if not held:
            return []
        # An operator's abort is not the job's fault: the attempt is given back.
        return [
            ev.JobRequeued(
                **_header(state, now, actor, worker_id),
                reason=reason,
                refund_attempt=True,
            )
        ]

    return decide
