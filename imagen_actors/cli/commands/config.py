"""imagen-actors config init | check: write a commented sample, or validate a file."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from imagen_actors.backends.registry import build
from imagen_actors.cli import exitcodes
from imagen_actors.cli.commands.backends import CHECK_TIMEOUT_S
from imagen_actors.cli.commands.backends import reports as backend_reports
from imagen_actors.config import settings as config
from imagen_actors.core.errors import ConfigError
from imagen_actors.storage.registry import build_store


def sample_text() -> str:
    return resources.files("imagen_actors.config").joinpath("sample_config.yaml").read_text("utf-8")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="write a sample config, or check one",
        description="write a sample config, or check one",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    init = verbs.add_parser("init", help="write a commented sample config")
    init.add_argument(
        "--path",
        default=str(config.DEFAULT_CONFIG_PATH),
        help="where to write it (default ~/.config/imagen.yaml)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=run_init)
    check = verbs.add_parser(
        "check", help="validate a config file and run the preflight of its backends and storage"
    )
    check.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="file to check (default: $IMAGEN_CONFIG or ~/.config/imagen.yaml)",
    )
    check.set_defaults(run=run_check)


def run_init(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sample_text(), encoding="utf-8")
    print(path)
    return exitcodes.OK


def run_check(args: argparse.Namespace) -> int:
    """Validate the file, then run the worker's preflight on every backend and the store:
    exit 3 on any configuration fault (a bad value, an unset variable, a rejected key, a
    missing bucket, model or node class); a dependency that is only down right now (not
    reachable) is reported but does not fail the check."""
    cfg = config.load(args.config)
    problems: list[str] = []
    for name, block in sorted(cfg.backends.items()):
        try:
            build(name, block)
        except ConfigError as exc:
            problems.append(str(config.in_file(exc, cfg)))
    if not problems:
        rows, down = trio.run(preflight, cfg)
        problems += rows
    else:
        down = []
    for line in down:
        print(f"imagen-actors: warning: {line}", file=sys.stderr)
    if problems:
        for p in problems:
            print(f"imagen-actors: config error: {p}", file=sys.stderr)
        return exitcodes.CONFIG
    print(
        f"{cfg.source}: ok ({len(cfg.backends)} backends: {', '.join(sorted(cfg.backends))}; "
        f"storage: {cfg.storage.__struct_config__.tag})"
    )
    return exitcodes.OK


async def preflight(cfg: config.Config) -> tuple[list[str], list[str]]:
    """(configuration faults, dependencies down) from the same checks ``backends`` and the
    worker run."""
    misconfigured: list[str] = []
    down: list[str] = []
    for report in await backend_reports(cfg):
        if not report.ok:
            target = down if report.fault == "dependency" else misconfigured
            target.append(f"backend {report.name}: {report.status}")
    try:
        store = build_store(cfg.storage)
    except ConfigError as exc:
        return [*misconfigured, f"storage: {config.in_file(exc, cfg)}"], down
    try:
        with trio.move_on_after(CHECK_TIMEOUT_S) as scope:
            checked = await store.check()
        if scope.cancelled_caught:
            down.append(f"storage: no answer within {CHECK_TIMEOUT_S:.0f}s")
        elif not checked.ok:
            target = down if checked.fault == "dependency" else misconfigured
            target.append(f"storage: {checked.detail}")
    finally:
        await store.aclose()
    return misconfigured, down
