"""Prometheus metrics for one worker, fed by the events its actors commit.

Nothing here is imported by an actor: the daemon hands the gateway's committed transitions
to ``WorkerMetrics.observe`` (see ``observed.py``). Each worker has its own
``CollectorRegistry``, so two workers in one process (tests) never share counters.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imagen_actors.core import events as ev
from imagen_actors.core.records import Transition

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
STATUSES: Final = ("pending", "running", "done", "failed", "cancelled")
# Seconds; image generation runs from a second (mock, fast GPUs) to several minutes.
BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# Jobs whose start we remember while they are in flight; more means events were missed.
MAX_TRACKED: Final = 1000
V = TypeVar("V")


class _Restarts(Collector):
    def __init__(self, restarts: Callable[[], Mapping[str, int]]) -> None:
        self._restarts = restarts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "imagen_actor_restarts", "Actor restarts by the supervisor", labels=["actor"]
        )
        for actor, n in sorted(self._restarts().items()):
            family.add_metric([actor], n)
        yield family


class _Dependencies(Collector):
    def __init__(self, up: Callable[[], Mapping[str, bool]]) -> None:
        self._up = up

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "imagen_dependency_up",
            "1 while a backend instance or the object store is healthy, 0 while it is "
            "down or misconfigured (its jobs wait pending)",
            labels=["dependency"],
        )
        for name, up in sorted(self._up().items()):
            family.add_metric([name], 1 if up else 0)
        yield family


class _QueueDepth(Collector):
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "imagen_queue_jobs",
            "imagen.jobs rows by status (at the last scrape)",
            labels=["status"],
        )
        for status in sorted(set(STATUSES) | set(self.counts)):
            family.add_metric([status], self.counts.get(status, 0))
        yield family


class WorkerMetrics:
    """Counters and histograms of one worker, in a private registry."""

    def __init__(
        self,
        worker_id: str,
        *,
        restarts: Callable[[], Mapping[str, int]] = dict,
        dependencies: Callable[[], Mapping[str, bool]] = dict,
        clock: Callable[[], float] = time.monotonic,
        gpu_backends: Collection[str] | None = None,
    ) -> None:
        self.worker_id = worker_id
        # The backends whose generation is this host's GPU time (the local ones); None: all.
        # A remote prediction runs elsewhere, and several run at once (config/slots).
        self._gpu_backends = None if gpu_backends is None else frozenset(gpu_backends)
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self.jobs = Counter(
            "imagen_jobs",
            "Jobs this worker finished or gave back, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("done", "failed", "requeued"):
            self.jobs.labels(outcome)
        self.stage_seconds = Histogram(
            "imagen_stage_seconds",
            "Stage latency: queue_wait (pending to claimed), generation, upload",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.gpu_busy = Counter(
            "imagen_gpu_busy_seconds",
            "Seconds this host's GPU spent generating (local backends only)",
            registry=self.registry,
        )
        self.queue = _QueueDepth()
        self.registry.register(self.queue)
        self.registry.register(_Restarts(restarts))
        self.registry.register(_Dependencies(dependencies))
        # job -> (when its generation started, whether it runs on this host's GPU)
        self._generating: dict[uuid.UUID, tuple[float, bool]] = {}
        self._uploading: dict[uuid.UUID, float] = {}

    def set_queue_depth(self, counts: Mapping[str, int]) -> None:
        """Jobs per status, as ``status_counts()`` gives them."""
        self.queue.counts = dict(counts)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, transition: Transition) -> None:
        """Account for the events of one committed transition."""
        for event in transition.events:
            self._event(event, transition.prior)

    def _event(self, event: ev.Event, prior: tuple[ev.Event, ...]) -> None:
        now = self._clock()
        job = event.job_id
        if isinstance(event, ev.JobClaimed):
            since = pending_since(prior)
            if since is not None:
                wait = (event.occurred_at - since).total_seconds()
                self.stage_seconds.labels("queue_wait").observe(max(0.0, wait))
        elif isinstance(event, ev.GenerationStarted):
            local = self._gpu_backends is None or event.backend in self._gpu_backends
            _remember(self._generating, job, (now, local))
        elif isinstance(event, ev.GenerationSucceeded):
            # The backend's own measure: the Uploader commits the success after the hand-over,
            # when the GPU may already be on the next job, so the commit times would overlap.
            self._end_generation(job, now, took_s=event.latency_ms / 1000)
            _remember(self._uploading, job, now)
        elif isinstance(event, ev.GenerationReused):
            self._generating.pop(job, None)  # a kept image: no render, no GPU time
            _remember(self._uploading, job, now)
        elif isinstance(event, ev.GenerationFailed):
            self._end_generation(job, now)
        elif isinstance(event, ev.JobCompleted):
            started = self._uploading.pop(job, None)
            if started is not None:
                self.stage_seconds.labels("upload").observe(now - started)
            self.jobs.labels("done").inc()
        elif isinstance(event, ev.JobFailed | ev.JobRequeued):
            self._end_generation(job, now)  # interrupted mid-generation
            self._uploading.pop(job, None)
            self.jobs.labels("failed" if isinstance(event, ev.JobFailed) else "requeued").inc()

    def _end_generation(self, job: uuid.UUID, now: float, took_s: float | None = None) -> None:
        generating = self._generating.pop(job, None)
        if generating is not None:
            started, on_gpu = generating
            took = now - started if took_s is None else took_s
            self.stage_seconds.labels("generation").observe(took)
            if on_gpu:
                self.gpu_busy.inc(took)


def pending_since(prior: Iterable[ev.Event]) -> datetime | None:
    """When the job last became claimable: submitted, or requeued (after its backoff)."""
    since: datetime | None = None
    for event in prior:
        if isinstance(event, ev.JobSubmitted):
            since = event.occurred_at
        elif isinstance(event, ev.JobRequeued):
            since = max(event.occurred_at, event.retry_at or event.occurred_at)
    return since


def _remember(table: dict[uuid.UUID, V], job: uuid.UUID, now: V) -> None:
    if len(table) >= MAX_TRACKED:
        table.pop(next(iter(table)))
    table[job] = now
