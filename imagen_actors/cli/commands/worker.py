"""imagen-actors worker: the daemon."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

import trio

from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.observability.logs import configure_logging, wants_json
from imagen_actors.worker.daemon import run_worker
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.identity import worker_id
from imagen_actors.worker.runtime import open_runtime

log = logging.getLogger("imagen_actors.worker")


def register(sub: Any) -> None:
    parser = command(sub, "worker", "run the worker daemon (claims jobs until SIGTERM/SIGINT)", run)
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="stderr log lines: one JSON object per line (journald) or text; "
        "auto: JSON unless stderr is a terminal",
    )


async def serve(cfg: config.Config) -> None:
    """Run the worker until a signal stops it; a second signal (or the grace period) aborts."""
    async with open_runtime(cfg) as rt:
        handle = WorkerHandle(rt.worker_id)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def announce() -> None:
                    await handle.listening.wait()
                    log.info(
                        "worker %s listening (backends: %s)",
                        rt.worker_id,
                        ", ".join(rt.backends.names),
                    )

                async def grace_timer() -> None:
                    await trio.sleep(cfg.worker.shutdown_grace_s)
                    log.warning("shutdown grace period over; aborting")
                    handle.abort()

                async def on_signals() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not handle.intake.cancel_called:
                            log.warning(
                                "%s: finishing the job in flight (up to %.0fs); "
                                "signal again to abort",
                                name,
                                cfg.worker.shutdown_grace_s,
                            )
                            handle.stop_intake()
                            nursery.start_soon(grace_timer)
                        else:
                            log.warning(
                                "second %s: aborting; in-flight jobs go back to the queue", name
                            )
                            handle.abort()

                nursery.start_soon(announce)
                nursery.start_soon(on_signals)
                await run_worker(
                    cfg, rt.gateway, rt.store, rt.backends, rt.worker_id, handle=handle
                )
                nursery.cancel_scope.cancel()
        log.info("worker %s stopped", rt.worker_id)


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    json = wants_json(getattr(args, "log_format", "auto"))
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    configure_logging(json, level, worker_id=worker_id(cfg))
    trio.run(serve, cfg)
    return 0
