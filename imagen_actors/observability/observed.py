"""A Gateway that reports what it commits, so metrics need no hook inside the actors.

Every event an actor appends goes through one of the gateway's transition methods; this
subclass shares the original's pool and calls ``on_commit(transition)`` after each commit,
and ``on_listen(up)`` when a LISTEN connection opens or closes. The callbacks run
synchronously in the actor's task and must not raise or block.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from imagen_actors.core.records import (
    CompletionRows,
    Decide,
    DecideFor,
    ImageRow,
    Transition,
    UsageRow,
)
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.notifications import Notifications

log = logging.getLogger("imagen_actors.observability")
CommitHook = Callable[[Transition], None]
ListenHook = Callable[[bool], None]


def _ignore_commit(_t: Transition) -> None:
    pass


def _ignore_listen(_up: bool) -> None:
    pass


@attrs.define
class ObservedGateway(Gateway):
    on_commit: CommitHook = _ignore_commit
    on_listen: ListenHook = _ignore_listen

    @classmethod
    def wrap(
        cls, gateway: Gateway, *, on_commit: CommitHook, on_listen: ListenHook
    ) -> ObservedGateway:
        """A view of ``gateway`` (same pool, still owned and closed by the original)."""
        shared: dict[str, Any] = {
            str(a.alias): getattr(gateway, a.name) for a in attrs.fields(Gateway)
        }
        return cls(**shared, on_commit=on_commit, on_listen=on_listen)

    def _report(self, transition: Transition) -> None:
        try:
            self.on_commit(transition)
        except Exception:
            log.exception("commit observer failed (ignored)")

    async def transition(self, job_id: uuid.UUID, decide: Decide) -> Transition:
        t = await super().transition(job_id, decide)
        self._report(t)
        return t

    async def transition_reserving_key(
        self, job_id: uuid.UUID, decide: Decide, bucket: str, candidates: Sequence[str]
    ) -> tuple[Transition, tuple[str, uuid.UUID]]:
        t, key = await super().transition_reserving_key(job_id, decide, bucket, candidates)
        self._report(t)
        return t, key

    async def _claim_next(
        self,
        decide: Decide,
        offered: list[str] | None,
        absent_after_s: float,
        grace_s: float,
        *,
        unserved: bool = False,
    ) -> Transition | None:
        # Below ``claim``: a claim's transaction commits a claimed job, or fails an unserved
        # one (and ``claim`` then looks at the next); each is reported.
        t = await super()._claim_next(decide, offered, absent_after_s, grace_s, unserved=unserved)
        if t is not None:
            self._report(t)
        return t

    async def store_image_and_transition(
        self,
        image: ImageRow,
        decide: DecideFor[CompletionRows],
        usage: UsageRow | None = None,
    ) -> Transition:
        t = await super().store_image_and_transition(image, decide, usage)
        self._report(t)
        return t

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Notifications]:
        async with super().listen(channel) as notes:
            self.on_listen(True)
            try:
                yield notes
            finally:
                self.on_listen(False)
