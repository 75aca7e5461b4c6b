"""Pure naming: prompt slugs, object keys, output paths, default seeds."""

from __future__ import annotations

import re
import string
import unicodedata
import uuid
from datetime import datetime
from pathlib import PurePosixPath
from typing import Final

SLUG_MAX: Final = 48
SEED_SPACE: Final = 2**32
TEMPLATE_TOKENS: Final = frozenset({"date", "time", "slug", "seed", "backend", "model", "job_id"})


def slugify(text: str, max_len: int = SLUG_MAX) -> str:
    """ASCII letters, digits and single hyphens; never empty, never a path separator.

    Storage rejects non-ASCII, '#' and '..' segments in keys, so nothing else survives.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "image"


def default_seed(job_id: uuid.UUID) -> int:
    """A job without a seed gets one derived from its id, so a re-run after a crash
    renders and stores the same object instead of a second one."""
    return job_id.int % SEED_SPACE


def storage_key(created_at: datetime, prompt: str, seed: int) -> str:
    """``<YYYY-MM-DD>/<slug>-<seed>.png`` (contract), dated by the job's creation (UTC)."""
    return f"{created_at.date().isoformat()}/{slugify(prompt)}-{seed}.png"


def disambiguated_key(key: str, job_id: uuid.UUID, *, full: bool = False) -> str:
    """The key for a second job that would land on another job's object (the whole job id
    when even the short variant is taken: two job ids sharing their first 8 hex digits)."""
    stem, _, ext = key.rpartition(".")
    return f"{stem}-{job_id.hex if full else job_id.hex[:8]}.{ext}"


class NamingError(ValueError):
    pass


def validate_template(template: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone '{' or '}'
        raise NamingError(
            f"output.naming {template!r} is not a valid template ({exc}); write tokens as "
            "{slug}, and a literal brace as {{ or }}"
        ) from None
    for _, field, spec, conversion in parsed:
        if field is not None and (spec or conversion):
            raise NamingError(
                f"output.naming {template!r}: {{{field}}} has a conversion or format spec "
                f"({'!' + conversion if conversion else ''}{':' + spec if spec else ''}); "
                f"write the token plainly as {{{field}}}"
            )
    fields = {f for _, f, _, _ in parsed if f is not None}
    unknown = fields - TEMPLATE_TOKENS
    if unknown:
        bad = ", ".join(sorted("{" + u + "}" for u in unknown))
        known = ", ".join("{" + t + "}" for t in sorted(TEMPLATE_TOKENS))
        raise NamingError(f"output.naming uses unknown token(s) {bad}; known: {known}")
    if template.startswith("/") or ".." in PurePosixPath(template).parts:
        raise NamingError(f"output.naming {template!r} must be a relative path without '..'")


def render_template(
    template: str,
    *,
    when: datetime,
    prompt: str,
    seed: int,
    backend: str,
    model: str,
    job_id: uuid.UUID | None,
) -> str:
    """Relative output path. Each token value is made path-safe on its own, so a model
    name like ``black-forest-labs/flux`` cannot add a directory."""
    validate_template(template)
    safe = {
        "date": when.date().isoformat(),
        "time": when.strftime("%H%M%S"),
        "slug": slugify(prompt),
        "seed": str(seed),
        "backend": slugify(backend, 64),
        "model": slugify(model, 64),
        "job_id": job_id.hex if job_id else "local",
    }
    return template.format(**safe)
