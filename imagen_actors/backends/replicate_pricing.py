"""Per-image USD prices of hosted models, for the ``cost_usd_estimate`` of a result.

Pure: no I/O, no clock. Prices change; the table is dated and every row names its source.
A backend block may override the table (``cost_usd_per_image`` in the Replicate adapter).
"""

from __future__ import annotations

import re
from typing import Final

import attrs

# Prices as of 2026-05-11 (USD per output image; official models bill per output,
# Replicate changelog 2025-01-29). Sources, see docs reference protocols.md §2.7:
# - flux-schnell: replicate.com model page pricing section ($3 per 1,000 images), 2025;
#   same figure in third-party comparisons dated May 2026.
# - flux-dev: third-party only (workflowlab.dev "verified May 11, 2026", cinemasetfree.com);
#   Replicate's own page was not retrieved.
# - flux-1.1-pro: replicate.com model page ($0.04 per image), per the project issue;
#   not re-verified against a dated copy.


@attrs.frozen
class Price:
    usd_per_image: float
    source: str


PRICES: Final[dict[str, Price]] = {
    "black-forest-labs/flux-schnell": Price(0.003, "replicate.com model page (2025)"),
    "black-forest-labs/flux-dev": Price(0.025, "workflowlab.dev, verified 2026-05-11"),
    "black-forest-labs/flux-1.1-pro": Price(0.04, "replicate.com model page"),
}

_HEX_VERSION: Final = re.compile(r"^[0-9a-f]{64}$")


def model_name(model_ref: str) -> str:
    """``owner/name:version`` -> ``owner/name`` (lower-cased); a bare name stays bare."""
    return model_ref.strip().split(":", 1)[0].lower()


def lookup(model_ref: str) -> Price | None:
    """The table row for ``model_ref``, or None when the model is not priced.

    Matches ``owner/name`` exactly, with or without ``:version``; a bare ``name`` (no owner)
    matches the row with that name. A bare 64-hex version id cannot be priced.
    """
    name = model_name(model_ref)
    if not name or _HEX_VERSION.match(name):
        return None
    if name in PRICES:
        return PRICES[name]
    if "/" not in name:
        for key, price in PRICES.items():
            if key.split("/", 1)[1] == name:
                return price
    return None


def is_priced(model_ref: str) -> bool:
    """False flags a model whose estimate is a placeholder 0.0."""
    return lookup(model_ref) is not None


def estimate_cost(model_ref: str, images: int = 1) -> float:
    """USD for ``images`` outputs of ``model_ref``; 0.0 for unknown models (see is_priced)."""
    price = lookup(model_ref)
    if price is None:
        return 0.0
    return round(price.usd_per_image * max(0, images), 6)
