"""The database side of ``imagen-actors replay --verify``: read each job's row and stream,
check the log's rules (seq, hash chain, decodable events), replay and compare, and with a
store check each done job's object. ``replay --all`` streams keyset pages of jobs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import trio

from imagen_actors.cli import replay_stream
from imagen_actors.cli.reports import replay as rr
from imagen_actors.core.errors import JobNotFoundError, StorageError
from imagen_actors.db.gateway import Gateway
from imagen_actors.storage.base import ObjectStore

# Jobs per page of `replay --all` (one statement each; about 8,000 events at 8 per job):
# small enough that checking starts soon and the next page is read while this one is
# checked, large enough that a statement's own cost is lost in the page's.
PAGE: Final = 1000
# A live job may advance between reading its row and its events; re-read this often.
RETRIES: Final = 20


def verify_row(row: Mapping[str, Any]) -> rr.VerifyResult | None:
    """Check the job of one ``replay_page`` row: its stream's rules, its replay against its
    columns. None when ``verify_one`` must read it again: its version is not its stream's
    length (it may have moved), or its stream cannot be decoded in one piece."""
    try:
        stream = replay_stream.read(row["stream"])
    except replay_stream.StreamUnreadableError:
        return None
    return _check(row["id"], row, stream, last_read=False)


def _check(
    job_id: uuid.UUID,
    row: Mapping[str, Any],
    stream: list[replay_stream.StreamEvent],
    *,
    last_read: bool,
) -> rr.VerifyResult | None:
    """``verify_row``'s check of a stream already read; the row's columns are NULL when the
    job has no imagen.jobs row (``replay_jobs``)."""
    job = None if row["id"] is None else row
    if job is not None and job["version"] != len(stream) and not last_read:
        return None
    events, problems = replay_stream.check(job_id, stream)
    return rr.verify(job_id, events, job, problems=problems, stored_events=len(stream))


async def verify_one(gw: Gateway, job_id: uuid.UUID) -> rr.VerifyResult:
    """Check one job's log and compare its replay with its row, re-reading while the job is
    still moving."""
    reads = 0
    while True:
        reads += 1
        (row,) = await gw.fetch("replay_jobs", [job_id])
        if row["id"] is None and row["stream"] is None:
            raise JobNotFoundError(f"no job {job_id}")
        try:
            stream = replay_stream.read(row["stream"])
        except replay_stream.StreamUnreadableError:
            rows = await gw.fetch("replay_events_for", job_id)
            stream = [replay_stream.from_columns(r) for r in rows]
        result = _check(job_id, row, stream, last_read=reads >= RETRIES)
        if result is not None:
            return result
        await trio.sleep(0.05)


# The whole id space, for a keyset walk over every job.
FIRST_ID: Final = uuid.UUID(int=0)
LAST_ID: Final = uuid.UUID(int=2**128 - 1)


async def verify_all(
    gw: Gateway,
    store: ObjectStore | None = None,
    *,
    each: Callable[[rr.VerifyResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
    page_size: int = PAGE,
    workers: int | None = None,
) -> rr.VerifySummary:
    """Every job, a keyset page at a time (``replay_page``: rows and streams in one
    statement), the next page read while this one is checked; a job whose log is broken or
    unreadable is reported and the run goes on. With ``store``, each done job's object is
    checked too (``check_objects``). Memory stays flat: ``each`` sees every result, the
    summary keeps only those that are not ok; ``progress`` gets the count checked so far.
    ``workers`` processes check a share of the ids each (cli/replay_parallel); None picks
    one per CPU for a big history, else checks here."""
    from imagen_actors.cli import replay_parallel  # it runs verify_range in each process

    tally = rr.Tally()

    async def take(results: list[rr.VerifyResult], unsent_ok: int) -> None:
        if store is not None:
            results = await check_objects(gw, store, results)
        for result in results:
            tally.add(result)
            if each is not None:
                each(result)
        tally.add_ok(unsent_ok)
        if progress is not None:
            progress(tally.checked)

    if workers is None:
        workers = await replay_parallel.workers_for(gw)
    if workers > 1:
        send_all = each is not None or store is not None
        await replay_parallel.verify_shares(gw, workers, page_size, send_all=send_all, take=take)
    else:
        await verify_range(gw, FIRST_ID, LAST_ID, page_size, lambda page: take(page, 0))
    return tally.summary()


async def verify_range(
    gw: Gateway,
    after: uuid.UUID,
    last: uuid.UUID,
    page_size: int,
    take: Callable[[list[rr.VerifyResult]], Awaitable[None]],
) -> None:
    """Check the jobs with ids in (``after``, ``last``], handing ``take`` each page's
    results; the next page is read while ``take`` and the checks run."""
    pages_send, pages = trio.open_memory_channel[list[dict[str, Any]]](1)

    async def read_pages() -> None:
        async with pages_send:
            start = after
            while rows := await gw.fetch("replay_page", start, page_size, last):
                start = rows[-1]["id"]
                await pages_send.send(rows)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_pages)
        async with pages:
            async for rows in pages:
                page: list[rr.VerifyResult] = []
                for row in rows:
                    result = verify_row(row)
                    if result is None:
                        try:
                            result = await verify_one(gw, row["id"])
                        except JobNotFoundError:
                            continue  # archived since the page was read: nothing to check
                    page.append(result)
                await take(page)


async def check_objects(
    gw: Gateway, store: ObjectStore, results: Sequence[rr.VerifyResult]
) -> list[rr.VerifyResult]:
    """Add to each done job's result what is wrong with its stored object, if anything."""
    images = {
        r["job_id"]: r for r in await gw.fetch("replay_images_for", [r.job_id for r in results])
    }
    checked: list[rr.VerifyResult] = []
    for result in results:
        image = images.get(result.job_id)
        problem = None
        if image is None:
            if result.status == "done":
                problem = "the job is done but has no imagen.images row"
        else:
            problem = await object_problem(store, image)
        checked.append(result if problem is None else rr.with_problem(result, problem))
    return checked


async def object_problem(store: ObjectStore, image: dict[str, Any]) -> str | None:
    """Why the object of an imagen.images row is not the one its sha256 names, or None."""
    where = f"object {image['bucket']}/{image['storage_path']}"
    if image["bucket"] != store.bucket:
        return (
            f"{where}: the configured storage is bucket {store.bucket}; run with the config "
            "of the worker that stored it"
        )
    try:
        data = await store.get(image["storage_path"])
    except StorageError as exc:
        return f"{where} could not be read: {exc}"
    if data is None:
        return f"{where} is missing from storage"
    digest = hashlib.sha256(data).hexdigest()
    if digest != image["sha256"]:
        return f"{where} has sha256 {digest[:16]}…, the image row says {image['sha256'][:16]}…"
    return None
