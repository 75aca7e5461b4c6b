"""The rules a job request must meet, in Python: the same rules, order and wording as the
``imagen.jobs`` CHECK constraints and the ``jobs_insert_validate`` trigger (schema/0006,
replaced in 0009).

The database enforces them for every INSERT; the CLI checks arguments with these functions
first, so ``generate`` without a database refuses exactly what the database would, and the
bad-input tests use them as the model of the door.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

PROMPT_MAX: Final = 4000
NEGATIVE_MAX: Final = 4000
SIZE_MIN: Final = 64
SIZE_MAX: Final = 4096
SEED_MAX: Final = 2**53 - 1  # seeds stay exact as JSON/JavaScript numbers
STEPS_MIN: Final = 1
STEPS_MAX: Final = 200

# Control characters the database refuses in a prompt or negative prompt (one rule for both,
# ``imagen.jobs_control_char_problem`` in schema/0009); tab, LF and CR are allowed.
CONTROL_CHARS: Final = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What the trigger strips before calling a prompt blank.
BLANK_CHARS: Final = " \t\n\r"
BACKEND_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
BACKEND_NAME_RULE: Final = (
    "1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
)


@attrs.frozen
class Problem:
    """Why a value is refused: the column, the CHECK with that rule, what is wrong, the fix."""

    column: str
    constraint: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}"


def _nul(column: str, text: str) -> Problem | None:
    at = text.find("\x00")
    if at < 0:
        return None
    return Problem(
        column,
        None,
        f"{column} contains a NUL character (U+0000) at character {at + 1}",
        "remove it: Postgres text cannot hold NUL",
    )


def control_char_problem(column: str, text: str, constraint: str) -> Problem | None:
    """The one control-character rule of every free-text column (prompt, negative_prompt),
    worded as ``imagen.jobs_control_char_problem`` / ``_fix`` word it (schema/0009)."""
    bad = CONTROL_CHARS.search(text)
    if bad is None:
        return None
    return Problem(
        column,
        constraint,
        f"{column} contains the control character U+{ord(bad.group()):04X} "
        f"at character {bad.start() + 1}",
        f"remove control characters from the {column.replace('_', ' ')}; tab, newline and "
        "carriage return are allowed",
    )


def prompt_problem(prompt: str) -> Problem | None:
    """The first rule ``prompt`` breaks, in the trigger's order; None if it is accepted."""
    nul = _nul("prompt", prompt)
    if nul is not None:
        return nul
    if not prompt.strip(BLANK_CHARS):
        return Problem(
            "prompt",
            "jobs_prompt_not_blank",
            "prompt is empty or only whitespace",
            f"send the text to draw: 1 to {PROMPT_MAX} characters",
        )
    if len(prompt) > PROMPT_MAX:
        return Problem(
            "prompt",
            "jobs_prompt_max_4000_chars",
            f"prompt is {len(prompt)} characters long; the limit is {PROMPT_MAX}",
            f"shorten the prompt to {PROMPT_MAX} characters or fewer",
        )
    return control_char_problem("prompt", prompt, "jobs_prompt_no_control_chars")


def negative_problem(text: str) -> Problem | None:
    nul = _nul("negative_prompt", text)
    if nul is not None:
        return nul
    if len(text) > NEGATIVE_MAX:
        return Problem(
            "negative_prompt",
            "jobs_negative_prompt_max_4000_chars",
            f"negative_prompt is {len(text)} characters long; the limit is {NEGATIVE_MAX}",
            f"shorten the negative prompt to {NEGATIVE_MAX} characters or fewer, or send NULL",
        )
    return control_char_problem("negative_prompt", text, "jobs_negative_prompt_no_control_chars")


def backend_problem(name: str) -> Problem | None:
    if BACKEND_NAME.fullmatch(name):
        return None
    return Problem(
        "backend",
        "jobs_backend_is_identifier",
        f"backend {name[:60]!r} is not a backend instance name",
        "use a configured instance name (`imagen-actors backends` lists them): "
        + BACKEND_NAME_RULE,
    )


def size_problem(column: str, value: int) -> Problem | None:
    if SIZE_MIN <= value <= SIZE_MAX:
        return None
    return Problem(
        column,
        f"jobs_{column}_between_{SIZE_MIN}_and_{SIZE_MAX}",
        f"{column} {value} is out of range: it must be between {SIZE_MIN} and {SIZE_MAX} pixels",
        f"send {column} between {SIZE_MIN} and {SIZE_MAX} (e.g. 1024), or leave it out for 1024",
    )


def seed_problem(value: int) -> Problem | None:
    if 0 <= value <= SEED_MAX:
        return None
    return Problem(
        "seed",
        "jobs_seed_non_negative",
        f"seed {value} is out of range: it must be between 0 and {SEED_MAX} (2^53-1)",
        f"send a seed from 0 to {SEED_MAX}, or NULL for one derived from the job id",
    )


def steps_problem(value: int) -> Problem | None:
    if STEPS_MIN <= value <= STEPS_MAX:
        return None
    return Problem(
        "steps",
        "jobs_steps_between_1_and_200",
        f"steps {value} is out of range: it must be between {STEPS_MIN} and {STEPS_MAX}",
        f"send steps from {STEPS_MIN} to {STEPS_MAX}, or NULL for the backend's default",
    )
