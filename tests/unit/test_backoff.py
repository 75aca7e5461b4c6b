from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagen_actors.core.backoff import Backoff

bases = st.floats(min_value=0.001, max_value=10.0)
caps = st.floats(min_value=0.001, max_value=3600.0)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(base=bases, cap=caps, attempt=st.integers(min_value=-5, max_value=5000), draw=draws)
def test_delay_stays_between_floor_and_capped_ceiling(
    base: float, cap: float, attempt: int, draw: float
) -> None:
    """Every delay lies in [floor, min(cap, base * 2**(n-1))], whatever the attempt number."""
    base, cap = min(base, cap), max(base, cap)
    b = Backoff(base_s=base, cap_s=cap, floor_s=base / 2)
    delay = b.delay_s(attempt, lambda: draw)
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    assert b.floor_s <= delay <= ceiling + 1e-9
    assert b.ceiling_s(attempt) == pytest.approx(ceiling)


@given(base=bases, cap=caps, attempt=st.integers(min_value=1, max_value=80))
def test_ceiling_doubles_until_the_cap(base: float, cap: float, attempt: int) -> None:
    """The ceiling doubles per attempt and never passes the cap."""
    base, cap = min(base, cap), max(base, cap)
    b = Backoff(base_s=base, cap_s=cap)
    assert b.ceiling_s(attempt + 1) == pytest.approx(min(cap, 2 * b.ceiling_s(attempt)))
    assert b.ceiling_s(attempt) <= cap


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    """The draw maps linearly onto [0, ceiling]: workers that failed together spread out."""
    b = Backoff(base_s=0.5, cap_s=4.0)
    assert b.delay_s(1, lambda: 0.0) == 0.0
    assert b.delay_s(1, lambda: 0.5) == 0.25
    assert b.delay_s(4, lambda: 0.999) == pytest.approx(3.996)
    assert b.delay_s(10, lambda: 0.5) == 2.0


@pytest.mark.parametrize(
    ("base", "cap", "floor"), [(1.0, 0.5, 0.0), (1.0, 2.0, 1.5), (1.0, 2.0, -0.1)]
)
def test_inconsistent_settings_are_refused(base: float, cap: float, floor: float) -> None:
    """A cap below the base, or a floor outside [0, base], is a programming error."""
    with pytest.raises(ValueError, match="floor_s <= base_s <= cap_s"):
        Backoff(base_s=base, cap_s=cap, floor_s=floor)
