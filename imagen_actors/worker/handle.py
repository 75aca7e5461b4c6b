"""What a running worker exposes to its owner (CLI, tests): its health plus the two controls
of the two-stage shutdown."""

from __future__ import annotations

import attrs
import trio

from imagen_actors.observability.health import WorkerHealth


@attrs.define
class WorkerHandle(WorkerHealth):
    intake: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    pipeline: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    pipeline_done: trio.Event = attrs.field(factory=trio.Event)

    def stop_intake(self) -> None:
        """First signal: take no new jobs; the job in flight finishes."""
        self.stopping.set()
        self.intake.cancel()

    def abort(self) -> None:
        """Second signal (or the grace ran out): cancel the pipeline; in-flight jobs requeue."""
        self.stopping.set()
        self.intake.cancel()
        self.pipeline.cancel()
