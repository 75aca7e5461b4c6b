"""imagen-actors demo: the embedded Postgres, a worker, and a few jobs INSERTed like the UI."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, Final

import trio

from imagen_actors.cli import arguments
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.db.embedded import pgdata_path
from imagen_actors.worker.daemon import run_worker
from imagen_actors.worker.runtime import open_runtime

DEMO_OWNER: Final = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
PROMPTS: Final = (
    "a lighthouse at dusk, oil painting",
    "a tiny owl reading a book",
    "isometric pixel-art coffee shop",
    "watercolor fox in the snow",
)


def register(sub: Any) -> None:
    p = command(
        sub,
        "demo",
        "start the embedded Postgres and a worker, submit a few jobs "
        "the way the owner UI does, and show them done",
        run,
    )
    p.add_argument(
        "--jobs",
        type=arguments.count(1, "give how many jobs to submit, 1 or more, e.g. --jobs 4"),
        default=len(PROMPTS),
        help="how many jobs to submit",
    )
    p.add_argument(
        "--size", type=arguments.size, default="512x512", help="WIDTHxHEIGHT of each image"
    )


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    width, height = args.size

    embedded = cfg.database_url() is None
    if embedded:
        print(
            f"starting the embedded Postgres in {pgdata_path()} (the first run creates the "
            "cluster: a few seconds)",
            file=sys.stderr,
        )

    async def go() -> int:
        async with open_runtime(cfg) as rt, trio.open_nursery() as nursery:
            print(f"database: {rt.gateway.dsn}", file=sys.stderr)
            handle = await nursery.start(
                lambda task_status: run_worker(
                    cfg, rt.gateway, rt.store, rt.backends, rt.worker_id, task_status=task_status
                )
            )
            await handle.listening.wait()
            ids = []
            for i in range(args.jobs):
                prompt = PROMPTS[i % len(PROMPTS)]
                # Exactly what the owner UI sends: the request columns, nothing else.
                rows = await rt.gateway.fetch_sql(
                    "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
                    "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    DEMO_OWNER,
                    prompt,
                    cfg.default_backend,
                    width,
                    height,
                )
                ids.append(rows[0]["id"])
                print(f"submitted {rows[0]['id']}  {prompt!r}", file=sys.stderr)
            failed = 0
            with trio.fail_after(120):
                for job_id in ids:
                    while True:
                        row = await rt.gateway.fetchrow("load_job", job_id)
                        if row and row["status"] in ("done", "failed", "cancelled"):
                            break
                        await trio.sleep(0.05)
                    if row["status"] == "done":
                        img = await rt.gateway.fetch_sql(
                            "SELECT metadata->>'local_path' AS path FROM imagen.images "
                            "WHERE id = $1",
                            row["image_id"],
                        )
                        took = (row["finished_at"] - row["created_at"]).total_seconds() * 1000
                        print(f"done    {job_id}  {took:6.0f} ms  {img[0]['path']}")
                    else:
                        failed += 1
                        print(f"{row['status']:7} {job_id}  {row['error']}")
            handle.stop_intake()
            return 1 if failed else 0

    code = trio.run(go)
    if embedded:
        print(
            f"the embedded Postgres keeps running in {pgdata_path()} for the next command; "
            "stop it with: imagen-actors embedded stop",
            file=sys.stderr,
        )
    return code
