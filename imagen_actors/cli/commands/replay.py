"""imagen-actors replay: a job's timeline; --verify that its events reproduce its row."""

from __future__ import annotations

import argparse
import gzip
import sys
import uuid
from pathlib import Path
from typing import Any, Final

import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.cli import archive_run, arguments, exitcodes
from imagen_actors.cli.commands.generate import Request, produce
from imagen_actors.cli.main import command
from imagen_actors.cli.progress import ProgressBar
from imagen_actors.cli.replay_verify import check_objects, verify_all, verify_one
from imagen_actors.cli.reports import archive as af
from imagen_actors.cli.reports import replay as rr
from imagen_actors.config import settings as config
from imagen_actors.core import events as ev
from imagen_actors.core import naming
from imagen_actors.core.errors import ConfigError, JobNotFoundError, UsageError
from imagen_actors.db import database
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.transactions import PoisonedStreamError
from imagen_actors.storage.base import ObjectStore
from imagen_actors.storage.local import LocalStore
from imagen_actors.storage.registry import build_store

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
        help="read events from a JSONL log (generate --local) or an archive file "
        "(`archive --to`: every job is verified: chain, fold, row) instead of the database",
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


def _run_archive(args: argparse.Namespace, job: uuid.UUID | None) -> int:
    """An ``archive`` file: every job line (or only ``job``'s) checked, always: its chain
    recomputed, its events folded and compared with its archived row and image row."""
    tally = rr.Tally()
    try:
        with gzip.open(args.log, "rb") as fh:
            results = af.verify_lines(fh)
            header = next(iter(results))
            for result in results:
                assert isinstance(result, rr.VerifyResult)
                if job is None or result.job_id == job:
                    tally.add(result)
        sha = archive_run.file_sha256(args.log)
    except OSError as exc:  # gzip.BadGzipFile and EOFError (a cut file) included
        print(f"imagen-actors replay: {args.log}: not a readable archive: {exc}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    except EOFError as exc:
        print(f"imagen-actors replay: {args.log}: the archive is cut short: {exc}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    except af.ArchiveError as exc:
        print(f"imagen-actors replay: {args.log}: {exc}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    summary = tally.summary()
    if job is not None and summary.checked == 0:
        print(f"imagen-actors replay: no job {job} in {args.log}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    assert isinstance(header, af.Header)
    print(
        f"{args.log}: archive {header.archive_id} ({header.kind}), sha256 {sha}: compare "
        f"with imagen.archives.file_sha256 (docs/audit.md)",
        file=sys.stderr,
    )
    _emit(args, summary, rr.format_summary(summary))
    return exitcodes.OK if summary.mismatched == 0 else exitcodes.JOB_FAILED


def _run_log(args: argparse.Namespace, job: uuid.UUID | None) -> int:
    try:
        with args.log.open("rb") as fh:
            is_archive = fh.read(2) == af.GZIP_MAGIC
    except OSError as exc:
        raise ConfigError(f"cannot read event log {args.log}: {exc}") from None
    if is_archive:
        return _run_archive(args, job)
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
