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
    check = verbs.add_parser("check", help="validate a config file, backends included")
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
    """Everything a worker start would refuse in the config: each backend block, and the
    storage (its env vars: a Supabase store with SUPABASE_URL unset is not "ok")."""
    cfg = config.load(args.config)
    problems: list[str] = []
    for name, block in sorted(cfg.backends.items()):
        try:
            build(name, block)
        except ConfigError as exc:
            problems.append(str(config.in_file(exc, cfg)))
    try:
        store = build_store(cfg.storage)
    except ConfigError as exc:
        problems.append(str(config.in_file(exc, cfg)))
    else:
        trio.run(store.aclose)
    if problems:
        for p in problems:
            print(f"imagen-actors: config error: {p}", file=sys.stderr)
        return exitcodes.CONFIG
    print(
        f"{cfg.source}: ok ({len(cfg.backends)} backends: {', '.join(sorted(cfg.backends))}; "
        f"storage: {cfg.storage.__struct_config__.tag})"
    )
    return exitcodes.OK
