"""imagen-actors forget-owner USER_ID: remove everything of an owner who leaves: their
finished jobs with their events (their prompts live there), image rows, stored objects and
key reservations, through the same recorded path as ``archive`` (kind 'forget', no file:
nothing is kept). docs/operating.md "When an owner leaves" has the whole procedure."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import trio

from imagen_actors.cli import archive_run, arguments, exitcodes
from imagen_actors.cli.commands.archive import batch, emit
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.db import database
from imagen_actors.storage.registry import build_store


def register(sub: Any) -> None:
    p = command(
        sub,
        "forget-owner",
        "remove an owner's finished jobs, events, images and stored objects (recorded in "
        "imagen.archives, nothing kept)",
        run,
    )
    p.add_argument("owner", type=arguments.uuid_of("owner's user id"), help="owner_user_id")
    p.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    p.add_argument("--batch", type=batch, default=archive_run.BATCH, help="jobs per transaction")
    p.add_argument("--json", action="store_true", help="machine-readable summary")


def run(args: argparse.Namespace) -> int:
    owner: uuid.UUID = args.owner
    cfg = config.load(args.config)

    async def go() -> int:
        async with database.open_database(cfg, application_name="imagen-actors forget") as gw:
            unfinished = await gw.fetch("owner_unfinished_jobs", owner)
            if unfinished:
                listed = ", ".join(f"{r['id']} ({r['status']})" for r in unfinished[:5])
                print(
                    f"imagen-actors forget-owner: {len(unfinished)} job(s) of {owner} are not "
                    f"finished: {listed}; cancel them (`imagen-actors cancel JOB`) and run "
                    "forget-owner again once they have ended",
                    file=sys.stderr,
                )
                return exitcodes.JOB_FAILED
            objects = await gw.fetch("owner_objects", owner)
            files = await gw.fetch("owner_archive_files", owner)
            if args.dry_run:
                summary = await archive_run.would_move(gw, "forget", None, owner)
                emit(args, summary)
                print(f"  and {len(objects)} stored object(s)", file=sys.stderr)
            else:
                left = await _delete_objects(cfg, objects)
                if left:
                    for line in left:
                        print(f"imagen-actors forget-owner: {line}", file=sys.stderr)
                    return exitcodes.JOB_FAILED
                summary = await archive_run.run(
                    gw, kind="forget", path=None, cutoff=None, owner=owner, batch_size=args.batch
                )
                keys = await gw.fetchval("owner_release_keys", owner)
                emit(args, summary)
                if not args.json:
                    print(f"  deleted {len(objects)} stored object(s), released {keys} key(s)")
        for f in files:
            print(
                f"imagen-actors forget-owner: archive {f['id']} ({f['file_name']}) still holds "
                f"{f['jobs']} job(s) of {owner}: rewrite it as docs/operating.md says",
                file=sys.stderr,
            )
        return exitcodes.OK

    return trio.run(go)


async def _delete_objects(cfg: config.Config, objects: list[dict[str, Any]]) -> list[str]:
    """Delete the objects first (a re-run deletes what is left); what could not be."""
    store = build_store(cfg.storage)
    left: list[str] = []
    try:
        for o in objects:
            if o["bucket"] != store.bucket:
                left.append(
                    f"object {o['bucket']}/{o['storage_path']} is not in the configured bucket "
                    f"{store.bucket}: run with the config of the worker that stored it"
                )
                continue
            await store.delete(o["storage_path"])
    finally:
        await store.aclose()
    return left
