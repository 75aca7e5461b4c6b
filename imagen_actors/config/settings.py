"""Configuration: ``~/.config/imagen.yaml`` decoded into msgspec structs.

Every error names the key path and the fix. Secrets never live in the file: a block
names the environment variable that holds one (``api_token_env``, ``key_env``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Final

import msgspec
import platformdirs
import yaml

from imagen_actors.config import explain as config_errors
from imagen_actors.config import files, slots
from imagen_actors.core import naming, request_rules
from imagen_actors.core.errors import ConfigError

DEFAULT_CONFIG_PATH: Final = Path("~/.config/imagen.yaml")
DEFAULT_BUCKET: Final = "imagen-generated"
DEFAULT_NAMING: Final = "{date}/{slug}-{seed}.png"
ENV_DATABASE_URL: Final = "IMAGEN_WORKER_DATABASE_URL"
ENV_HOME: Final = "IMAGEN_HOME"
ENV_CONFIG: Final = "IMAGEN_CONFIG"
ENV_WORKER_NAME: Final = "IMAGEN_WORKER_NAME"


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
    # Supabase's gateway prefix; "" for a storage server reached directly (no gateway).
    path_prefix: str = "/storage/v1"


StorageConfig = LocalStorageConfig | SupabaseStorageConfig


class WorkerConfig(_Strict):
    name: str = "worker"
    poll_interval_s: float = 5.0
    lease_s: float = 60.0
    max_attempts: int = 3
    shutdown_grace_s: float = 120.0
    reap_interval_s: float = 5.0
    # A worker seen this recently still offers the backends it registered (a restart or a
    # short outage does not make its jobs unserved).
    backend_absent_after_s: float = 600.0
    # A job whose backend no such worker offers waits this long after it last became
    # pending (the host that offers it may start a little later), then a claim fails it.
    unserved_backend_grace_s: float = 600.0
    http: str | None = None
    progress_persist_interval_s: float = 5.0
    # A job waits this long for an unhealthy backend or store (its jobs stay pending, attempts
    # untouched), then fails with "backend X unavailable since T: reason".
    max_wait_s: float = 86400.0
    # An unhealthy dependency is probed with jittered backoff from this gap up to the cap.
    probe_min_s: float = 1.0
    probe_max_s: float = 30.0


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


def _seconds(value: float, *, minimum: float, strict: bool = False) -> bool:
    above = value > minimum if strict else value >= minimum
    return math.isfinite(value) and above


def _validate(cfg: Config) -> Config:
    where = cfg.source
    w, db, st = cfg.worker, cfg.database, cfg.storage
    checks: list[tuple[bool, str, str]] = [
        (_seconds(w.poll_interval_s, minimum=0, strict=True), "worker.poll_interval_s",
         "must be a number of seconds > 0 (default 5)"),
        (_seconds(w.lease_s, minimum=5), "worker.lease_s",
         "must be a number of seconds >= 5 (default 60)"),
        (1 <= w.max_attempts <= 20, "worker.max_attempts", "must be between 1 and 20 (default 3)"),
        (_seconds(w.shutdown_grace_s, minimum=0), "worker.shutdown_grace_s",
         "must be a number of seconds >= 0 (default 120)"),
        (_seconds(w.reap_interval_s, minimum=0, strict=True), "worker.reap_interval_s",
         "must be a number of seconds > 0 (default 5)"),
        (_seconds(w.backend_absent_after_s, minimum=0, strict=True)
         and w.backend_absent_after_s >= 10 * w.reap_interval_s,
         "worker.backend_absent_after_s",
         "must be a number of seconds of at least 10 x worker.reap_interval_s (the heartbeat), "
         "so a live host is never taken for gone (default 600)"),
        (_seconds(w.unserved_backend_grace_s, minimum=0), "worker.unserved_backend_grace_s",
         "must be a number of seconds >= 0 (default 600)"),
        (_seconds(w.progress_persist_interval_s, minimum=0, strict=True),
         "worker.progress_persist_interval_s", "must be a number of seconds > 0 (default 5)"),
        (_seconds(w.max_wait_s, minimum=0, strict=True), "worker.max_wait_s",
         "must be a number of seconds > 0 (default 86400: a day)"),
        (_seconds(w.probe_min_s, minimum=0, strict=True), "worker.probe_min_s",
         "must be a number of seconds > 0 (default 1)"),
        (_seconds(w.probe_max_s, minimum=0, strict=True) and w.probe_max_s >= w.probe_min_s,
         "worker.probe_max_s",
         "must be a number of seconds >= worker.probe_min_s (default 30)"),
        (bool(re.fullmatch(r"[A-Za-z0-9._-]{1,40}", w.name)), "worker.name",
         "must be 1-40 characters of letters, digits, '.', '_' or '-' (default worker)"),
        (db.pool_size >= 2, "database.pool_size", "must be >= 2 (default 4)"),
        (db.statement_timeout_ms >= 0, "database.statement_timeout_ms",
         "must be >= 0 milliseconds (0 = no limit; default 15000)"),
        (bool(cfg.backends), "backends",
         "must name at least one backend instance, e.g. backends: {mock: {type: mock}}"),
    ]  # fmt: skip
    if isinstance(st, SupabaseStorageConfig):
        checks += [
            (_seconds(st.timeout_s, minimum=0, strict=True), "storage.timeout_s",
             "must be a number of seconds > 0 (default 60)"),
            (1 <= st.max_attempts <= 20, "storage.max_attempts",
             "must be between 1 and 20 (default 4)"),
            (st.cache_control_s >= 0, "storage.cache_control_s",
             "must be >= 0 seconds (default 3600)"),
            (st.path_prefix == "" or bool(re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", st.path_prefix)),
             "storage.path_prefix",
             'must be "" (a storage server reached directly) or a path such as /storage/v1, '
             "starting with '/' and not ending in one (default /storage/v1)"),
        ]  # fmt: skip
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key} {message} (in {where})", key=key)
    if cfg.default_backend not in cfg.backends:
        raise ConfigError(
            f"default_backend {cfg.default_backend!r} is not configured "
            f"(configured: {', '.join(sorted(cfg.backends))}); add it under backends: or set "
            f"default_backend to one of those (in {where})",
            key="default_backend",
        )
    _check_naming(cfg.output.naming, where)
    slots.pools(cfg.backends, where)
    return cfg


def _check_naming(template: str, where: str) -> None:
    try:
        naming.validate_template(template)
    except naming.NamingError as exc:
        raise ConfigError(
            f"{exc} (default {DEFAULT_NAMING!r}) (in {where})", key="output.naming"
        ) from None
    if "{slug}" not in template and "{job_id}" not in template:
        raise ConfigError(
            f"output.naming must contain {{slug}} or {{job_id}} so images do not collide "
            f"(got {template!r}; default {DEFAULT_NAMING!r}) (in {where})",
            key="output.naming",
        )


def _check_backends(raw: dict[str, Any], where: str) -> None:
    """``backends:`` is a mapping of instance name -> block with a ``type``; the names are
    what ``imagen.jobs.backend`` refers to, so they follow the same rule as that column."""
    if "backends" not in raw:
        return
    backends = raw["backends"]
    if not isinstance(backends, dict):
        raise ConfigError(
            "backends must be a mapping of instance name -> settings, e.g. "
            f"backends: {{mock: {{type: mock}}}} (in {where})",
            key="backends",
        )
    for name, block in backends.items():
        if not isinstance(name, str):
            raise ConfigError(
                f"backends.{name} must be named by a string; quote it, e.g. '{name}': (in {where})",
                key=f"backends.{name}",
            )
        if request_rules.backend_problem(name) is not None:
            raise ConfigError(
                f"backends.{name} is not a usable instance name: jobs name it in "
                f"imagen.jobs.backend, which takes {request_rules.BACKEND_NAME_RULE}; "
                f"rename it (in {where})",
                key=f"backends.{name}",
            )
        if not isinstance(block, dict):
            raise ConfigError(
                f"backends.{name} must be a mapping of settings with a type (mock, comfyui, "
                f"replicate), e.g. backends: {{{name}: {{type: mock}}}} (in {where})",
                key=f"backends.{name}",
            )
        if "type" not in block:
            raise ConfigError(
                f"backends.{name}.type is missing: every instance needs a 'type:' (mock, "
                f"comfyui, replicate), e.g. backends: {{{name}: {{type: mock}}}} (in {where})",
                key=f"backends.{name}.type",
            )


def parse(text: str, *, source: str) -> Config:
    try:
        raw = files.load_yaml(text)
    except files.YAMLBoundError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source} is refused{at}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(
            f"{source} is not valid YAML{at}: {problem}; fix the syntax there (indentation, "
            "a missing ':' or an unclosed bracket or quote)",
        ) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source} must be a YAML mapping of keys (default_backend, output, ...), "
            f"not a {type(raw).__name__}; {config_errors.SAMPLE_HINT}"
        )
    raw.pop("source", None)
    secret = config_errors.inline_secret(raw, source=source)
    if secret is not None:
        raise secret
    _check_backends(raw, source)
    try:
        cfg = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise config_errors.explain(exc, root=Config, raw=raw, prefix="", source=source) from exc
    return _validate(msgspec.structs.replace(cfg, source=source))


def load(path: str | Path | None = None) -> Config:
    """Load from ``path``, else $IMAGEN_CONFIG, else ~/.config/imagen.yaml, else defaults.

    Only nothing at all at the default path means defaults (``lstat``: a dangling or looping
    symlink there is an error, not "no config"); the file is read by ``files.read_text_file``
    (a regular UTF-8 file of at most 1 MiB)."""
    explicit = path is not None or bool(os.environ.get(ENV_CONFIG))
    chosen = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG_PATH).expanduser()
    if not explicit:
        try:
            os.lstat(chosen)
        except FileNotFoundError:
            return _validate(Config())
        except OSError:
            pass  # read_text_file names the problem
    text = files.read_text_file(
        chosen,
        what="config file",
        missing_hint=f"create one with 'imagen-actors config init --path {chosen}'",
    )
    return parse(text, source=str(chosen))


def describe_source(cfg: Config) -> str:
    """The file to point people at: where ``cfg`` came from, or the default path."""
    return cfg.source if cfg.source != "built-in defaults" else str(DEFAULT_CONFIG_PATH)


def in_file(exc: ConfigError, cfg: Config) -> ConfigError:
    """``exc`` ending in "(in FILE)", FILE the config it is about: errors raised where a
    block is built (a backend, the store) know the key but not the file."""
    where = f"(in {describe_source(cfg)})"
    if where in str(exc):
        return exc
    return ConfigError(f"{exc} {where}", key=exc.key)


def secret_from_env(var: str, *, key_path: str) -> str:
    """Read a secret by env-var name, failing fast with the variable's name."""
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(
            f"{key_path} names ${var}, which is not set; export {var}=...", key=key_path
        )
    return value
