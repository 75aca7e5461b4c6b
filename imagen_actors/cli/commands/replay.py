"""imagen-actors replay: a job's timeline; --verify that its events reproduce its row."""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.cli import arguments, exitcodes
from imagen_actors.cli.commands.generate import Request, produce
from imagen_actors.cli.main import command
from imagen_actors.cli.progress import ProgressBar
from imagen_actors.cli.reports import replay as rr
from imagen_actors.config import settings as config
from imagen_actors.core import events as ev
from imagen_actors.core import naming
from imagen_actors.core.errors import ConfigError, JobNotFoundError, StorageError, UsageError
from imagen_actors.db import database
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.transactions import PoisonedStreamError, event_from_record
from imagen_actors.storage.base import ObjectStore
from imagen_actors.storage.local import LocalStore
from imagen_actors.storage.registry import build_store

# Jobs per page of `replay --all` (one statement each; about 40,000 events at 8 per job).
PAGE: Final = 5000
# A live job may advance between reading its row and its events; re-read this often.
RETRIES: Final = 20
# The progress bar's job argument: the bar counts jobs of the whole run, not one job.
ALL_JOBS: Final = uuid.UUID(int=0)


def register(sub: Any) -> None:
    p = command(
        sub,
        "replay",
        "show a job's event timeline; --verify that replaying it reproduces imagen.jobs",
        run,
    )
    p.add_argument(
        "job_id",
        nargs="?",
        type=arguments.uuid_of("job id"),
        help="the job (optional with --log or --all)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="fold the events and compare with the imagen.jobs row; exit 1 on any difference",
    )
    p.add_argument("--all", action="store_true", help="verify every job (implies --verify)")
    p.add_argument(
        "--objects",
        action="store_true",
        help="with --verify or --all: also read each done job's stored object and compare it "
        "with the sha256 in imagen.images (uses the configured storage)",
    )
    p.add_argument(
        "--log",
        metavar="FILE",
        type=Path,
        help="read events from a JSONL log instead of the database",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run the job's original request through the in-process actors again, without "
        "touching the original job (its events go to a JSONL log beside the new image)",
    )
    p.add_argument(
        "--backend", type=arguments.backend, help="with --rerun: use this backend instance instead"
    )
    p.add_argument("--out", metavar="DIR", help="with --rerun: output directory")


def check_flags(args: argparse.Namespace) -> None:
    """Flags that cannot work together, as one UsageError naming them and the fix."""
    if args.rerun:
        for flag, given in (("--all", args.all), ("--verify", args.verify), ("--log", args.log)):
            if given:
                raise UsageError(
                    f"--rerun runs one job again and cannot be combined with {flag}; "
                    f"give JOB_ID --rerun [--backend B] [--out DIR], or drop --rerun"
                )
        if args.job_id is None:
            raise UsageError("--rerun needs the JOB_ID of the job to run again")
    else:
        for flag, given in (("--backend", args.backend), ("--out", args.out)):
            if given is not None:
                raise UsageError(f"{flag} only applies to --rerun; add --rerun or drop {flag}")
    if args.objects and (args.log is not None or not (args.verify or args.all)):
        raise UsageError(
            "--objects checks stored objects while verifying jobs in the database; "
            "add --verify (or --all), and drop --log"
        )
    if args.all and args.job_id is not None:
        raise UsageError(
            f"--all verifies every job; drop --all to replay job {args.job_id}, "
            "or drop the JOB_ID to verify them all"
        )
    if args.job_id is None and not args.all and args.log is None:
        raise UsageError("give a JOB_ID, --all or --log FILE")


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        sys.stdout.write(rr.to_json(value).decode() + "\n")
    else:
        print(text)


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    job: uuid.UUID | None = args.job_id
    if args.log is not None:
        return _run_log(args, job)
    cfg = config.load(args.config)
    args.cfg = cfg
    args.out_dir = Path(args.out).expanduser() if args.out else cfg.output.resolved_directory()

    async def go() -> int:
        async with database.open_database(cfg, application_name="imagen-actors replay") as gw:
            try:
                return await _from_database(args, gw, job)
            except JobNotFoundError as exc:
                # Handled here: leaving the gateway's nursery would wrap it in a group.
                print(f"imagen-actors replay: {exc}", file=sys.stderr)
                return exitcodes.JOB_FAILED

    return trio.run(go)


async def _from_database(args: argparse.Namespace, gw: Gateway, job: uuid.UUID | None) -> int:
    if args.rerun and job is not None:
        return await rerun(args, gw, job)
    if args.all or job is None or args.verify:
        store = build_store(args.cfg.storage) if args.objects else None
        try:
            return await _verify(args, gw, job, store)
        finally:
            if store is not None:
                await store.aclose()
    try:
        stream = await gw.load_events(job)
    except PoisonedStreamError as exc:
        print(
            f"imagen-actors replay: {exc}; `replay {job} --verify` lists every broken event",
            file=sys.stderr,
        )
        return exitcodes.JOB_FAILED
    if not stream:
        raise JobNotFoundError(f"no job {job}")
    tl = rr.timeline(job, stream)
    _emit(args, tl, rr.format_timeline(tl))
    return exitcodes.OK


async def _verify(
    args: argparse.Namespace, gw: Gateway, job: uuid.UUID | None, store: ObjectStore | None
) -> int:
    if args.all or job is None:
        summary = await _verify_all_to_stdout(args, gw, store)
        return exitcodes.OK if summary.mismatched == 0 else exitcodes.JOB_FAILED
    result = await verify_one(gw, job)
    if store is not None:
        (result,) = await check_objects(gw, store, [result])
    _emit(args, result, rr.format_verify(result))
    return exitcodes.OK if result.ok else exitcodes.JOB_FAILED


async def _verify_all_to_stdout(
    args: argparse.Namespace, gw: Gateway, store: ObjectStore | None
) -> rr.VerifySummary:
    """verify_all for the CLI: --json streams every result as it is checked (the counts come
    last), text lists the jobs that failed; a progress bar on stderr when it is a terminal."""
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    total = sum((await gw.status_counts()).values()) if bar is not None else 0
    first = True

    def each(result: rr.VerifyResult) -> None:
        nonlocal first
        sys.stdout.write(("" if first else ",") + rr.to_json(result).decode())
        first = False

    def progress(checked: int) -> None:
        if bar is not None:
            bar(ALL_JOBS, checked, max(total, checked))

    if args.json:
        sys.stdout.write('{"results":[')
    try:
        summary = await verify_all(gw, store, each=each if args.json else None, progress=progress)
    finally:
        if bar is not None:
            bar.end()
    if args.json:
        sys.stdout.write(
            f'],"checked":{summary.checked},"ok":{summary.ok},"mismatched":{summary.mismatched}}}\n'
        )
    else:
        print(rr.format_summary(summary))
    return summary


def _run_log(args: argparse.Namespace, job: uuid.UUID | None) -> int:
    try:
        with args.log.open("rb") as fh:
            streams = rr.read_log(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read event log {args.log}: {exc}") from None
    except rr.LogError as exc:
        print(f"imagen-actors replay: {args.log}: {exc}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    if job is not None:
        if job not in streams:
            print(f"imagen-actors replay: no events for job {job} in {args.log}", file=sys.stderr)
            return exitcodes.JOB_FAILED
        streams = {job: streams[job]}
    if args.verify or args.all:
        summary = rr.summarize(rr.verify_stream(j, s) for j, s in streams.items())
        _emit(args, summary, rr.format_summary(summary))
        return exitcodes.OK if summary.mismatched == 0 else exitcodes.JOB_FAILED
    timelines = [rr.timeline(j, s) for j, s in streams.items()]
    _emit(args, timelines, "\n\n".join(rr.format_timeline(t) for t in timelines))
    return exitcodes.OK


# ---- database verification --------------------------------------------------------------


def check_stream(
    job_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> tuple[list[ev.AnyEvent], list[str]]:
    """Decode a stream read by ``replay_events_for``, noting every row that breaks the log's
    rules: a seq that is not the next one, a hash that does not chain, an event this version
    cannot read (unknown type, data the decoder refuses). Never raises for a bad row."""
    events: list[ev.AnyEvent] = []
    problems: list[str] = []
    previous = 0
    for r in rows:
        seq = r["seq"]
        if seq != previous + 1:
            problems.append(
                f"seq jumps from {previous} to {seq}: event(s) are missing from the log"
            )
        previous = seq
        if not r["hash_ok"]:
            problems.append(
                f"event {seq} ({r['type']}): its hash does not chain to the event before it "
                "(this row was changed, or an event before it was removed or inserted)"
            )
        try:
            events.append(event_from_record(job_id, r))
        except PoisonedStreamError as exc:
            problems.append(f"event {seq} ({r['type']}) is undecodable: {exc.why}")
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


def page_streams(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The event rows of one ``replay_page`` row (its parallel arrays), as ``check_stream``
    reads them."""
    if row["seqs"] is None:
        return []
    return [
        {"seq": q, "type": t, "data": d, "actor": a, "worker_id": w, "occurred_at": o, "hash_ok": h}
        for q, t, d, a, w, o, h in zip(
            row["seqs"],
            row["types"],
            row["datas"],
            row["actors"],
            row["worker_ids"],
            row["occurred_ats"],
            row["hash_oks"],
            strict=True,
        )
    ]


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


async def rerun(args: argparse.Namespace, gw: Gateway, job: uuid.UUID) -> int:
    """Reproduce a job: same prompt, size, seed and options, fresh in-process run."""
    stream = await gw.load_events(job)
    if not stream or not isinstance(stream[0], ev.JobSubmitted):
        raise JobNotFoundError(f"no job {job}")
    sub = stream[0]
    cfg: config.Config = args.cfg
    backend = args.backend or sub.backend
    seed = sub.seed if sub.seed is not None else naming.default_seed(job)
    req = Request(
        prompt=sub.prompt,
        width=sub.width,
        height=sub.height,
        seed=seed,
        style=sub.style,
        negative=sub.negative_prompt,
        steps=sub.steps,
        owner=sub.owner_user_id,
    )
    backends = Backends(cfg)
    store = LocalStore(args.out_dir / "rerun-objects", "rerun")
    try:
        outcome = await produce(
            cfg, req, backend, out_dir=args.out_dir, backends=backends, store=store, local=True
        )
    except ConfigError as exc:
        print(f"imagen-actors replay: config error: {exc}", file=sys.stderr)
        return exitcodes.CONFIG
    finally:
        await backends.aclose()
    print(
        f"rerun of {job} on {backend} (seed {seed}); events: {outcome.events_log}", file=sys.stderr
    )
    if outcome.error is not None:
        print(f"imagen-actors replay: rerun failed: {outcome.error}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    print(outcome.image_path)
    return exitcodes.OK
