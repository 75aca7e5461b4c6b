"""Argument types shared by the commands: each checks one value the way the database would
and, when it is wrong, raises ``argparse.ArgumentTypeError`` with what is wrong and the fix.

argparse prefixes the flag ("argument --size: ...") and exits 2 (``exitcodes.USAGE``)
before any work starts. Checks that involve two flags raise ``UsageError`` instead.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Final

from imagen_actors.config import styles
from imagen_actors.core import request_rules as rules

EXAMPLE_UUID: Final = "11111111-1111-4111-8111-111111111111"
_SIZE: Final = re.compile(r"\s*(\d{1,9})\s*[xX]\s*(\d{1,9})\s*")
_INT: Final = re.compile(r"\s*[+-]?\d+\s*")


def _problem(problem: rules.Problem | None, fix: str) -> None:
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem.message}; {fix}")


def _whole_number(text: str, fix: str) -> int:
    if not _INT.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; {fix}")
    return int(text)


def size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT``, each side 64..4096 pixels."""
    fix = "write WIDTHxHEIGHT with each side 64 to 4096 pixels, e.g. --size 1024x768"
    m = _SIZE.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT; {fix}")
    width, height = int(m.group(1)), int(m.group(2))
    _problem(rules.size_problem("width", width) or rules.size_problem("height", height), fix)
    return width, height


def seed(text: str) -> int:
    fix = f"give 0 to {rules.SEED_MAX}, or leave --seed out for a random one"
    value = _whole_number(text, fix)
    _problem(rules.seed_problem(value), fix)
    return value


def steps(text: str) -> int:
    fix = f"give {rules.STEPS_MIN} to {rules.STEPS_MAX}, or leave --steps out for the default"
    value = _whole_number(text, fix)
    _problem(rules.steps_problem(value), fix)
    return value


def prompt(text: str) -> str:
    problem = rules.prompt_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(str(problem))
    return text


def negative(text: str) -> str:
    problem = rules.negative_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(str(problem))
    return text


def style(text: str) -> str:
    presets = sorted(styles.presets())
    if text not in presets:
        raise argparse.ArgumentTypeError(
            f"unknown style {text!r}; use one of {', '.join(presets)}, or leave --style out"
        )
    return text


def backend(text: str) -> str:
    problem = rules.backend_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{problem.message}; give a configured instance name "
            f"(`imagen-actors backends` lists them): {rules.BACKEND_NAME_RULE}"
        )
    return text


def uuid_of(what: str) -> Callable[[str], uuid.UUID]:
    """A UUID argument; ``what`` says whose id it is in the message."""

    def parse(text: str) -> uuid.UUID:
        try:
            return uuid.UUID(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a UUID; give the {what} as 32 hex digits with hyphens, "
                f"e.g. {EXAMPLE_UUID}"
            ) from None

    parse.__name__ = f"{what} UUID"
    return parse


def count(minimum: int, fix: str) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        value = _whole_number(text, fix)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}; {fix}")
        return value

    return parse


def seconds(text: str) -> float:
    fix = "give a number of seconds, 0 or more, e.g. 600"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; {fix}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 or more; {fix}")
    return value


def day(text: str) -> datetime:
    """``YYYY-MM-DD`` as midnight UTC."""
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write YYYY-MM-DD, e.g. --since 2026-11-01"
        ) from None


def add_request_options(p: argparse.ArgumentParser, *, seed_default: str = "random") -> None:
    """--style, --size, --seed, --steps, --negative: shared with compare and submit."""
    p.add_argument(
        "--style",
        type=style,
        help=f"style preset ({', '.join(sorted(styles.presets()))})",
    )
    p.add_argument(
        "--size",
        type=size,
        default="1024x1024",
        help="WIDTHxHEIGHT, each side 64 to 4096 (default 1024x1024)",
    )
    p.add_argument("--seed", type=seed, help=f"0 to 2^53-1 (default: {seed_default})")
    p.add_argument("--steps", type=steps, help="1 to 200 (default: the backend's)")
    p.add_argument("--negative", type=negative, help="negative prompt")
