"""A stable per-host worker name: the Reaper uses it to find what this host held."""

from __future__ import annotations

import os
import socket
import uuid

from imagen_actors.config.settings import ENV_WORKER_NAME, Config


def worker_id(cfg: Config) -> str:
    override = os.environ.get(ENV_WORKER_NAME)
    if override:
        return override[:63]
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}:{cfg.worker.name}"[:63]


def cli_run_id(cfg: Config, command: str) -> str:
    """A worker identity of one CLI run (``generate``, ``compare``), never the daemon's.

    A daemon starting on this host requeues what its own id holds; a ``generate`` that shared
    it would have its job "recovered" and failed under it.
    """
    suffix = f":{command}-{uuid.uuid4().hex[:8]}"
    return worker_id(cfg)[: 63 - len(suffix)] + suffix
