"""imagen-actors compare: one prompt through several backends, one after another on the GPU
slot, then a labelled contact sheet."""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.cli import arguments, exitcodes
from imagen_actors.cli.commands.generate import (
    Outcome,
    produce,
    request_from_args,
)
from imagen_actors.cli.main import command
from imagen_actors.cli.reports import contact_sheet
from imagen_actors.config import settings as config
from imagen_actors.core import naming
from imagen_actors.core.errors import ConfigError, ImagenError
from imagen_actors.storage.local import write_atomic
from imagen_actors.storage.registry import build_store

# One file per backend even when the configured template would give them the same name.
COMPARE_NAMING = "{date}/{slug}-{seed}-{backend}.png"


def register(sub: Any) -> None:
    p = command(sub, "compare", "one prompt through several backends, plus a contact sheet", run)
    p.add_argument("prompt", type=arguments.prompt, help="what to draw (1 to 4000 characters)")
    p.add_argument(
        "--backends",
        type=backend_list,
        required=True,
        help="comma-separated instances, e.g. a,b,c",
    )
    arguments.add_request_options(p)
    p.add_argument("--out", metavar="DIR")


def backend_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no backend; give comma-separated instance names, "
            "e.g. --backends mock,flux-schnell-local"
        )
    return [arguments.backend(n) for n in names]


def caption(o: Outcome) -> list[str]:
    if o.error is not None:
        return [o.backend, f"error: {o.error}"]
    cost = f", ~${o.cost_usd_estimate:.3f}" if o.cost_usd_estimate else ""
    return [o.backend, f"{o.model}", f"{o.latency_ms} ms{cost}"]


async def compare(cfg: config.Config, args: argparse.Namespace) -> int:
    names: list[str] = args.backends
    unknown = [n for n in names if n not in cfg.backends]
    if unknown:
        raise ConfigError(
            f"unknown backend(s) {', '.join(unknown)} (configured: "
            f"{', '.join(sorted(cfg.backends))}); add them under backends:"
        )
    req = request_from_args(args)
    backends = Backends(cfg)
    store = build_store(cfg.storage)
    outcomes: list[Outcome] = []
    gpu = trio.Semaphore(1)  # never two generations at once on one GPU
    try:
        for name in names:
            async with gpu:
                try:
                    outcome = await produce(
                        cfg,
                        req,
                        name,
                        out_dir=args.out_dir,
                        backends=backends,
                        store=store,
                        naming_template=COMPARE_NAMING,
                    )
                except ImagenError as exc:  # a misconfigured instance fails its own tile
                    outcome = Outcome(
                        backend=name,
                        job_id=uuid.uuid4(),
                        width=req.width,
                        height=req.height,
                        error=str(exc),
                    )
            outcomes.append(outcome)
            # One line per backend; the error already names the instance.
            error = (outcome.error or "").removeprefix(f"{name}: ")
            print(f"{name}: {outcome.image_path or 'failed: ' + error}", file=sys.stderr)
    finally:
        await backends.aclose()
        await store.aclose()
    tiles = [
        contact_sheet.Tile(caption(o), Path(o.image_path) if o.image_path else None)
        for o in outcomes
    ]
    png = await trio.to_thread.run_sync(contact_sheet.render, tiles)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    sheet = args.out_dir / f"compare-{naming.slugify(req.prompt)}-{stamp}.png"
    await trio.to_thread.run_sync(write_atomic, sheet, png)
    print(sheet)
    failed = sum(o.error is not None for o in outcomes)
    print(f"{len(outcomes) - failed}/{len(outcomes)} backends succeeded", file=sys.stderr)
    return exitcodes.OK if failed < len(outcomes) else exitcodes.JOB_FAILED


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    args.out_dir = Path(args.out).expanduser() if args.out else cfg.output.resolved_directory()
    return trio.run(compare, cfg, args)
