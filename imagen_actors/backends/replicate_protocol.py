"""Replicate's protocol facts as data and pure functions: config, aspect ratios, failure
classes, Retry-After. The HTTP client lives in ``replicate``."""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx
import msgspec

from imagen_actors.backends import replicate_pricing as pricing
from imagen_actors.core.errors import ErrorClass

DEFAULT_TOKEN_ENV: Final = "REPLICATE_API_TOKEN"
DEFAULT_BASE_URL: Final = "https://api.replicate.com"

# Replicate's flux aspect ratios (cog-flux predict.py), as (label, width, height) at 1 MP.
ASPECT_RATIOS: Final[tuple[tuple[str, int, int], ...]] = (
    ("1:1", 1024, 1024),
    ("16:9", 1344, 768),
    ("21:9", 1536, 640),
    ("3:2", 1216, 832),
    ("2:3", 832, 1216),
    ("4:5", 896, 1088),
    ("5:4", 1088, 896),
    ("3:4", 896, 1152),
    ("4:3", 1152, 896),
    ("9:16", 768, 1344),
    ("9:21", 640, 1536),
)

TERMINAL: Final = frozenset({"succeeded", "failed", "canceled", "aborted"})

# Replicate removes an API prediction's input and output about an hour after it was created
# (protocols.md §2.2). A recorded prediction older than this is not resumed: its output may be
# gone before it could be fetched, and a new prediction is cheaper than a GET that leads
# nowhere. 50 min leaves the last 10 for the poll and the download.
RESUME_MAX_AGE_S: Final = 50 * 60

TRANSIENT_FAILURE_PATTERNS: Final[tuple[str, ...]] = (
    r"timed? ?out",
    r"timeout",
    r"out of memory",
    r"\boom\b",
    r"cuda error",
    r"connection (reset|refused|aborted|error)",
    r"temporar(il)?y unavailable",
    r"service unavailable",
    r"internal server error",
)
TRANSIENT_FAILURE: Final = re.compile("|".join(TRANSIENT_FAILURE_PATTERNS), re.IGNORECASE)

MODEL_REF: Final = re.compile(
    r"^(?P<owner>[A-Za-z0-9][\w.-]*)/(?P<name>[A-Za-z0-9][\w.-]*)(?::(?P<version>[0-9a-f]+))?$"
)
HEX_VERSION: Final = re.compile(r"^[0-9a-f]{64}$")
TQDM_PROGRESS: Final = re.compile(r"(\d+)/(\d+) \[")


class ReplicateConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: str
    api_token_env: str = DEFAULT_TOKEN_ENV
    base_url: str = DEFAULT_BASE_URL
    default_steps: int | None = None
    timeout_s: float | None = None  # whole prediction; None -> default_timeout_s(model)
    poll_interval_s: float = 0.5
    prefer_wait_s: int = 5  # the create holds up to N s ("Prefer: wait=N", 1..60); 0 = off
    http_timeout_s: float = 30.0  # one HTTP request
    max_rate_limit_retries: int = 3
    backoff_s: float = 0.5  # ceiling of the first 429/5xx backoff (full jitter); doubles
    max_backoff_s: float = 60.0
    cancel_timeout_s: float = 5.0
    cost_usd_per_image: float | None = None  # overrides imagen_actors.backends.replicate_pricing
    opts: dict[str, Any] = msgspec.field(default_factory=dict)


def default_timeout_s(model: str) -> float:
    """60 s for *schnell* models, 120 s for *dev* and everything else."""
    name = pricing.model_name(model)
    return 60.0 if "schnell" in name else 120.0


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported flux ratio closest to width:height.

    Distance is |log(w/h) - log(a/b)| against the nominal ratio a:b of each label (not the
    rounded 1 MP pixel sizes, which would send an exact 5:4 request to 4:3); ties -> first.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    target = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda row: abs(log_ratio(row[0]) - target))[0]


def log_ratio(label: str) -> float:
    a, b = label.split(":")
    return math.log(int(a) / int(b))


def progress_from_logs(prediction: Mapping[str, Any], total: int) -> tuple[int, int] | None:
    """``(step, steps)`` from the last tqdm ``n/m [`` line of the logs; ``(0, total)`` while
    there is none yet and the steps are known; None when there is nothing to say."""
    logs = prediction.get("logs")
    if not isinstance(logs, str):
        return None
    found = TQDM_PROGRESS.findall(logs)
    if found:
        step, steps = (int(x) for x in found[-1])
        return (min(step, steps), steps) if steps else None
    return (0, total) if total else None


def classify_failure(error: str | None) -> ErrorClass:
    """The module docstring's rule: transient only when the text looks like a retryable fault."""
    if error and TRANSIENT_FAILURE.search(error):
        return "transient"
    return "permanent"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "title", "error"):
            if body.get(key):
                return str(body[key])
    return response.text[:200].strip()
