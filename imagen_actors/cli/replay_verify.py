"""The database side of ``imagen-actors replay --verify``: read each job's row and stream,
check the log's rules (seq, hash chain, decodable events), replay and compare, and with a
store check each done job's object. ``replay --all`` streams keyset pages of jobs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import trio

from imagen_actors.cli.reports import replay as rr
from imagen_actors.core import chain
from imagen_actors.core import events as ev
from imagen_actors.core.errors import JobNotFoundError, StorageError
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.transactions import PoisonedStreamError, decode_json, event_from_record
from imagen_actors.storage.base import ObjectStore

# Jobs per page of `replay --all` (one statement each; about 40,000 events at 8 per job).
PAGE: Final = 5000
# A live job may advance between reading its row and its events; re-read this often.
RETRIES: Final = 20


def check_stream(
    job_id: uuid.UUID, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[ev.AnyEvent], list[str]]:
    """Decode a stream read by ``replay_events_for`` or ``replay_page``, noting every row that
    breaks the log's rules: a seq that is not the next one, a hash that does not chain (the
    link recomputed over the row as stored: core/chain, imagen.job_event_hash's twin), an
    event this version cannot read (unknown type, data the decoder refuses). Never raises
    for a bad row."""
    links = [
        chain.StoredLink(
            r["seq"], r["type"], r["actor"], r["worker_id"], chain.micros(r["occurred_at"]),
            r["data_text"], r["hash"],
        )
        for r in rows
    ]  # fmt: skip
    problems = chain.problems(job_id, links)
    events: list[ev.AnyEvent] = []
    for r in rows:
        record = {
            "seq": r["seq"],
            "type": r["type"],
            "data": decode_json(r["data_text"]),
            "occurred_at": r["occurred_at"],
            "actor": r["actor"],
            "worker_id": r["worker_id"],
        }
        try:
            events.append(event_from_record(job_id, record))
        except PoisonedStreamError as exc:
            problems.append(f"event {r['seq']} ({r['type']}) is undecodable: {exc.why}")
    return events, problems


def _verify_rows(
    job_id: uuid.UUID, event_rows: Sequence[dict[str, Any]], row: dict[str, Any] | None
) -> rr.VerifyResult:
    events, problems = check_stream(job_id, event_rows)
    return rr.verify(job_id, events, row, problems=problems, stored_events=len(event_rows))


async def verify_one(gw: Gateway, job_id: uuid.UUID) -> rr.VerifyResult:
    """Check one job's log and compare its replay with its row, re-reading while the job is
    still moving."""
    for _ in range(RETRIES):
        event_rows = await gw.fetch("replay_events_for", [job_id])
        row = await gw.fetchrow("load_job", job_id)
        if row is None and not event_rows:
            raise JobNotFoundError(f"no job {job_id}")
        if row is None or row["version"] == len(event_rows):
            break
        await trio.sleep(0.05)
    return _verify_rows(job_id, event_rows, row)


def page_streams(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The event rows of one ``replay_page`` row (its parallel arrays), as ``check_stream``
    reads them."""
    if row["seqs"] is None:
        return []
    return [
        {"seq": q, "type": t, "data_text": d, "actor": a, "worker_id": w, "occurred_at": o,
         "hash": h}
        for q, t, d, a, w, o, h in zip(
            row["seqs"], row["types"], row["data_texts"], row["actors"], row["worker_ids"],
            row["occurred_ats"], row["hashes"], strict=True,
        )
    ]  # fmt: skip


async def verify_all(
    gw: Gateway,
    store: ObjectStore | None = None,
    *,
    each: Callable[[rr.VerifyResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
    page_size: int = PAGE,
) -> rr.VerifySummary:
    """Every job, a keyset page at a time (``replay_page``: rows and streams in one
    statement), the next page read while this one is checked; a job whose log is broken or
    unreadable is reported and the run goes on. With ``store``, each done job's object is
    checked too (``check_objects``). Memory stays flat: ``each`` sees every result, the
    summary keeps only those that are not ok; ``progress`` gets the count checked so far."""
    tally = rr.Tally()
    pages_send, pages = trio.open_memory_channel[list[dict[str, Any]]](1)

    async def read_pages() -> None:
        async with pages_send:
            after = uuid.UUID(int=0)
            while rows := await gw.fetch("replay_page", after, page_size):
                after = rows[-1]["id"]
                await pages_send.send(rows)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_pages)
        async with pages:
            async for rows in pages:
                page: list[rr.VerifyResult] = []
                for row in rows:
                    stream = page_streams(row)
                    if row["version"] != len(stream):
                        try:
                            page.append(await verify_one(gw, row["id"]))
                        except JobNotFoundError:
                            continue  # archived since the page was read: nothing to check
                    else:
                        page.append(_verify_rows(row["id"], stream, row))
                if store is not None:
                    page = await check_objects(gw, store, page)
                for result in page:
                    tally.add(result)
                    if each is not None:
                        each(result)
                if progress is not None:
                    progress(tally.checked)
    return tally.summary()


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
