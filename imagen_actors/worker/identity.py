"""A stable per-host worker name: the Reaper uses it to find what this host held."""

from __future__ import annotations

import os
import socket

from imagen_actors.config.settings import ENV_WORKER_NAME, Config


def worker_id(cfg: Config) -> str:
    override = os.environ.get(ENV_WORKER_NAME)
    if override:
        return override[:63]
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}:{cfg.worker.name}"[:63]
