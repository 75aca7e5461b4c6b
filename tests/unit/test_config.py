from __future__ import annotations

from pathlib import Path

import pytest

from imagen_actors.config import settings as config
from imagen_actors.core.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worker: {lease_s: soon}", "worker.lease_s must be a number, got a string 'soon'"),
        ("worker: {leese_s: 5}", "worker.leese_s is not a known setting; did you mean"),
        ("default_backend: flux\n", "default_backend 'flux' is not configured (configured: mock)"),
        (
            "backends: {r: {type: replicate, api_token: r8_abc}}\ndefault_backend: r",
            "backends.r.api_token looks like a secret written inline",
        ),
        (
            "backends: {m: {latency_ms: 3}}\ndefault_backend: m",
            "backends.m.type is missing: every instance needs a 'type:'",
        ),
        ("storage: {type: s3}", "storage"),
        ("output: {naming: '{date}.png'}", "output.naming must contain {slug} or {job_id}"),
        ("worker: {max_attempts: 0}", "worker.max_attempts must be between 1 and 20"),
        ("- just\n- a list", "must be a YAML mapping"),
        ("worker: [unclosed", "is not valid YAML"),
    ],
)
def test_bad_config_names_the_key_and_fix(text: str, message: str) -> None:
    """Each broken config gives an error naming the key path (and the fix where there is one)."""
    with pytest.raises(ConfigError) as info:
        config.parse(text, source="test.yaml")
    assert message in str(info.value)
    assert "test.yaml" in str(info.value)


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no config file: mock backend, local storage under the data dir, embedded DB."""
    monkeypatch.delenv("IMAGEN_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMAGEN_HOME", str(tmp_path / "data"))
    cfg = config.load()
    assert cfg.default_backend == "mock" and cfg.database_url() is None
    assert isinstance(cfg.storage, config.LocalStorageConfig)
    assert cfg.storage.resolved_root() == tmp_path / "data" / "storage"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    """--config naming a missing file says how to create one."""
    with pytest.raises(ConfigError, match="config init"):
        config.load(tmp_path / "nope.yaml")


def test_env_dsn_wins_over_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAGEN_WORKER_DATABASE_URL overrides database.url."""
    cfg = config.parse("database: {url: 'postgresql://file/db'}", source="t")
    assert cfg.database_url() == "postgresql://file/db"
    monkeypatch.setenv("IMAGEN_WORKER_DATABASE_URL", "postgresql://env/db")
    assert cfg.database_url() == "postgresql://env/db"


def test_secret_from_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing secret fails fast naming the variable."""
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"\$REPLICATE_API_TOKEN, which is not set"):
        config.secret_from_env("REPLICATE_API_TOKEN", key_path="backends.r.api_token_env")
