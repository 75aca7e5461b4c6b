"""The one retry backoff: capped exponential with full jitter.

Every retry loop in the package (job retries, actor restarts, claim and LISTEN reconnects,
storage and Replicate requests, dependency probes) asks this module how long to wait, so
they all spread out the same way. Full jitter (a uniform draw between 0 and the capped
exponential ceiling) is what keeps many workers that lost the same Postgres from
reconnecting in lockstep when it comes back (AWS architecture blog, "Exponential Backoff
And Jitter": full jitter does the least total work of the variants compared there).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

Rng = Callable[[], float]
"""A source of floats in [0, 1); ``random.random`` in production, fixed in tests."""


@attrs.frozen
class Backoff:
    """``delay_s(n)`` is uniform in ``[floor_s, min(cap_s, base_s * 2**(n-1))]``.

    ``floor_s`` keeps a minimum gap where a zero wait would only spin (a restarting actor);
    it is 0 for plain full jitter.
    """

    base_s: float
    cap_s: float
    floor_s: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.floor_s <= self.base_s <= self.cap_s:
            raise ValueError(
                f"backoff needs 0 <= floor_s <= base_s <= cap_s, got "
                f"floor_s={self.floor_s}, base_s={self.base_s}, cap_s={self.cap_s}"
            )

    def ceiling_s(self, attempt: int) -> float:
        """The upper bound before retry number ``attempt`` (1-based; <1 counts as 1)."""
        exponent = max(0, attempt - 1)
        # 2**exponent overflows float only past ~1024; by then the cap has long applied.
        if exponent >= 64:
            return self.cap_s
        return min(self.cap_s, self.base_s * 2.0**exponent)

    def delay_s(self, attempt: int, rng: Rng = random.random) -> float:
        """How long to wait before retry number ``attempt`` (1-based)."""
        ceiling = self.ceiling_s(attempt)
        return self.floor_s + (ceiling - self.floor_s) * rng()
