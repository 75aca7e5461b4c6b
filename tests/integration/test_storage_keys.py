"""Object keys are reserved per job before the upload: one owner per key, even in a race.

Two jobs with the same prompt and explicit seed on the same day want the same contract key
``<date>/<slug>-<seed>.png``. Before reservations the Uploader only looked the key up in
``imagen.images``: both jobs could see it free, both upload to it (one overwriting the other's
object), and a failed job's clean-up could delete the key another job was completing onto.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import StorageError
from imagen_actors.db.gateway import Gateway
from imagen_actors.storage.local import LocalStore
from imagen_actors.worker.actors.janitor import (
    BATCH,
    discard_leftovers,
    discard_one,
    recheck_tombstones,
)
from imagen_actors.worker.actors.messages import ClaimedWork, GeneratedImage
from imagen_actors.worker.actors.uploader import key_candidates, record_generation
from tests.support.events import outcome
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db

BUCKET = "imagen-generated"
W = "host-a:w"


async def test_racing_reservations_of_one_key_agree_on_one_owner(gateway: Gateway) -> None:
    jobs = [await insert_job(gateway, "same words", seed=7) for _ in range(8)]
    owners: list[uuid.UUID] = []

    async def reserve(job: uuid.UUID) -> None:
        _key, owner = await gateway.reserve_image_key(BUCKET, "2026-11-23/same-words-7.png", job)
        owners.append(owner)

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(reserve, job)
    assert len(owners) == 8 and len(set(owners)) == 1 and owners[0] in jobs
    # The owner asking again (a retry after a crash) keeps its key.
    assert await gateway.reserve_image_key(BUCKET, "2026-11-23/same-words-7.png", owners[0]) == (
        "2026-11-23/same-words-7.png",
        owners[0],
    )


async def test_same_prompt_and_seed_give_two_objects_and_two_images(
    database_url: str, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, database_url)
    async with running_worker(cfg) as (_handle, gw):
        jobs = [await insert_job(gw, "twin foxes", seed=42) for _ in range(2)]
        await wait_all_terminal(gw, timeout=30)
        images = await gw.fetch_sql(
            "SELECT job_id, storage_path, sha256 FROM imagen.images ORDER BY created_at"
        )
        assert {i["job_id"] for i in images} == set(jobs)
        # Uploaders run side by side (one per slot plus one), so either job may reserve the
        # contract key first; the other takes its own variant of it.
        contract = [i for i in images if i["storage_path"].endswith("/twin-foxes-42.png")]
        assert len(contract) == 1, [i["storage_path"] for i in images]
        (other,) = [i for i in images if i is not contract[0]]
        variant = contract[0]["storage_path"].removesuffix(".png")
        assert other["storage_path"] == f"{variant}-{other['job_id'].hex[:8]}.png"
        for image in images:
            data = (tmp_path / "objects" / BUCKET / image["storage_path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == image["sha256"]
        for job in jobs:
            await assert_replay_matches(gw, job)


async def _fail_after_generating(gw: Gateway, job: uuid.UUID, seed: int) -> None:
    """Drive ``job`` through claim, a generated image and a final failure, as a worker would."""
    claimed = await gw.claim(dc.claim(W, 60))
    assert claimed is not None and claimed.state.id == job
    attempt = claimed.state.attempts
    await gw.transition(job, dc.generation_succeeded(W, outcome(seed=seed), 60, attempt=attempt))
    await gw.transition(
        job, dc.failure(W, "storage: gone", "permanent", "uploader", attempt=attempt)
    )


async def test_failed_job_clean_up_spares_a_key_another_job_is_completing_onto(
    gateway: Gateway, tmp_path: Path
) -> None:
    """B failed after generating; A reserved the contract key and uploaded, but has no images
    row yet. Clean-up of B deletes B's own key only."""
    store = LocalStore(tmp_path / "objects", BUCKET)
    b = await insert_job(gateway, "shared key", seed=5)  # the oldest: claimed first below
    a = await insert_job(gateway, "shared key", seed=5)
    day = datetime.now(UTC).date().isoformat()
    contract = f"{day}/shared-key-5.png"
    b_key = f"{day}/shared-key-5-{b.hex[:8]}.png"
    assert await gateway.reserve_image_key(BUCKET, contract, a) == (contract, a)
    assert await gateway.reserve_image_key(BUCKET, contract, b) == (contract, a)
    assert await gateway.reserve_image_key(BUCKET, b_key, b) == (b_key, b)
    await store.put(contract, b"A's", "image/png")
    await store.put(b_key, b"B's", "image/png")

    await _fail_after_generating(gateway, b, 5)
    assert await discard_one(gateway, store, W, b)

    assert await store.exists(contract) and not await store.exists(b_key)
    (discarded,) = [e for e in await gateway.load_events(b) if isinstance(e, ev.ImageDiscarded)]
    assert discarded.storage_paths == (b_key,)
    # B's key stays B's (a tombstone): never handed to another job.
    assert await gateway.reserved_image_keys(BUCKET, b) == [b_key]
    assert await gateway.reserved_image_keys(BUCKET, a) == [contract]
    await assert_replay_matches(gateway, b)


async def test_a_job_that_failed_before_reservations_falls_back_to_its_candidate_keys(
    gateway: Gateway, tmp_path: Path
) -> None:
    """No reservation (it failed before migration 0007): its contract key and variant are
    deleted, unless another job holds the key."""
    store = LocalStore(tmp_path / "objects", BUCKET)
    failed = await insert_job(gateway, "old orphan", seed=3)
    other = await insert_job(gateway, "old orphan", seed=4)
    day = datetime.now(UTC).date().isoformat()
    mine, variant = f"{day}/old-orphan-3.png", f"{day}/old-orphan-3-{failed.hex[:8]}.png"
    await store.put(mine, b"orphan", "image/png")
    await store.put(variant, b"orphan too", "image/png")
    await _fail_after_generating(gateway, failed, 3)
    assert await discard_one(gateway, store, W, failed)
    assert not await store.exists(mine) and not await store.exists(variant)

    # `other` failed too, but a third job holds its contract key (a stored image's key is
    # backfilled into storage_keys by 0007): only the variant goes.
    holder = await insert_job(gateway, "old orphan", seed=4)
    theirs, other_variant = f"{day}/old-orphan-4.png", f"{day}/old-orphan-4-{other.hex[:8]}.png"
    await store.put(theirs, b"theirs", "image/png")
    await store.put(other_variant, b"orphan", "image/png")
    assert await gateway.reserve_image_key(BUCKET, theirs, holder) == (theirs, holder)
    await _fail_after_generating(gateway, other, 4)
    assert await discard_one(gateway, store, W, other)
    assert await store.exists(theirs) and not await store.exists(other_variant)


async def test_the_first_pass_cleans_every_failed_job_not_just_one_batch(
    gateway: Gateway, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "objects", BUCKET)
    n = BATCH + 5
    jobs = [await insert_job(gateway, f"leftover {i}", seed=i) for i in range(n)]
    for i, job in enumerate(jobs):
        await _fail_after_generating(gateway, job, i)
    assert await discard_leftovers(gateway, store, W, recent_only=False) == n
    rows = await gateway.fetch_sql(
        "SELECT count(*) AS n FROM imagen.job_events WHERE type = 'ImageDiscarded'"
    )
    assert rows[0]["n"] == n


async def test_a_retry_keeps_the_key_its_first_attempt_reserved(gateway: Gateway) -> None:
    """Attempt 1 found the contract key taken and reserved its variant; by the retry the
    contract key's holder is gone from the picture, yet the retry keeps the variant (its
    first object is overwritten, not orphaned)."""
    holder = await insert_job(gateway, "retry key", seed=9)
    job = await insert_job(gateway, "retry key", seed=9)
    contract, variant = "2026-11-23/retry-key-9.png", f"2026-11-23/retry-key-9-{job.hex[:8]}.png"
    assert await gateway.reserve_image_key(BUCKET, contract, holder) == (contract, holder)
    assert await gateway.reserve_image_key(BUCKET, contract, job) == (contract, holder)
    assert await gateway.reserve_image_key(BUCKET, variant, job) == (variant, job)
    await gateway.execute_sql("DELETE FROM imagen.storage_keys WHERE job_id = $1", holder)
    # The retry asks for the contract key first, as choose_key does.
    assert await gateway.reserve_image_key(BUCKET, contract, job) == (variant, job)
    assert await gateway.reserved_image_keys(BUCKET, job) == [variant]


async def test_a_failed_jobs_key_is_never_handed_on_and_a_zombie_write_is_removed(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A failed job's discarded key stays reserved to it: a later job with the same prompt,
    seed and day gets its variant, so a frozen worker of the failed job that wakes and
    writes onto its old key replaces nobody's picture, and the re-check deletes that write."""
    store = LocalStore(tmp_path / "objects", BUCKET)
    failed = await insert_job(gateway, "zombie fox", seed=11)
    day = datetime.now(UTC).date().isoformat()
    contract = f"{day}/zombie-fox-11.png"
    assert await gateway.reserve_image_key(BUCKET, contract, failed) == (contract, failed)
    await store.put(contract, b"first attempt", "image/png")
    await _fail_after_generating(gateway, failed, 11)
    assert await discard_one(gateway, store, W, failed)
    assert not await store.exists(contract)

    later = await insert_job(gateway, "zombie fox", seed=11)
    assert await gateway.reserve_image_key(BUCKET, contract, later) == (contract, failed)

    await store.put(contract, b"the zombie wakes and renames its file", "image/png")
    assert await recheck_tombstones(gateway, store, every_s=3600) == 0  # checked just now
    assert await recheck_tombstones(gateway, store, every_s=0) == 1
    assert not await store.exists(contract)
    assert await recheck_tombstones(gateway, store, every_s=0) == 0
    await assert_replay_matches(gateway, failed)


async def test_a_job_whose_every_key_is_held_fails_naming_the_holder(
    gateway: Gateway, tmp_path: Path
) -> None:
    """The contract key, its 8-hex variant and its whole-id variant each reserved by another
    job (a job holds one key per bucket): the Uploader's record of the generation reserves
    none and refuses, naming the last key and the job that holds it, permanently (a new job
    id is the only way to a new key)."""
    holders = [await insert_job(gateway, f"other words {i}") for i in range(3)]
    job = await insert_job(gateway, "hoarded words", seed=3)
    for _ in range(4):  # the holders are older: claimed first
        claimed = await gateway.claim(dc.claim(W, 60), backends=["mock"])
    assert claimed is not None and claimed.state.id == job
    work = ClaimedWork.from_claim(claimed)
    item = GeneratedImage(
        submitted=work.submitted,
        claimed=work.claimed,
        outcome=outcome(seed=3),
        record=dc.generation_succeeded(W, outcome(seed=3), 60, attempt=1),
        image=b"png",
    )
    candidates = key_candidates(item)
    for key, holder in zip(candidates, holders, strict=True):
        assert await gateway.reserve_image_key(BUCKET, key, holder) == (key, holder)
    store = LocalStore(tmp_path / "objects", BUCKET)
    with pytest.raises(
        StorageError, match=f"{candidates[-1]} is reserved by job {holders[-1]}"
    ) as exc:
        await record_generation(gateway, store, item)
    assert exc.value.error_class == "permanent"
    assert await gateway.reserved_image_keys(BUCKET, job) == []
