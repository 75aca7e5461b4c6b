"""Broken config files: each error names the dotted key, the file and the fix, and
``imagen-actors config check`` exits 3 (exitcodes.CONFIG) with it. A path that names no
small text file (binary, a directory, a FIFO, 100 MB, a billion laughs, a dangling symlink at
the default path) is refused at once the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main
from imagen_actors.config import settings as config
from imagen_actors.core.errors import ConfigError
from tests.badinput import badfiles

SOURCE = "bad.yaml"
MOCK = "backends: {m: {type: mock}}\ndefault_backend: m\n"


def case(name: str, text: str, key: str, fix: str) -> object:
    return pytest.param(text, key, fix, id=name)


CASES = [
    case("wrong-type", "worker: {lease_s: soon}", "worker.lease_s",
         "must be a number, got a string 'soon'; write it like lease_s: 60.0"),
    case("typo-nested", "worker: {leese_s: 5}", "worker.leese_s",
         "is not a known setting; did you mean worker.lease_s? rename or remove it"),
    case("typo-top-level", "defualt_backend: mock", "defualt_backend",
         "did you mean default_backend?"),
    case("unknown-storage-type", "storage: {type: s3}", "storage.type",
         "'s3' is not accepted; use one of local, supabase"),
    case("missing-storage-type", "storage: {root: /srv/imagen}", "storage.type",
         "is required; add type: with one of local, supabase"),
    case("section-not-a-mapping", "output: 5", "output",
         "must be a mapping of keys, got a whole number 5"),
    case("fraction-for-int", "worker: {max_attempts: 2.5}", "worker.max_attempts",
         "must be a whole number, got a number 2.5; write it like max_attempts: 3"),
    case("text-for-bool", "output: {write_metadata_json: 'yes please'}",
         "output.write_metadata_json", "must be true or false"),
    case("lease-too-short", "worker: {lease_s: 2}", "worker.lease_s",
         "must be a number of seconds >= 5 (default 60)"),
    case("lease-infinite", "worker: {lease_s: .inf}", "worker.lease_s",
         "must be a number of seconds >= 5"),
    case("negative-timeout", "database: {statement_timeout_ms: -1}",
         "database.statement_timeout_ms", "must be >= 0 milliseconds (0 = no limit"),
    case("supabase-timeout-0", "storage: {type: supabase, timeout_s: 0}", "storage.timeout_s",
         "must be a number of seconds > 0 (default 60)"),
    case("naming-unknown-token", "output: {naming: '{date}/{sluggy}.png'}", "output.naming",
         "unknown token(s) {sluggy}; known: {backend}, {date}"),
    case("naming-format-spec", "output: {naming: '{date}/{slug:>300}.png'}", "output.naming",
         "{slug} has a conversion or format spec (:>300); write the token plainly as {slug}"),
    case("naming-stray-brace", "output: {naming: '{date}/{slug'}", "output.naming",
         "is not a valid template"),
    case("inline-api-token", "backends: {r: {type: replicate, model: a/b, api_token: r8_x}}\n"
         "default_backend: r", "backends.r.api_token",
         "put it in an environment variable and name that variable in backends.r.api_token_env"),
    case("inline-storage-key", "storage: {type: supabase, key: eyJhbGciOi}", "storage.key",
         "name that variable in storage.key_env"),
    case("password-in-dsn", "database: {url: 'postgresql://imagen:hunter2@db/imagen'}",
         "database.url", "set the DSN in $IMAGEN_WORKER_DATABASE_URL instead, or keep the "
         "password in PGPASSWORD"),
    case("token-in-env-key", "backends: {r: {type: replicate, model: a/b, api_token_env: "
         "r8_AbCdEf0123456789}}\ndefault_backend: r", "backends.r.api_token_env",
         "holds what looks like the secret itself; export the secret as a variable"),
    case("backends-a-list", "backends: [mock]", "backends",
         "must be a mapping of instance name -> settings"),
    case("backend-name-unusable", "backends: {Flux Dev: {type: mock}}", "backends.Flux Dev",
         "is not a usable instance name"),
    case("backend-without-type", "backends: {m: {latency_ms: 3}}\ndefault_backend: m",
         "backends.m.type", "is missing: every instance needs a 'type:' (mock, comfyui, "
         "replicate), e.g. backends: {m: {type: mock}}"),
    case("unserved-grace-negative", "worker: {unserved_backend_grace_s: -1}",
         "worker.unserved_backend_grace_s", "must be a number of seconds >= 0 (default 600)"),
    case("unserved-grace-nan", "worker: {unserved_backend_grace_s: .nan}",
         "worker.unserved_backend_grace_s", "must be a number of seconds >= 0"),
    case("default-backend-missing", MOCK.replace("default_backend: m", "default_backend: flux"),
         "default_backend", "is not configured (configured: m); add it under backends: or set "
         "default_backend to one of those"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key", "fix"), CASES)
def test_config_error_names_key_file_and_fix(text: str, key: str, fix: str) -> None:
    """config.parse refuses the document with the key path, the file and the fix."""
    with pytest.raises(ConfigError) as info:
        config.parse(text, source=SOURCE)
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(key)
    assert fix in message and f"(in {SOURCE})" in message


def test_secret_values_are_never_echoed() -> None:
    """The inline-secret errors name the key but never repeat the secret."""
    for text in (
        "backends: {r: {type: replicate, model: a/b, api_token: r8_TOPSECRET}}",
        "storage: {type: supabase, key: eyJTOPSECRET}",
        "database: {url: 'postgresql://u:TOPSECRET@h/db'}",
        "backends: {r: {type: replicate, model: a/b, api_token_env: r8_TOPSECRET}}",
    ):
        with pytest.raises(ConfigError) as info:
            config.parse(text, source=SOURCE)
        assert "TOPSECRET" not in str(info.value)


def test_yaml_syntax_error_gives_line_and_column() -> None:
    """Broken YAML: the file, the line and column, and what to look for."""
    with pytest.raises(ConfigError) as info:
        config.parse("worker:\n  lease_s: [60\n", source=SOURCE)
    message = str(info.value)
    assert message.startswith(f"{SOURCE} is not valid YAML at line 3, column 1")
    assert "fix the syntax there" in message


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["config", "check", "--config", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("block", "message"),
    [
        pytest.param("{type: replicate}", "backends.x.model is required; add model: to backends.x",
                     id="replicate-missing-model"),
        pytest.param("{type: comfyui, urll: 'http://127.0.0.1:8188'}",
                     "backends.x.urll is not a known setting; did you mean backends.x.url?",
                     id="comfyui-typo"),
        pytest.param("{type: replicate, model: a/b, timeout_s: slow}",
                     "backends.x.timeout_s must be a number or null, got a string 'slow'",
                     id="replicate-wrong-type"),
        pytest.param("{type: dalle}", "backends.x.type 'dalle' is not a known adapter "
                     "(known: comfyui, mock, replicate)", id="unknown-adapter"),
        pytest.param("{type: mock, latency_ms: -5}", "backends.x.latency_ms: Expected `int` >= 0",
                     id="mock-negative-latency"),
        pytest.param("{type: mock, fail_rate: 2}", "backends.x.fail_rate: Expected `float` <= 1.0",
                     id="mock-fail-rate-over-1"),
        pytest.param("{type: replicate, model: a/b, opts: {seed: 7}}",
                     "backends.x.opts.seed: seed comes from each job", id="replicate-opts-seed"),
        pytest.param("{type: comfyui, workflow: flux-1-schnel}",
                     "no bundled workflow 'flux-1-schnel' (bundled: flux1-schnell",
                     id="unknown-workflow"),
    ],
)  # fmt: skip
def test_config_check_exits_3_naming_the_adapter_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: str, message: str
) -> None:
    """Adapter-level mistakes surface in `config check` with backends.<name>.<key>."""
    path = tmp_path / "imagen.yaml"
    path.write_text(f"backends:\n  mock: {{type: mock}}\n  x: {block}\n")
    code, err = check(path, capsys)
    assert code == exitcodes.CONFIG and message in err


def test_config_check_exits_3_for_a_file_level_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file-level error stops `config check` with exit 3, the key and the file."""
    path = tmp_path / "imagen.yaml"
    path.write_text("worker: {leese_s: 5}\n")
    code, err = check(path, capsys)
    assert code == exitcodes.CONFIG
    assert "worker.leese_s is not a known setting; did you mean worker.lease_s?" in err
    assert f"(in {path})" in err


def test_config_check_missing_file_says_how_to_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.yaml"
    code, err = check(path, capsys)
    assert code == exitcodes.CONFIG
    assert f"create one with 'imagen-actors config init --path {path}'" in err


def test_missing_secret_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret named by variable but unset fails fast naming the key and the variable."""
    monkeypatch.delenv("IMAGEN_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        config.secret_from_env("IMAGEN_TEST_UNSET_TOKEN", key_path="backends.r.api_token_env")
    assert info.value.key == "backends.r.api_token_env"
    assert "export IMAGEN_TEST_UNSET_TOKEN=" in str(info.value)


FILE_CASES = [
    *badfiles.file_cases(),
    badfiles.param(lambda p: p.write_text(badfiles.laughs()),
                   "it expands to more than 10000 nodes (an alias counts as every node it "
                   "repeats)", "billion-laughs"),
    badfiles.param(lambda p: p.write_text("a: &a [1, *a]\n"),
                   "alias *a refers to the node that contains it", "recursive-alias"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "problem"), FILE_CASES)
async def test_a_file_that_is_no_config_is_refused_at_once(
    bad_path: Path, make: badfiles.Maker, problem: str
) -> None:
    """config.load refuses it within the bound, by the rule (the cap, the depth, the kind
    of file), not after a slow read or parse."""
    make(bad_path)
    with pytest.raises(ConfigError) as info:
        await badfiles.within_bound(lambda: config.load(bad_path))
    assert str(bad_path) in str(info.value) and problem in str(info.value)


@pytest.mark.parametrize(("make", "problem"), FILE_CASES)
def test_config_check_exits_3_on_a_file_that_is_no_config(
    bad_path: Path, make: badfiles.Maker, problem: str
) -> None:
    """The real CLI in its own process: exit 3 within the bound, naming the file."""
    make(bad_path)
    done = badfiles.cli("config", "check", "--config", str(bad_path))
    assert done.returncode == exitcodes.CONFIG, done.stderr
    assert "imagen-actors: config error: " in done.stderr
    assert str(bad_path) in done.stderr and problem in done.stderr


DEFAULT_PATH_CASES = [
    badfiles.param(lambda p: p.symlink_to(p.with_name("nowhere")),
                   "is a symlink to", "dangling-symlink"),
    badfiles.param(badfiles.symlink_loop, "is a symlink loop", "looping-symlink"),
]  # fmt: skip


def default_path(home: Path) -> Path:
    path = home / ".config" / "imagen.yaml"
    path.parent.mkdir(parents=True)
    return path


@pytest.mark.parametrize(("make", "problem"), DEFAULT_PATH_CASES)
def test_a_broken_symlink_at_the_default_path_is_an_error_not_no_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: badfiles.Maker, problem: str
) -> None:
    """Only nothing at all at ~/.config/imagen.yaml means the built-in defaults: a link
    there that reaches no file stops every command (once, it meant the defaults silently)."""
    path = default_path(tmp_path)
    make(path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        config.load()
    assert str(info.value).startswith(f"config file {path} {problem}")
    done = badfiles.cli("config", "check", home=tmp_path)
    assert done.returncode == exitcodes.CONFIG, done.stderr
    assert f"config file {path} {problem}" in done.stderr


def test_nothing_at_the_default_path_still_means_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_path(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.load().source == "built-in defaults"


def test_anchors_and_merge_keys_within_the_bounds_still_work(tmp_path: Path) -> None:
    """The bounds count expanded nodes, so ordinary reuse of a block keeps working."""
    path = tmp_path / "imagen.yaml"
    path.write_text(
        "backends:\n  a: &block {type: mock, latency_ms: 3}\n  b: {<<: *block}\n"
        "default_backend: b\n"
    )
    assert config.load(path).backends["b"] == {"type": "mock", "latency_ms": 3}
