"""Bad command lines: exit 2 (exitcodes.USAGE) with a message naming the flag and the fix,
before any work: no database, no files, no events."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main

OWNER = "11111111-1111-4111-8111-111111111111"
JOB = "22222222-2222-4222-8222-222222222222"
SIZE_FIX = "write WIDTHxHEIGHT with each side 64 to 4096 pixels, e.g. --size 1024x768"
UUID_FIX = f"as 32 hex digits with hyphens, e.g. {OWNER}"


def case(name: str, argv: list[str], flag: str, fix: str) -> object:
    return pytest.param(argv, flag, fix, id=name)


CASES = [
    case("unknown-verb", ["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'",
         "choose from 'archive', 'audit', 'backends'"),
    case("config-unknown-verb", ["config", "frob"], "argument VERB: invalid choice: 'frob'",
         "choose from 'init', 'check'"),
    case("missing-prompt", ["generate"], "the following arguments are required: prompt",
         "usage: imagen-actors generate"),
    case("size-zero", ["generate", "owl", "--size", "0x0"],
         "argument --size: width 0 is out of range", SIZE_FIX),
    case("size-40960", ["generate", "owl", "--size", "40960x64"],
         "argument --size: width 40960 is out of range", SIZE_FIX),
    case("size-negative", ["submit", "owl", "--size", "512x-5"],
         "argument --size: '512x-5' is not WIDTHxHEIGHT", SIZE_FIX),
    case("size-fraction", ["generate", "owl", "--size", "64.5x64"],
         "argument --size: '64.5x64' is not WIDTHxHEIGHT", SIZE_FIX),
    case("size-tiny-submit", ["submit", "owl", "--size", "1x1", "--owner", OWNER],
         "argument --size: width 1 is out of range", SIZE_FIX),
    case("seed-text", ["generate", "owl", "--seed", "abc"],
         "argument --seed: 'abc' is not a whole number",
         "give 0 to 9007199254740991, or leave --seed out for a random one"),
    case("seed-negative", ["submit", "owl", "--seed", "-3"],
         "argument --seed: seed -3 is out of range", "leave --seed out for a random one"),
    case("seed-above-2^53", ["generate", "owl", "--seed", "9007199254740992"],
         "argument --seed: seed 9007199254740992 is out of range", "give 0 to 9007199254740991"),
    case("steps-zero", ["generate", "owl", "--steps", "0"],
         "argument --steps: steps 0 is out of range",
         "give 1 to 200, or leave --steps out for the default"),
    case("steps-missing-value", ["generate", "owl", "--steps"],
         "argument --steps: expected one argument", "usage: imagen-actors generate"),
    case("style-unknown", ["generate", "owl", "--style", "neon"],
         "argument --style: unknown style 'neon'", "use one of blog-header"),
    case("backend-malformed", ["submit", "owl", "--backend", "Flux Dev"],
         "argument --backend: backend 'Flux Dev' is not a backend instance name",
         "give a configured instance name (`imagen-actors backends` lists them)"),
    case("owner-not-uuid", ["generate", "owl", "--owner", "me"],
         "argument --owner: 'me' is not a UUID", f"give the owner user id {UUID_FIX}"),
    case("prompt-empty", ["generate", ""], "argument prompt: prompt is empty or only whitespace",
         "send the text to draw: 1 to 4000 characters"),
    case("prompt-control", ["submit", "bell\x07"],
         "argument prompt: prompt contains the control character U+0007 at character 5",
         "remove control characters from the prompt"),
    case("prompt-4001", ["generate", "x" * 4001],
         "argument prompt: prompt is 4001 characters long; the limit is 4000",
         "shorten the prompt to 4000 characters or fewer"),
    case("negative-4001", ["generate", "owl", "--negative", "n" * 4001],
         "argument --negative: negative_prompt is 4001 characters long",
         "shorten the negative prompt to 4000 characters or fewer"),
    case("cloud-without-owner", ["generate", "owl", "--cloud"],
         "--cloud records the image under its owner in imagen.images",
         "pass --owner UUID or set IMAGEN_OWNER_USER_ID"),
    case("cloud-without-database", ["generate", "owl", "--cloud", "--owner", OWNER],
         "--cloud records the image in imagen.images, but no database is configured",
         "set IMAGEN_WORKER_DATABASE_URL (or database.url in ~/.config/imagen.yaml)"),
    case("submit-without-owner", ["submit", "owl"], "submit needs the job's owner",
         "pass --owner UUID or set IMAGEN_OWNER_USER_ID"),
    case("replay-bad-uuid", ["replay", "job-42"], "argument job_id: 'job-42' is not a UUID",
         f"give the job id {UUID_FIX}"),
    case("replay-nothing", ["replay"], "imagen-actors replay: error: give a JOB_ID",
         "--all or --log FILE"),
    case("rerun-with-all", ["replay", JOB, "--rerun", "--all"],
         "--rerun runs one job again and cannot be combined with --all",
         "give JOB_ID --rerun [--backend B] [--out DIR], or drop --rerun"),
    case("rerun-with-verify", ["replay", JOB, "--rerun", "--verify"],
         "cannot be combined with --verify", "or drop --rerun"),
    case("rerun-without-job", ["replay", "--rerun"], "--rerun needs the JOB_ID",
         "of the job to run again"),
    case("backend-without-rerun", ["replay", JOB, "--backend", "mock"],
         "--backend only applies to --rerun", "add --rerun or drop --backend"),
    case("all-with-job", ["replay", JOB, "--all"], "--all verifies every job",
         f"drop --all to replay job {JOB}, or drop the JOB_ID"),
    case("audit-owner-not-uuid", ["audit", "owner", "xyz"], "argument ID: 'xyz' is not a UUID",
         f"give the owner user id {UUID_FIX}"),
    case("audit-since-words", ["audit", "latency", "--since", "yesterday"],
         "argument --since: 'yesterday' is neither an ISO date/datetime",
         "nor a span like 90m, 24h, 7d"),
    case("audit-plot-not-png", ["audit", "throughput", "--plot", "chart.jpg"],
         "argument --plot: 'chart.jpg' is not a .png file name", "e.g. --plot latency.png"),
    case("audit-limit-zero", ["audit", "owner", OWNER, "--limit", "0"],
         "argument --limit: 0 is less than 1", "give how many jobs to list, 1 or more"),
    case("audit-negative-seconds", ["audit", "stuck", "--pending-older-than", "-5"],
         "argument --pending-older-than: '-5' is not 0 or more",
         "give a number of seconds, 0 or more, e.g. 600"),
    case("status-negative", ["status", "--failures", "-1"], "argument --failures: -1 is less "
         "than 0", "give how many failures to list, 0 or more"),
    case("usage-since-us-date", ["usage", "--since", "11/01/2026"],
         "argument --since: '11/01/2026' is not a date", "write YYYY-MM-DD, e.g. --since"),
    case("compare-no-backends", ["compare", "owl", "--backends", ",,"],
         "argument --backends: ',,' names no backend", "give comma-separated instance names"),
    case("compare-missing-backends", ["compare", "owl"],
         "the following arguments are required: --backends", "usage: imagen-actors compare"),
    case("demo-zero-jobs", ["demo", "--jobs", "0"], "argument --jobs: 0 is less than 1",
         "give how many jobs to submit, 1 or more"),
]  # fmt: skip


@pytest.fixture
def clean_env(tmp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IMAGEN_OWNER_USER_ID", raising=False)
    monkeypatch.delenv("IMAGEN_WORKER_DATABASE_URL", raising=False)
    return tmp_home


@pytest.mark.parametrize(("argv", "flag", "fix"), CASES)
def test_bad_arguments_exit_2_naming_flag_and_fix(
    clean_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str, fix: str
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit for a bad single argument
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == exitcodes.USAGE
    assert out == ""
    assert flag in err and fix in err, err
    assert not clean_env.exists(), "work started: the data dir was created"


def test_a_bad_owner_environment_variable_is_a_config_error(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment is configuration: a malformed $IMAGEN_OWNER_USER_ID exits 3."""
    monkeypatch.setenv("IMAGEN_OWNER_USER_ID", "me")
    assert main(["submit", "owl"]) == exitcodes.CONFIG
    err = capsys.readouterr().err
    assert "$IMAGEN_OWNER_USER_ID 'me' is not a UUID; set it to the owner's user id" in err
