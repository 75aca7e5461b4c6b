"""Configuration: ``~/.config/imagen.yaml`` decoded into msgspec structs.

Every error names the key path and the fix. Secrets never live in the file: a block
names the environment variable that holds one (``api_token_env``, ``key_env``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final

import msgspec
import platformdirs
import yaml

from imagen_actors.errors import ConfigError

DEFAULT_CONFIG_PATH: Final = Path("~/.config/imagen.yaml")
DEFAULT_BUCKET: Final = "imagen-generated"
DEFAULT_NAMING: Final = "{date}/{slug}-{seed}.png"
ENV_DATABASE_URL: Final = "IMAGEN_WORKER_DATABASE_URL"
ENV_HOME: Final = "IMAGEN_HOME"
ENV_CONFIG: Final = "IMAGEN_CONFIG"
ENV_WORKER_NAME: Final = "IMAGEN_WORKER_NAME"

# Keys that look like an inline secret; the fix is always "name the env var instead".
_INLINE_SECRET: Final = re.compile(r"^(api_token|token|api_key|key|secret|password|service_key)$")


def data_home() -> Path:
    """Where embedded Postgres, images and logs live unless configured (XDG data dir)."""
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser()
    return platformdirs.user_data_path("imagen-actors")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class OutputConfig(_Strict):
    directory: str | None = None
    naming: str = DEFAULT_NAMING
    write_metadata_json: bool = True

    def resolved_directory(self) -> Path:
        if self.directory:
            return Path(self.directory).expanduser()
        return data_home() / "images"


class LocalStorageConfig(_Strict, tag="local", tag_field="type"):
    root: str | None = None
    bucket: str = DEFAULT_BUCKET

    def resolved_root(self) -> Path:
        if self.root:
            return Path(self.root).expanduser()
        return data_home() / "storage"


class SupabaseStorageConfig(_Strict, tag="supabase", tag_field="type"):
    url_env: str = "SUPABASE_URL"
    key_env: str = "SUPABASE_SERVICE_KEY"
    bucket: str = DEFAULT_BUCKET
    cache_control_s: int = 3600
    timeout_s: float = 60.0
    max_attempts: int = 4


StorageConfig = LocalStorageConfig | SupabaseStorageConfig


class WorkerConfig(_Strict):
    name: str = "worker"
    poll_interval_s: float = 5.0
    lease_s: float = 60.0
    max_attempts: int = 3
    shutdown_grace_s: float = 120.0
    reap_interval_s: float = 5.0
    http: str | None = None
    progress_persist_interval_s: float = 5.0


class DatabaseConfig(_Strict):
    url: str | None = None
    pool_size: int = 4
    statement_timeout_ms: int = 15_000


class Config(_Strict):
    default_backend: str = "mock"
    output: OutputConfig = msgspec.field(default_factory=OutputConfig)
    storage: StorageConfig = msgspec.field(default_factory=LocalStorageConfig)
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    backends: dict[str, dict[str, Any]] = msgspec.field(
        default_factory=lambda: {"mock": {"type": "mock", "latency_ms": 0}}
    )
    # Where this config came from, for messages ("add it under backends: in PATH").
    source: str = "built-in defaults"

    def database_url(self) -> str | None:
        """The DSN to use, or None for the embedded Postgres."""
        return os.environ.get(ENV_DATABASE_URL) or self.database.url or None


def _validate(cfg: Config) -> Config:
    where = cfg.source
    w = cfg.worker
    checks: list[tuple[bool, str]] = [
        (w.poll_interval_s > 0, "worker.poll_interval_s must be > 0 (seconds; default 5)"),
        (w.lease_s >= 5, "worker.lease_s must be >= 5 seconds (default 60)"),
        (1 <= w.max_attempts <= 20, "worker.max_attempts must be between 1 and 20 (default 3)"),
        (w.shutdown_grace_s >= 0, "worker.shutdown_grace_s must be >= 0 (default 120)"),
        (w.reap_interval_s > 0, "worker.reap_interval_s must be > 0 (default 5)"),
        (
            bool(re.fullmatch(r"[A-Za-z0-9._-]{1,40}", w.name)),
            "worker.name must be 1-40 characters of letters, digits, '.', '_' or '-'",
        ),
        (cfg.database.pool_size >= 2, "database.pool_size must be >= 2 (default 4)"),
        (bool(cfg.backends), "backends: must name at least one backend instance"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{message} (in {where})")
    for name, block in cfg.backends.items():
        if not isinstance(block, dict) or "type" not in block:
            raise ConfigError(
                f"backends.{name} needs a 'type:' (mock, comfyui, replicate) (in {where})"
            )
        for key, value in block.items():
            if _INLINE_SECRET.match(str(key)) and isinstance(value, str):
                raise ConfigError(
                    f"backends.{name}.{key} looks like a secret written inline; put it in an "
                    f"environment variable and name that variable in backends.{name}.{key}_env "
                    f"(in {where})"
                )
    if cfg.default_backend not in cfg.backends:
        raise ConfigError(
            f"default_backend {cfg.default_backend!r} is not configured "
            f"(configured: {', '.join(sorted(cfg.backends))}); add it under backends: in {where}"
        )
    if "{slug}" not in cfg.output.naming and "{job_id}" not in cfg.output.naming:
        raise ConfigError(
            f"output.naming must contain {{slug}} or {{job_id}} so images do not collide "
            f"(got {cfg.output.naming!r}; default {DEFAULT_NAMING!r}) (in {where})"
        )
    return cfg


def parse(text: str, *, source: str) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping of keys (default_backend, output, ...)")
    raw.pop("source", None)
    try:
        cfg = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("$.", "").replace("`$`", "the top level")
        raise ConfigError(
            f"{source}: {message}; see 'imagen-actors config init' for a sample"
        ) from exc
    return _validate(msgspec.structs.replace(cfg, source=source))


def load(path: str | Path | None = None) -> Config:
    """Load from ``path``, else $IMAGEN_CONFIG, else ~/.config/imagen.yaml, else defaults."""
    explicit = path is not None or bool(os.environ.get(ENV_CONFIG))
    chosen = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH).expanduser()
    if not chosen.exists():
        if explicit:
            raise ConfigError(
                f"config file {chosen} does not exist; create one with "
                f"'imagen-actors config init --path {chosen}'"
            )
        return _validate(Config())
    return parse(chosen.read_text(encoding="utf-8"), source=str(chosen))


def secret_from_env(var: str, *, key_path: str) -> str:
    """Read a secret by env-var name, failing fast with the variable's name."""
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(f"{key_path} names ${var}, which is not set; export {var}=...")
    return value
