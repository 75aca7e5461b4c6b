"""Property tests over arbitrary input on each surface: it is either accepted and works, or
refused with an error that names the field (and never with a crash or a half-done job)."""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imagen_actors.backends import comfyui_templating as templating
from imagen_actors.backends.comfyui_workflow import load_workflow
from imagen_actors.cli import arguments
from imagen_actors.cli.main import build_parser
from imagen_actors.config import settings as config
from imagen_actors.config.bundled import workflows_dir
from imagen_actors.core import naming
from imagen_actors.core import request_rules as rules
from imagen_actors.core.errors import ConfigError
from tests.badinput.door import Door, Refusal
from tests.support.jobs import OWNER, assert_replay_matches
from tests.support.worker import make_config, running_worker, wait_all_terminal

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TEXT = st.characters(codec="utf-8")  # anything a client can send: no lone surrogates
KEY = re.compile(r"^\d{4}-\d{2}-\d{2}/(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)-(?P<seed>\d+)\.png$")


def near(length: int) -> st.SearchStrategy[str]:
    """Text of about ``length`` characters built from a short random unit."""
    return st.tuples(
        st.integers(length - 5, length + 5), st.text(TEXT, min_size=1, max_size=3)
    ).map(lambda t: (t[1] * t[0])[: t[0]])


PROMPTS = st.one_of(
    st.text(TEXT, max_size=80),
    st.text(st.sampled_from(" \t\n\r\x00\x07\x0b\x1b\x7f\u200f\u202e\u3000🦉é/x."), max_size=12),
    near(rules.PROMPT_MAX),
)

# ---- SQL: the door and the worker ---------------------------------------------------


@pytest.mark.db
def test_any_prompt_is_refused_by_rule_or_runs_to_done(
    door: Door, door_dsn: str, tmp_path: Path
) -> None:
    """Each prompt INSERTed as the UI is refused exactly as request_rules says (same column,
    constraint, message and hint; NUL by Postgres itself) with nothing kept, or accepted;
    then one worker takes every accepted job to done with a safe key and an exact prompt."""
    accepted: dict[uuid.UUID, str] = {}

    @PROPERTY
    @given(prompt=PROMPTS)
    def at_the_door(prompt: str) -> None:
        before = door.counts()
        outcome = door.insert(
            "authenticated",
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
            "VALUES ($1, $2, 'mock', 64, 64) RETURNING id",
            OWNER,
            prompt,
        )
        problem = rules.prompt_problem(prompt)
        event(f"refused: {problem.constraint}" if problem else "accepted")
        if problem is None:
            assert isinstance(outcome, uuid.UUID), outcome
            accepted[outcome] = prompt
            return
        assert isinstance(outcome, Refusal), f"accepted although {problem}"
        assert door.counts() == before
        if problem.constraint is None:  # NUL: refused while decoding the parameter
            assert outcome.sqlstate == "22021", outcome
            return
        seen = (outcome.column, outcome.constraint, outcome.message, outcome.hint)
        assert seen == (problem.column, problem.constraint, problem.message, problem.fix)

    at_the_door()
    assert accepted, "the strategy should produce some valid prompts"

    async def process() -> None:
        async with running_worker(make_config(tmp_path, door_dsn)) as (_h, gw):
            await wait_all_terminal(gw, timeout=120)
            rows = await gw.fetch_sql(
                "SELECT j.id, j.status, j.error, i.prompt, i.storage_path FROM imagen.jobs j "
                "LEFT JOIN imagen.images i ON i.id = j.image_id WHERE j.id = ANY($1)",
                list(accepted),
            )
            for row in rows:
                await assert_replay_matches(gw, row["id"])
        assert len(rows) == len(accepted)
        for row in rows:
            prompt = accepted[row["id"]]
            assert (row["status"], row["error"], row["prompt"]) == ("done", None, prompt)
            key = KEY.fullmatch(row["storage_path"])
            assert key is not None and key.group("slug") == naming.slugify(prompt), row

    trio.run(process)


# ---- config documents -------------------------------------------------------------

SECTION_KEYS = {
    "output": ["directory", "naming", "write_metadata_json", "dirctory"],
    "storage": ["type", "root", "bucket", "url_env", "key_env", "timeout_s", "key", "rot"],
    "worker": ["name", "poll_interval_s", "lease_s", "max_attempts", "http", "leese_s"],
    "database": ["url", "pool_size", "statement_timeout_ms", "password"],
}
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["local", "supabase", "mock", "{date}/{slug}.png", "{slug:>9}", "r8_x", ""]),
    st.text(TEXT, max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner, max_size=2)
    ),
    max_leaves=4,
)


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            doc[section] = draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=3))
    if draw(st.booleans()):
        names = st.sampled_from(["mock", "m2", "Flux", "a b", ""])
        blocks = st.dictionaries(st.sampled_from(["type", "latency_ms", "api_token"]), VALUES)
        doc["backends"] = draw(st.dictionaries(names, blocks | VALUES, max_size=2))
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["default_backend", "defualt_backend", "extra"]))] = draw(VALUES)
    return doc


@PROPERTY
@given(doc=config_documents())
def test_any_config_document_loads_or_names_a_key(doc: dict[str, Any]) -> None:
    """A config either loads, or raises ConfigError whose key is a dotted path under a
    top-level key of the document, named in the message with the file."""
    try:
        cfg = config.parse(yaml.safe_dump(doc), source="any.yaml")
    except ConfigError as exc:
        event(f"refused at {exc.key}")
        assert exc.key is not None and exc.key in str(exc), str(exc)
        assert "any.yaml" in str(exc)
        top = exc.key.split(".")[0]
        assert top in doc or top == "default_backend", (exc.key, doc)
    else:
        event("loaded")
        assert cfg.default_backend in cfg.backends
        assert math.isfinite(cfg.worker.lease_s) and cfg.worker.lease_s >= 5


# ---- workflow templates and placeholder values ------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
PLACEHOLDER_TEXT = st.sampled_from([*templating.PLACEHOLDERS, "promt", "size", ""]).map(
    lambda n: "${" + n + "}"
)


@PROPERTY
@given(name=st.sampled_from(sorted(templating.PLACEHOLDERS)), value=JSON)
def test_any_placeholder_value_renders_or_names_the_placeholder(name: str, value: Any) -> None:
    tree = {"7": {"class_type": "X", "inputs": {"v": "${" + name + "}"}}}
    try:
        out = templating.render(tree, {name: value})
    except templating.TemplateError as exc:
        assert f"${{{name}}} at node 7 input v" in str(exc)
    else:
        rendered = out["7"]["inputs"]["v"]
        assert isinstance(rendered, templating.PLACEHOLDERS[name]) and type(rendered) is not bool


@st.composite
def edited_workflows(draw: st.DrawFn) -> Any:
    """The bundled flux1-schnell graph with one input replaced, a node dropped, or noise."""
    graph = json.loads((workflows_dir() / "flux1-schnell.json").read_text())
    choice = draw(st.integers(0, 2))
    if choice == 0:
        node = draw(st.sampled_from(sorted(k for k in graph if k != "_imagen")))
        inputs = graph[node]["inputs"]
        name = draw(st.sampled_from(sorted(inputs)))
        inputs[name] = draw(PLACEHOLDER_TEXT | JSON)
    elif choice == 1:
        del graph[draw(st.sampled_from(sorted(graph)))]
    else:
        graph = draw(JSON)
    return copy.deepcopy(graph)


@PROPERTY
@given(graph=edited_workflows())
def test_any_workflow_loads_or_names_the_key_and_file(tmp_path: Path, graph: Any) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(graph))
    try:
        workflow = load_workflow(str(path), instance="w")
    except ConfigError as exc:
        event(str(exc).split(": ", 2)[-1][:40])
        assert exc.key == "backends.w.workflow"
        assert str(exc).startswith(f"backends.w.workflow: {path}")
    else:
        assert "prompt" in workflow.placeholders


# ---- command-line values ---------------------------------------------------------


@PROPERTY
@given(
    flag=st.sampled_from(["--size", "--seed", "--steps", "--owner"]),
    value=st.text(TEXT, max_size=12).filter(lambda v: not v.startswith("-") or v[1:].isdigit()),
)
def test_any_option_value_parses_in_range_or_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    """`submit owl FLAG VALUE`: a value in the database's range, or exit 2 naming the flag."""
    try:
        args = build_parser().parse_args(["submit", "owl", flag, value])
    except SystemExit as exc:
        assert exc.code == 2
        assert f"argument {flag}: " in capsys.readouterr().err
        return
    if flag == "--size":
        assert all(rules.size_problem("width", side) is None for side in args.size)
    elif flag == "--seed":
        assert rules.seed_problem(args.seed) is None
    elif flag == "--steps":
        assert rules.steps_problem(args.steps) is None
    else:
        assert isinstance(args.owner, uuid.UUID)


@PROPERTY
@given(width=st.integers(-10, 5000), height=st.integers(-10, 5000))
def test_size_argument_agrees_with_the_database_rule(width: int, height: int) -> None:
    text = f"{width}x{height}"
    valid = all(rules.SIZE_MIN <= v <= rules.SIZE_MAX for v in (width, height))
    try:
        assert arguments.size(text) == (width, height) and valid
    except argparse.ArgumentTypeError as exc:
        assert not valid and "e.g. --size 1024x768" in str(exc)
