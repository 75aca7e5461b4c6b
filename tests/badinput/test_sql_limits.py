"""The door bounds every request column the worker decodes (schema/0009): opts size, depth
and numbers, the one control-character rule of prompt and negative_prompt, and run_after,
which no role may insert. Each refusal names the column, the limit and the fix."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from imagen_actors.core import request_rules as rules
from tests.badinput.door import BASE, Door, Refusal, insert_sql

pytestmark = pytest.mark.db
ROLES = ("authenticated", "service_role", "owner")


def nested(depth: int) -> str:
    """opts with ``depth`` levels of objects (opts itself is level 1)."""
    opening = '{"a":' * (depth - 1)
    return "'" + opening + "{}" + "}" * (depth - 1) + "'"


@pytest.mark.parametrize(
    ("values", "column", "constraint", "message", "fix", "roles"),
    [
        pytest.param({"opts": nested(1000)}, "opts", "jobs_opts_max_depth_32",
                     "opts is nested deeper than 32 levels", "at most 32 levels", ROLES,
                     id="opts-1000-deep"),
        pytest.param({"opts": nested(33)}, "opts", "jobs_opts_max_depth_32",
                     "opts is nested deeper than 32 levels", "at most 32 levels", ROLES,
                     id="opts-33-deep"),
        pytest.param({"opts": "('[' || repeat('[', 32) || repeat(']', 32) || ']')::jsonb"},
                     "opts", "jobs_opts_is_object", "opts must be a JSON object", "NULL",
                     ROLES, id="opts-deep-array-is-not-an-object"),
        pytest.param({"opts": "('{\"x\": [' || repeat('9', 310) || '.5]}')::jsonb"}, "opts",
                     "jobs_opts_numbers_in_range", "opts holds a number beyond +-1e308",
                     "between -1e308 and 1e308", ROLES, id="opts-310-digit-float"),
        pytest.param({"opts": "'{\"x\": -1e309}'"}, "opts", "jobs_opts_numbers_in_range",
                     "opts holds a number beyond +-1e308", "put a huge value in a JSON string",
                     ROLES, id="opts-minus-1e309"),
        pytest.param({"opts": "('{\"x\": \"' || repeat('y', 65530) || '\"}')::jsonb"},
                     "opts", "jobs_opts_max_64_kib", "the limit is 65536 (64 KiB)",
                     "at most 64 KiB of JSON", ROLES, id="opts-over-64-kib"),
        pytest.param({"negative_prompt": "'blur' || chr(27) || ']0;owned' || chr(7)"},
                     "negative_prompt", "jobs_negative_prompt_no_control_chars",
                     "negative_prompt contains the control character U+001B at character 5",
                     "remove control characters from the negative prompt", ROLES,
                     id="negative-esc-osc"),
        pytest.param({"run_after": "now() + interval '1 hour'"}, "run_after",
                     "jobs_insert_pending_only", "run_after is set by the worker",
                     "leave run_after out", ("service_role", "owner"), id="run-after"),
    ],
)  # fmt: skip
def test_request_limits_name_the_column_and_the_fix(
    door: Door,
    values: dict[str, str],
    column: str,
    constraint: str,
    message: str,
    fix: str,
    roles: tuple[str, ...],
) -> None:
    for role in roles:
        before = door.counts()
        outcome = door.insert(role, insert_sql({**BASE, **values}))
        assert isinstance(outcome, Refusal), f"{role} inserted {outcome}"
        assert (outcome.sqlstate, outcome.column, outcome.constraint) == (
            "23514",
            column,
            constraint,
        ), (role, outcome)
        assert message in outcome.message and outcome.message.startswith(column)
        assert outcome.hint is not None and fix in outcome.hint, outcome.hint
        assert len(outcome.message) < 200
        assert door.counts() == before


def test_the_ui_cannot_name_run_after(door: Door) -> None:
    """authenticated has no INSERT grant on run_after at all; other roles meet the trigger."""
    outcome = door.insert("authenticated", insert_sql({**BASE, "run_after": "now()"}))
    assert isinstance(outcome, Refusal) and outcome.sqlstate == "42501"


@pytest.mark.parametrize(
    "opts",
    [
        nested(32),
        '\'{"x": 1e308, "y": -1e308, "z": 0.000001}\'',
        "('{\"x\": \"' || repeat('y', 65000) || '\"}')::jsonb",
    ],
    ids=["32-deep", "numbers-at-the-limit", "just-under-64-kib"],
)
def test_opts_at_the_limits_are_accepted_and_decode(door: Door, opts: str) -> None:
    """What the door lets in, the worker's decoder reads (the limits are not too loose)."""
    job = door.insert("authenticated", insert_sql({**BASE, "opts": opts}))
    assert isinstance(job, uuid.UUID), job
    row = door.fetchrow(
        "SELECT data::text AS data FROM imagen.job_events WHERE job_id = $1 AND seq = 1", job
    )
    assert row is not None
    assert isinstance(msgspec.json.decode(row["data"])["opts"], dict)


@pytest.mark.parametrize("column", ["prompt", "negative_prompt"])
@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x7f", "\x0b"])
def test_one_control_character_rule_for_both_columns(door: Door, column: str, char: str) -> None:
    """The door and request_rules refuse the same characters with the same words."""
    text = f"an owl{char}]0;title"
    problem = rules.prompt_problem(text) if column == "prompt" else rules.negative_problem(text)
    assert problem is not None
    outcome = door.insert(
        "authenticated",
        f"INSERT INTO imagen.jobs (owner_user_id, prompt, backend, {column}) "
        "VALUES ($1, 'an owl', 'mock', $2) RETURNING id"
        if column == "negative_prompt"
        else "INSERT INTO imagen.jobs (owner_user_id, backend, prompt) "
        "VALUES ($1, 'mock', $2) RETURNING id",
        uuid.UUID(BASE["owner_user_id"].strip("'")),
        text,
    )
    assert isinstance(outcome, Refusal)
    seen = (outcome.column, outcome.constraint, outcome.message, outcome.hint)
    assert seen == (problem.column, problem.constraint, problem.message, problem.fix)
