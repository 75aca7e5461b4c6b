"""imagen-actors backends: the configured instances and whether each can work right now.

Each instance's ``check()`` is the preflight the worker runs at start and as its health
probe (ComfyUI: reachable, new enough, every node class and model file of the workflow in
``/object_info``; Replicate: the token accepted and the model found). Exits 1 when any
instance is not ok, so scripts and CI can gate on it."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.core.errors import ConfigError

CHECK_TIMEOUT_S = 10.0


class BackendReport(msgspec.Struct):
    name: str
    type: str
    default: bool
    ok: bool
    status: str
    fault: str | None = None


def register(sub: Any) -> None:
    p = command(sub, "backends", "list configured backends and their status", run)
    p.add_argument("--json", action="store_true", help="machine-readable output")


async def reports(cfg: config.Config) -> list[BackendReport]:
    backends = Backends(cfg)
    out: list[BackendReport] = []
    try:
        for name in backends.names:
            kind = str(cfg.backends[name].get("type"))
            try:
                with trio.fail_after(CHECK_TIMEOUT_S):
                    status = await backends.get(name).check()
                ok, detail, fault = status.ok, status.detail, status.fault
            except ConfigError as exc:
                ok, detail, fault = False, f"not configured ({exc})", "configuration"
            except trio.TooSlowError:
                ok, detail = False, f"unreachable (no answer in {CHECK_TIMEOUT_S:.0f}s)"
                fault = "dependency"
            out.append(BackendReport(name, kind, name == cfg.default_backend, ok, detail, fault))
    finally:
        await backends.aclose()
    return out


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    rows = trio.run(reports, cfg)
    status = exitcodes.OK if all(r.ok for r in rows) else exitcodes.JOB_FAILED
    if args.json:
        print(msgspec.json.encode(rows).decode())
        return status
    width = max(len(r.name) for r in rows)
    for r in rows:
        mark = "*" if r.default else " "
        print(f"{mark} {r.name:<{width}}  {r.type:<9}  {r.status}")
    return status
