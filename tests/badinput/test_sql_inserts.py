"""Bad INSERTs into imagen.jobs, as the owner UI (role ``authenticated`` under RLS) and as the
worker's roles: each is refused as a whole with an error naming the column and the fix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.badinput.door import BASE, Door, Refusal, insert_sql

pytestmark = pytest.mark.db

# The owner UI, the migrating role (owner of the tables) and Supabase's server-key role.
UI = ("authenticated", "owner", "service_role")
PRIVILEGED = ("owner", "service_role")  # roles that may name worker/bookkeeping columns


@dataclass(frozen=True)
class Bad:
    values: dict[str, str]  # SQL expressions replacing the base row's values
    column: str  # the column the error names
    constraint: str | None  # the CHECK with that rule (None: NOT NULL)
    message: str  # in MESSAGE: the column and what is wrong
    fix: str  # in HINT
    sqlstate: str = "23514"
    roles: tuple[str, ...] = UI


def case(name: str, *args: Any, **kw: Any) -> object:
    return pytest.param(Bad(*args, **kw), id=name)


WIDTH_FIX = "send width between 64 and 4096 (e.g. 1024)"
PROMPT_FIX = "send the text to draw: 1 to 4000 characters"
CONTROL_FIX = "remove control characters from the prompt; tab, newline and carriage return"
BACKEND_FIX = "use a configured instance name (`imagen-actors backends` lists them)"

CASES = [
    case("width-0", {"width": "0"}, "width", "jobs_width_between_64_and_4096",
         "width 0 is out of range: it must be between 64 and 4096 pixels", WIDTH_FIX),
    case("width-negative", {"width": "-64"}, "width", "jobs_width_between_64_and_4096",
         "width -64 is out of range", WIDTH_FIX),
    case("width-40960", {"width": "40960"}, "width", "jobs_width_between_64_and_4096",
         "width 40960 is out of range", WIDTH_FIX),
    case("height-0", {"height": "0"}, "height", "jobs_height_between_64_and_4096",
         "height 0 is out of range", "send height between 64 and 4096"),
    case("height-5000", {"height": "5000"}, "height", "jobs_height_between_64_and_4096",
         "height 5000 is out of range", "send height between 64 and 4096"),
    case("width-null", {"width": "NULL"}, "width", None, "width is required", WIDTH_FIX,
         sqlstate="23502"),
    case("prompt-empty", {"prompt": "''"}, "prompt", "jobs_prompt_not_blank",
         "prompt is empty or only whitespace", PROMPT_FIX),
    case("prompt-blank", {"prompt": "'    '"}, "prompt", "jobs_prompt_not_blank",
         "prompt is empty or only whitespace", PROMPT_FIX),
    case("prompt-tabs-newlines", {"prompt": "E' \\t\\n\\r '"}, "prompt",
         "jobs_prompt_not_blank", "prompt is empty or only whitespace", PROMPT_FIX),
    case("prompt-4001", {"prompt": "repeat('x', 4001)"}, "prompt", "jobs_prompt_max_4000_chars",
         "prompt is 4001 characters long; the limit is 4000",
         "shorten the prompt to 4000 characters or fewer"),
    case("prompt-huge", {"prompt": "repeat('huge ', 200000)"}, "prompt",
         "jobs_prompt_max_4000_chars", "prompt is 1000000 characters long",
         "shorten the prompt to 4000 characters or fewer"),
    case("prompt-bell", {"prompt": "'bell' || chr(7)"}, "prompt", "jobs_prompt_no_control_chars",
         "prompt contains the control character U+0007 at character 5", CONTROL_FIX),
    case("prompt-ansi-escape", {"prompt": "E'red \\x1b[31m owl'"}, "prompt",
         "jobs_prompt_no_control_chars", "control character U+001B at character 5", CONTROL_FIX),
    case("prompt-delete", {"prompt": "'owl' || chr(127)"}, "prompt",
         "jobs_prompt_no_control_chars", "control character U+007F at character 4", CONTROL_FIX),
    case("prompt-null", {"prompt": "NULL"}, "prompt", None, "prompt is required", PROMPT_FIX,
         sqlstate="23502"),
    case("backend-spaces", {"backend": "'Flux Dev!'"}, "backend", "jobs_backend_is_identifier",
         "backend 'Flux Dev!' is not a backend instance name", BACKEND_FIX),
    case("backend-empty", {"backend": "''"}, "backend", "jobs_backend_is_identifier",
         "backend '' is not a backend instance name", BACKEND_FIX),
    case("backend-65-chars", {"backend": "repeat('a', 65)"}, "backend",
         "jobs_backend_is_identifier", "backend 'aaaaaaaa", BACKEND_FIX),
    case("backend-null", {"backend": "NULL"}, "backend", None, "backend is required",
         "set backend to a configured instance name such as 'mock'", sqlstate="23502"),
    case("seed-negative", {"seed": "-1"}, "seed", "jobs_seed_non_negative",
         "seed -1 is out of range: it must be between 0 and 9007199254740991",
         "or NULL for one derived from the job id"),
    case("seed-above-2^53", {"seed": "9007199254740992"}, "seed", "jobs_seed_non_negative",
         "seed 9007199254740992 is out of range", "send a seed from 0 to 9007199254740991"),
    case("steps-0", {"steps": "0"}, "steps", "jobs_steps_between_1_and_200",
         "steps 0 is out of range: it must be between 1 and 200",
         "send steps from 1 to 200, or NULL for the backend's default"),
    case("steps-201", {"steps": "201"}, "steps", "jobs_steps_between_1_and_200",
         "steps 201 is out of range", "send steps from 1 to 200"),
    case("opts-array", {"opts": "'[1, 2]'"}, "opts", "jobs_opts_is_object",
         "opts must be a JSON object, got a JSON array", 'such as {"guidance": 3.5}, or NULL'),
    case("opts-string", {"opts": "'\"guidance=3\"'"}, "opts", "jobs_opts_is_object",
         "opts must be a JSON object, got a JSON string", "send a JSON object"),
    case("opts-json-null", {"opts": "'null'"}, "opts", "jobs_opts_is_object",
         "opts must be a JSON object, got a JSON null", "or NULL"),
    case("style-65-chars", {"style": "repeat('s', 65)"}, "style", "jobs_style_max_64_chars",
         "style is 65 characters long; the limit is 64", "send a preset name such as 'photo'"),
    case("negative-4001", {"negative_prompt": "repeat('n', 4001)"}, "negative_prompt",
         "jobs_negative_prompt_max_4000_chars", "negative_prompt is 4001 characters long",
         "shorten the negative prompt to 4000 characters or fewer"),
    case("owner-null", {"owner_user_id": "NULL"}, "owner_user_id", None,
         "owner_user_id is required", "set owner_user_id to the signed-in user's id",
         sqlstate="23502"),
    case("status-unknown", {"status": "'exploded'"}, "status", "jobs_status_known",
         "status 'exploded' is not a job status",
         "leave status out: every job starts as 'pending'", roles=PRIVILEGED),
    case("max-attempts-0", {"max_attempts": "0"}, "max_attempts",
         "jobs_max_attempts_between_1_and_20", "max_attempts 0 is out of range",
         "leave max_attempts out for the default 3", roles=PRIVILEGED),
]  # fmt: skip


@pytest.mark.parametrize("bad", CASES)
def test_bad_insert_names_the_column_and_the_fix(door: Door, bad: Bad) -> None:
    """Refused by the trigger: MESSAGE names the column and value, HINT the fix, COLUMN and
    the CHECK's name are set; no row and no event are left behind, for every role."""
    for role in bad.roles:
        before = door.counts()
        outcome = door.insert(role, insert_sql({**BASE, **bad.values}))
        assert isinstance(outcome, Refusal), f"{role} inserted {outcome}"
        assert outcome.sqlstate == bad.sqlstate, (role, outcome)
        assert bad.message in outcome.message, (role, outcome.message)
        assert outcome.message.startswith(bad.column), outcome.message
        assert outcome.hint is not None and bad.fix in outcome.hint, (role, outcome.hint)
        assert (outcome.column, outcome.constraint) == (bad.column, bad.constraint), role
        assert outcome.detail is not None and f"imagen.jobs.{bad.column}" in outcome.detail
        assert len(outcome.message) < 200  # a huge value is never echoed back
        assert door.counts() == before


@pytest.mark.parametrize(
    ("values", "sqlstate", "message", "at"),
    [
        pytest.param({"width": "'abc'"}, "22P02", 'invalid input syntax for type integer: "abc"',
                     "'abc'", id="width-text"),
        pytest.param({"height": "'64.5'"}, "22P02", 'invalid input syntax for type integer',
                     "'64.5'", id="height-quoted-fraction"),
        pytest.param({"opts": "'{bad'"}, "22P02", "invalid input syntax for type json",
                     "'{bad'", id="opts-invalid-json"),
        pytest.param({"owner_user_id": "'me'"}, "22P02", "invalid input syntax for type uuid",
                     "'me'", id="owner-not-uuid"),
        pytest.param({"seed": "'lucky'"}, "22P02", "invalid input syntax for type bigint",
                     "'lucky'", id="seed-text"),
        pytest.param({"prompt": "'owl' || chr(0)"}, "54000", "null character not permitted",
                     None, id="prompt-chr-0"),
    ],
)  # fmt: skip
def test_input_refused_before_the_trigger(
    door: Door, values: dict[str, str], sqlstate: str, message: str, at: str | None
) -> None:
    """A value Postgres cannot even convert never reaches the trigger: the error names the
    type and the value and, for a literal, its position in the statement; nothing is kept."""
    sql = insert_sql({**BASE, **values})
    before = door.counts()
    outcome = door.insert("authenticated", sql)
    assert isinstance(outcome, Refusal)
    assert (outcome.sqlstate, message in outcome.message) == (sqlstate, True), outcome
    if at is not None:
        assert outcome.position is not None and sql[outcome.position - 1 :].startswith(at)
    assert door.counts() == before


def test_nul_in_a_bound_prompt_is_refused_with_nothing_inserted(door: Door) -> None:
    """A NUL in a parameter fails in the protocol (text cannot hold it): 22021, no row."""
    before = door.counts()
    outcome = door.insert(
        "authenticated",
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend) VALUES ($1, $2, 'mock') "
        "RETURNING id",
        uuid.UUID(BASE["owner_user_id"].strip("'")),
        "an owl\x00 at night",
    )
    assert isinstance(outcome, Refusal) and outcome.sqlstate == "22021"
    assert "0x00" in outcome.message and door.counts() == before


@pytest.mark.parametrize(
    ("column", "value"), [("status", "'running'"), ("max_attempts", "5"), ("attempts", "0")]
)
def test_ui_cannot_name_worker_columns(door: Door, column: str, value: str) -> None:
    """The UI's role may insert only request columns: 42501 naming the table, nothing kept."""
    before = door.counts()
    outcome = door.insert("authenticated", insert_sql({**BASE, column: value}))
    assert isinstance(outcome, Refusal)
    assert (outcome.sqlstate, outcome.message) == ("42501", "permission denied for table jobs")
    assert door.counts() == before


def test_claimed_state_is_refused_by_the_guard_first(door: Door) -> None:
    """A privileged INSERT of a running job: the pending-only guard names itself and the fix."""
    outcome = door.insert("owner", insert_sql({**BASE, "status": "'running'"}))
    assert isinstance(outcome, Refusal) and outcome.constraint == "jobs_insert_pending_only"
    assert outcome.hint is not None and "insert only the request columns" in outcome.hint


def test_unquoted_fraction_is_rounded_by_postgres(door: Door) -> None:
    """An unquoted 64.5 is an assignment cast from numeric, which rounds: the row is accepted
    with 65 and its event says 65 too (documented in docs/schema.md 4.5)."""
    job = door.insert("authenticated", insert_sql({**BASE, "width": "64.5"}))
    assert isinstance(job, uuid.UUID)
    row = door.fetchrow(
        "SELECT j.width, e.data->>'width' AS event_width FROM imagen.jobs j "
        "JOIN imagen.job_events e ON e.job_id = j.id WHERE j.id = $1",
        job,
    )
    assert row == {"width": 65, "event_width": "65"}
