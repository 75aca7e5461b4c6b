"""holding_lease: renewals keep work going; a lease that cannot be renewed for lease_s ends it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
import trio.testing

from imagen_actors.core.errors import DatabaseUnavailableError, LeaseLostError
from imagen_actors.worker.actors.lease import holding_lease

JOB = uuid.UUID("66666666-6666-4666-8666-666666666666")


class Database:
    """Answers renewals until ``down_at`` (trio time), then refuses them: an outage."""

    def __init__(self, down_at: float = float("inf")) -> None:
        self.down_at = down_at
        self.renewals = 0

    async def transition(self, job_id: uuid.UUID, decide: Any) -> Any:
        if trio.current_time() >= self.down_at:
            raise DatabaseUnavailableError("connection refused")
        self.renewals += 1


async def test_work_that_outlives_several_leases_is_renewed_and_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = Database()

    async def upload() -> str:
        await trio.sleep(95)
        return "stored"

    got = await holding_lease(
        db, JOB, upload, worker_id="w", attempt=1, lease_s=30, actor="uploader"
    )
    assert got == "stored" and db.renewals == 9  # every 10 s for 95 s


async def test_an_outage_longer_than_the_lease_cancels_the_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = Database(down_at=15.0)
    finished = False

    async def upload() -> None:
        nonlocal finished
        await trio.sleep(1000)
        finished = True

    t0 = trio.current_time()
    with pytest.raises(LeaseLostError, match=r"could not be renewed for 30s .* expired"):
        await holding_lease(db, JOB, upload, worker_id="w", attempt=1, lease_s=30, actor="uploader")
    # Last good renewal at 10 s; the first failed tick at least 30 s later gives up.
    assert not finished and trio.current_time() - t0 == pytest.approx(40)


async def test_a_short_outage_is_ridden_out(autojump_clock: trio.testing.MockClock) -> None:
    db = Database(down_at=15.0)

    async def upload() -> str:
        await trio.sleep(35)  # renewals at 20 and 30 fail; the work ends before 10 + 30
        return "stored"

    got = await holding_lease(
        db, JOB, upload, worker_id="w", attempt=1, lease_s=30, actor="uploader"
    )
    assert got == "stored"
