"""imagen-actors generate: one image through the same Executor -> Uploader -> UsageRecorder.

stdout carries only the image path; stderr a one-line summary (and a progress bar on a TTY).
With no database configured the events go to a JSONL log beside the output.
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from imagen_actors import config, database, decisions, naming, styles
from imagen_actors import events as ev
from imagen_actors.actors.executor import ExecutorSettings, run_one
from imagen_actors.actors.messages import ClaimedWork, ImageCompleted
from imagen_actors.actors.uploader import OutputSettings, UploaderSettings, upload_one
from imagen_actors.actors.usage_recorder import record_one
from imagen_actors.backends.registry import Backends
from imagen_actors.caller import caller_identity
from imagen_actors.cli import exitcodes
from imagen_actors.cli.commands.submit import parse_size
from imagen_actors.cli.main import command
from imagen_actors.errors import ConfigError
from imagen_actors.identity import worker_id as make_worker_id
from imagen_actors.jobstore import JobStore, LocalJobStore
from imagen_actors.storage.registry import build_store

LOCAL_OWNER = uuid.UUID(int=0)
EVENT_LOG = "imagen-events.jsonl"


def register(sub: Any) -> None:
    p = command(sub, "generate", "make one image now, in-process; prints its path", run)
    p.add_argument("prompt")
    p.add_argument("--backend", help="backend instance (default: default_backend)")
    p.add_argument("--style", help="style preset (blog-header, photo, illustration, ...)")
    p.add_argument("--size", default="1024x1024", help="WIDTHxHEIGHT (default 1024x1024)")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--out", metavar="DIR", help="output directory (default: output.directory)")


def progress_printer(enabled: bool) -> Any:
    def show(_job: uuid.UUID, step: int, total: int) -> None:
        width = 24
        filled = width * step // max(1, total)
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total}",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if step >= total:
            print("\r" + " " * (width + 16) + "\r", end="", file=sys.stderr, flush=True)

    return show if enabled else None


async def generate(cfg: config.Config, args: argparse.Namespace) -> int:
    width, height = parse_size(args.size)
    backend = args.backend or cfg.default_backend
    if args.seed is not None and args.seed < 0:
        raise ConfigError("--seed must be 0 or more")
    seed = args.seed if args.seed is not None else random.randrange(naming.SEED_SPACE)
    out_dir: Path = args.out_dir
    wid = make_worker_id(cfg)
    backends = Backends(cfg)
    # Fail fast on an unknown backend or style, before any event is written.
    backends.get(backend)
    styles.apply(args.style, args.prompt, args.negative)
    store = build_store(cfg.storage)
    settings = ExecutorSettings(
        worker_id=wid,
        lease_s=cfg.worker.lease_s,
        progress_persist_interval_s=cfg.worker.progress_persist_interval_s,
    )
    up = UploaderSettings(
        worker_id=wid,
        output=OutputSettings(
            directory=out_dir,
            naming=cfg.output.naming,
            write_metadata_json=cfg.output.write_metadata_json,
        ),
    )
    observer = progress_printer(sys.stderr.isatty())
    request = dict(
        prompt=args.prompt,
        backend=backend,
        width=width,
        height=height,
        style=args.style,
        negative_prompt=args.negative,
        seed=seed,
        steps=args.steps,
    )
    try:
        if cfg.database_url() is None:
            jobs = LocalJobStore(out_dir / EVENT_LOG)
            submitted = ev.GenerateRequested(
                job_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                actor="generate",
                owner_user_id=LOCAL_OWNER,
                max_attempts=1,
                **request,
            )
            await jobs.submit(submitted)
            claim = await jobs.transition(submitted.job_id, decisions.claim(wid, 3600, "generate"))
            code = await pipeline(
                jobs,
                backends,
                store,
                settings,
                up,
                submitted,
                claim.events,
                observer,
                record_usage=False,
            )
            print(
                f"events: {jobs.log_path} (usage not recorded: no database configured)",
                file=sys.stderr,
            )
            return code
        async with database.open_database(cfg, application_name=wid) as gw:
            t = await gw.insert_and_transition(
                (
                    LOCAL_OWNER,
                    args.prompt,
                    backend,
                    width,
                    height,
                    args.style,
                    args.negative,
                    seed,
                    args.steps,
                    None,
                    1,
                ),
                decisions.claim(wid, cfg.worker.lease_s, "generate"),
            )
            inserted = t.prior[0]
            assert isinstance(inserted, ev.JobSubmitted)
            return await pipeline(
                gw, backends, store, settings, up, inserted, t.events, observer, record_usage=True
            )
    finally:
        await backends.aclose()
        await store.aclose()


async def pipeline(
    jobs: JobStore,
    backends: Backends,
    store: Any,
    settings: ExecutorSettings,
    up: UploaderSettings,
    submitted: ev.JobSubmitted,
    claim_events: tuple[ev.Event, ...],
    observer: Any,
    *,
    record_usage: bool,
) -> int:
    (claimed,) = [e for e in claim_events if isinstance(e, ev.JobClaimed)]
    work = ClaimedWork(submitted=submitted, claimed=claimed)
    generated = await run_one(jobs, backends, settings, work, observer)
    if generated is None:
        return report_failure(jobs, submitted.job_id)
    done: ImageCompleted | None = await upload_one(jobs, store, up, generated)
    if done is None:
        return report_failure(jobs, submitted.job_id)
    if record_usage:
        await record_one(jobs, worker_id=settings.worker_id, caller=caller_identity(), item=done)
    gen = done.succeeded
    print(done.image_path)
    print(
        f"{gen.backend}/{gen.model} seed {gen.seed} {submitted.width}x{submitted.height} "
        f"in {gen.latency_ms} ms, ~${gen.cost_usd_estimate:.4f}, job {submitted.job_id}",
        file=sys.stderr,
    )
    return exitcodes.OK


def report_failure(jobs: JobStore, job_id: uuid.UUID) -> int:
    error = "generation failed"
    if isinstance(jobs, LocalJobStore):
        error = jobs.state(job_id).error or error
    print(f"imagen-actors: {error} (job {job_id})", file=sys.stderr)
    return exitcodes.JOB_FAILED


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    args.out_dir = Path(args.out).expanduser() if args.out else cfg.output.resolved_directory()
    return trio.run(generate, cfg, args)
