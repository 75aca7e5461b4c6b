"""The ``imagen-actors`` console script: one subcommand per module in cli/commands/."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from imagen_actors import __version__
from imagen_actors.cli import commands, exitcodes
from imagen_actors.core.errors import ConfigError, DatabaseError, ImagenError, UsageError

Runner = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagen-actors",
        description="Turn rows in a Postgres queue into images (event-sourced Trio actors).",
    )
    parser.add_argument("--version", action="version", version=f"imagen-actors {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="config file (default: $IMAGEN_CONFIG or ~/.config/imagen.yaml)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    run: Runner = args.run
    try:
        try:
            code = run(args)
            # Inside the try: a pipe closed by its reader fails here, not at interpreter exit.
            sys.stdout.flush()
            return code
        except BaseExceptionGroup as group:
            # Errors leave Trio nurseries wrapped; report the first of our own plainly.
            raise _first_leaf(group) from group
    except BrokenPipeError:
        # The reader went away (`status | head`): what it wanted it has. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exitcodes.OK
    except UsageError as exc:
        print(f"imagen-actors {args.command}: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except ConfigError as exc:
        print(f"imagen-actors: config error: {exc}", file=sys.stderr)
        return exitcodes.CONFIG
    except DatabaseError as exc:
        print(f"imagen-actors: database error: {exc}", file=sys.stderr)
        return exitcodes.DATABASE
    except ImagenError as exc:
        print(f"imagen-actors: {exc}", file=sys.stderr)
        return exitcodes.JOB_FAILED
    except KeyboardInterrupt:
        print("imagen-actors: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    ours = [e for e in leaves if isinstance(e, ImagenError | KeyboardInterrupt)]
    return (ours or leaves)[0]


def command(sub: Any, name: str, help_text: str, run: Runner) -> argparse.ArgumentParser:
    """Add a subcommand with the shared --config option; ``run(args) -> exit code``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_config_option(parser)
    parser.set_defaults(run=run)
    return parser
