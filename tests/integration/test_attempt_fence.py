"""A stale attempt inside one worker, end to end against Postgres: claim, requeue, re-claim
by the same worker id, then the old attempt's decisions are refused and the job untouched."""

from __future__ import annotations

import uuid

import attrs
import pytest

from imagen_actors.core import decisions as dc
from imagen_actors.core.errors import LeaseLostError
from imagen_actors.db.gateway import Gateway
from tests.support import events as support
from tests.support.jobs import OWNER, assert_replay_matches, insert_job

pytestmark = pytest.mark.db

W = "host:w1"


async def snapshot(gw: Gateway, job: uuid.UUID) -> tuple[object, ...]:
    """What a refused decision must leave alone: the row, the stream, the images."""
    row = await gw.fetchrow("load_job", job)
    assert row is not None
    images = await gw.fetch_sql("SELECT id FROM imagen.images WHERE job_id = $1", job)
    return (dict(row), len(await gw.load_events(job)), len(images))


async def test_the_old_attempt_of_a_reclaimed_job_cannot_complete_it(gateway: Gateway) -> None:
    job = await insert_job(gateway, "owl", seed=7)
    first = await gateway.claim(dc.claim(W, 60))
    assert first is not None and first.state.attempts == 1
    await gateway.transition(job, dc.generation_succeeded(W, support.outcome(), 60, attempt=1))
    # Attempt 1's lease is given up (the start-up requeue of our own jobs) and the same
    # worker claims the job again before attempt 1's tasks have noticed.
    await gateway.transition(job, dc.reap(W, own=True))
    second = await gateway.claim(dc.claim(W, 60))
    assert second is not None and (second.state.id, second.state.attempts) == (job, 2)
    await gateway.transition(job, dc.generation_succeeded(W, support.outcome(), 60, attempt=2))
    before = await snapshot(gateway, job)

    image = attrs.evolve(support.image_row(job), owner_user_id=OWNER)
    stale_completion = dc.complete(W, image, attempt=1, local_path=None)
    with pytest.raises(LeaseLostError, match="running attempt 2, not attempt 1"):
        await gateway.store_image_and_transition(image, stale_completion)
    with pytest.raises(LeaseLostError):
        await gateway.transition(job, dc.generation_succeeded(W, support.outcome(), 60, attempt=1))
    with pytest.raises(LeaseLostError):
        await gateway.transition(job, dc.extend_lease(W, 60, attempt=1))
    # Without the fence attempt 1 would have completed attempt 2's job here; refused, its
    # images row rolled back with it.
    assert await snapshot(gateway, job) == before

    # Attempt 2 itself finishes the job as usual.
    done = await gateway.store_image_and_transition(
        image, dc.complete(W, image, attempt=2, local_path=None)
    )
    assert (done.state.status, done.state.attempts) == ("done", 2)
    await assert_replay_matches(gateway, job)
