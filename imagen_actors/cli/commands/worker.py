"""imagen-actors worker: the daemon."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import trio

from imagen_actors import config
from imagen_actors.cli.main import command
from imagen_actors.daemon import WorkerHandle, run_worker
from imagen_actors.worker_runtime import open_runtime

log = logging.getLogger("imagen_actors.worker")


def register(sub: Any) -> None:
    command(sub, "worker", "run the worker daemon (claims jobs until SIGTERM/SIGINT)", run)


async def serve(cfg: config.Config) -> None:
    """Run the worker until a signal stops it; a second signal (or the grace period) aborts."""
    async with open_runtime(cfg) as rt:
        handle = WorkerHandle(rt.worker_id)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def announce() -> None:
                    await handle.listening.wait()
                    print(
                        f"imagen-actors: worker {rt.worker_id} listening "
                        f"(backends: {', '.join(rt.backends.names)})",
                        file=sys.stderr,
                    )

                async def grace_timer() -> None:
                    await trio.sleep(cfg.worker.shutdown_grace_s)
                    print("imagen-actors: shutdown grace period over; aborting", file=sys.stderr)
                    handle.abort()

                async def on_signals() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not handle.intake.cancel_called:
                            print(
                                f"imagen-actors: {name}: finishing the job in flight (up to "
                                f"{cfg.worker.shutdown_grace_s:.0f}s); signal again to abort",
                                file=sys.stderr,
                            )
                            handle.stop_intake()
                            nursery.start_soon(grace_timer)
                        else:
                            print(
                                f"imagen-actors: second {name}: aborting; in-flight jobs "
                                "go back to the queue",
                                file=sys.stderr,
                            )
                            handle.abort()

                nursery.start_soon(announce)
                nursery.start_soon(on_signals)
                await run_worker(
                    cfg, rt.gateway, rt.store, rt.backends, rt.worker_id, handle=handle
                )
                nursery.cancel_scope.cancel()
        print(f"imagen-actors: worker {rt.worker_id} stopped", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    trio.run(serve, cfg)
    return 0
