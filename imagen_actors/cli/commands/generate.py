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

import attrs
import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.cli import arguments, exitcodes
from imagen_actors.cli.commands.submit import resolve_owner
from imagen_actors.cli.main import command
from imagen_actors.cli.progress import ProgressBar
from imagen_actors.config import settings as config
from imagen_actors.core import decisions, naming
from imagen_actors.core import events as ev
from imagen_actors.core.errors import UsageError
from imagen_actors.core.records import NewJob, Transition
from imagen_actors.db import database
from imagen_actors.db.jobstore import KeyLedger, LocalJobStore
from imagen_actors.db.ports import JobStore
from imagen_actors.storage.registry import build_store
from imagen_actors.worker.actors.executor import ExecutorSettings, run_one
from imagen_actors.worker.actors.messages import ClaimedWork, ImageCompleted
from imagen_actors.worker.actors.uploader import OutputSettings, UploaderSettings, upload_one
from imagen_actors.worker.caller import caller_identity
from imagen_actors.worker.identity import cli_run_id

LOCAL_OWNER = uuid.UUID(int=0)
EVENT_LOG = "imagen-events.jsonl"
# Beside the embedded database and the default store: one ledger per host (IMAGEN_HOME).
KEY_LEDGER = "storage-keys.jsonl"


def register(sub: Any) -> None:
    p = command(sub, "generate", "make one image now, in-process; prints its path", run)
    p.add_argument("prompt", type=arguments.prompt, help="what to draw (1 to 4000 characters)")
    p.add_argument(
        "--backend", type=arguments.backend, help="backend instance (default: default_backend)"
    )
    arguments.add_request_options(p)
    p.add_argument("--out", metavar="DIR", help="output directory (default: output.directory)")
    p.add_argument(
        "--owner",
        type=arguments.uuid_of("owner user id"),
        help="owner user id of the image (default: $IMAGEN_OWNER_USER_ID)",
    )
    p.add_argument(
        "--cloud",
        action="store_true",
        help="upload and insert imagen.images like the daemon (needs a database and an owner)",
    )


@attrs.frozen(kw_only=True)
class Outcome:
    backend: str
    job_id: uuid.UUID
    width: int
    height: int
    image_path: str | None = None
    model: str | None = None
    seed: int | None = None
    latency_ms: int | None = None
    cost_usd_estimate: float = 0.0
    error: str | None = None
    events_log: Path | None = None


@attrs.frozen(kw_only=True)
class Request:
    prompt: str
    width: int
    height: int
    seed: int
    style: str | None = None
    negative: str | None = None
    steps: int | None = None
    owner: uuid.UUID = LOCAL_OWNER


def request_from_args(args: argparse.Namespace) -> Request:
    width, height = args.size
    seed = args.seed if args.seed is not None else random.randrange(naming.SEED_SPACE)
    cloud = getattr(args, "cloud", False)
    owner = resolve_owner(
        getattr(args, "owner", None),
        default=None if cloud else LOCAL_OWNER,
        why="--cloud records the image under its owner in imagen.images",
    )
    return Request(
        owner=owner,
        prompt=args.prompt,
        width=width,
        height=height,
        seed=seed,
        style=args.style,
        negative=args.negative,
        steps=args.steps,
    )


async def produce(
    cfg: config.Config,
    req: Request,
    backend: str,
    *,
    out_dir: Path,
    backends: Backends,
    store: Any,
    observer: Any = None,
    naming_template: str | None = None,
    local: bool = False,
) -> Outcome:
    """One image through the Executor -> Uploader code paths."""
    wid = cli_run_id(cfg, "generate")
    backends.get(backend)  # unknown backend: a config error before any event is written
    settings = ExecutorSettings(
        worker_id=wid,
        lease_s=cfg.worker.lease_s,
        progress_persist_interval_s=cfg.worker.progress_persist_interval_s,
    )
    up = UploaderSettings(
        worker_id=wid,
        output=OutputSettings(
            directory=out_dir,
            naming=naming_template or cfg.output.naming,
            write_metadata_json=cfg.output.write_metadata_json,
        ),
    )
    if local or cfg.database_url() is None:
        # Keys are reserved for good across runs (a second run with the same prompt, seed
        # and day, or compare's next backend, takes its own variant, never the same object).
        jobs = LocalJobStore(out_dir / EVENT_LOG, keys=KeyLedger(config.data_home() / KEY_LEDGER))
        submitted = ev.GenerateRequested(
            job_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            actor="generate",
            owner_user_id=req.owner,
            max_attempts=1,
            prompt=req.prompt,
            backend=backend,
            width=req.width,
            height=req.height,
            style=req.style,
            negative_prompt=req.negative,
            seed=req.seed,
            steps=req.steps,
        )
        await jobs.submit(submitted)
        claim = await jobs.transition(submitted.job_id, decisions.claim(wid, 3600, "generate"))
        outcome = await pipeline(
            jobs,
            backends,
            store,
            settings,
            up,
            claim,
            observer,
            record_usage=False,
        )
        return attrs.evolve(outcome, events_log=jobs.log_path)
    async with database.open_database(cfg, application_name=wid) as gw:
        t = await gw.insert_and_transition(
            NewJob(
                owner_user_id=req.owner,
                prompt=req.prompt,
                backend=backend,
                width=req.width,
                height=req.height,
                style=req.style,
                negative_prompt=req.negative,
                seed=req.seed,
                steps=req.steps,
                max_attempts=1,
            ),
            decisions.claim(wid, cfg.worker.lease_s, "generate"),
        )
        return await pipeline(gw, backends, store, settings, up, t, observer, record_usage=True)


async def generate(cfg: config.Config, args: argparse.Namespace) -> int:
    req = request_from_args(args)
    if args.cloud and cfg.database_url() is None:
        raise UsageError(
            "--cloud records the image in imagen.images, but no database is configured: "
            f"set {config.ENV_DATABASE_URL} (or database.url in {config.describe_source(cfg)}) "
            "to the shared database, or leave --cloud out to keep the image local"
        )
    backend = args.backend or cfg.default_backend
    backends = Backends(cfg)
    store = build_store(cfg.storage)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        outcome = await produce(
            cfg,
            req,
            backend,
            out_dir=args.out_dir,
            backends=backends,
            store=store,
            observer=bar,
        )
    finally:
        if bar is not None:
            bar.end()  # the summary (or the error) starts on its own line
        await backends.aclose()
        await store.aclose()
    if outcome.events_log is not None:
        print(
            f"events: {outcome.events_log} (usage not recorded: no database configured)",
            file=sys.stderr,
        )
    if outcome.error is not None:
        print(f"imagen-actors: {outcome.error} (job {outcome.job_id})", file=sys.stderr)
        return exitcodes.JOB_FAILED
    print(outcome.image_path)
    print(
        f"{outcome.backend}/{outcome.model} seed {outcome.seed} "
        f"{outcome.width}x{outcome.height} in {outcome.latency_ms} ms, "
        f"~${outcome.cost_usd_estimate:.4f}, job {outcome.job_id}",
        file=sys.stderr,
    )
    return exitcodes.OK


async def pipeline(
    jobs: JobStore,
    backends: Backends,
    store: Any,
    settings: ExecutorSettings,
    up: UploaderSettings,
    claim: Transition,
    observer: Any,
    *,
    record_usage: bool,
) -> Outcome:
    work = ClaimedWork.from_claim(claim)
    submitted = work.submitted
    base = Outcome(
        backend=submitted.backend,
        job_id=submitted.job_id,
        width=submitted.width,
        height=submitted.height,
    )
    generated = await run_one(jobs, backends, settings, work, observer)
    done: ImageCompleted | None = None
    if generated is not None:
        if record_usage:
            up = attrs.evolve(up, caller=caller_identity())
        done = await upload_one(jobs, store, up, generated)
    if done is None:
        error = await jobs.job_error(submitted.job_id)
        return attrs.evolve(base, error=error or "generation failed")
    gen = done.outcome
    return attrs.evolve(
        base,
        image_path=done.image_path,
        width=gen.metadata.get("width", base.width),  # as made (read from the image)
        height=gen.metadata.get("height", base.height),
        model=gen.model,
        seed=gen.seed,
        latency_ms=gen.latency_ms,
        cost_usd_estimate=gen.cost_usd_estimate,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    args.out_dir = Path(args.out).expanduser() if args.out else cfg.output.resolved_directory()
    return trio.run(generate, cfg, args)
