"""Pure helpers of the Replicate adapter: price table, aspect ratios, failure rule, Retry-After."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagen_actors.backends import replicate_pricing as pricing
from imagen_actors.backends.replicate_protocol import (
    ASPECT_RATIOS,
    classify_failure,
    default_timeout_s,
    nearest_aspect_ratio,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("ref", "usd"),
    [
        ("black-forest-labs/flux-schnell", 0.003),
        ("black-forest-labs/flux-dev", 0.025),
        ("black-forest-labs/flux-1.1-pro", 0.04),
        ("black-forest-labs/flux-dev:" + "a" * 64, 0.025),
        ("flux-schnell", 0.003),
        ("Black-Forest-Labs/FLUX-Schnell", 0.003),
    ],
)
def test_known_models_are_priced(ref: str, usd: float) -> None:
    """Known refs (with or without version or owner) map to their per-image price."""
    assert pricing.estimate_cost(ref) == pytest.approx(usd)
    assert pricing.is_priced(ref)


@pytest.mark.parametrize(
    "ref", ["someone/flux-schnell-lora", "a" * 64, "", "stability-ai/sdxl:" + "b" * 64]
)
def test_unknown_models_cost_zero_and_are_flagged(ref: str) -> None:
    """Unknown models estimate 0.0 and is_priced flags them."""
    assert pricing.estimate_cost(ref) == 0.0
    assert not pricing.is_priced(ref)


def test_cost_scales_with_images() -> None:
    """The estimate multiplies by the number of outputs; every price names its source."""
    assert pricing.estimate_cost("black-forest-labs/flux-schnell", 4) == pytest.approx(0.012)
    assert all(p.source for p in pricing.PRICES.values())


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1024, 1024), "1:1"),
        ((512, 512), "1:1"),
        ((1920, 1080), "16:9"),
        ((1080, 1920), "9:16"),
        ((2560, 1080), "21:9"),
        ((1080, 2560), "9:21"),
        ((1200, 800), "3:2"),
        ((800, 1200), "2:3"),
        ((800, 1000), "4:5"),
        ((1000, 800), "5:4"),
        ((768, 1024), "3:4"),
        ((1024, 768), "4:3"),
        ((4000, 100), "21:9"),
        ((100, 4000), "9:21"),
    ],
)
def test_nearest_aspect_ratio(size: tuple[int, int], ratio: str) -> None:
    """Requested sizes map to the nearest supported flux aspect ratio."""
    assert nearest_aspect_ratio(*size) == ratio


def test_exact_ratios_map_to_their_label() -> None:
    """Each label's exact ratio maps back to it (its rounded 1 MP size may not: 896x1152)."""
    for label, _width, _height in ASPECT_RATIOS:
        a, b = (int(x) for x in label.split(":"))
        assert nearest_aspect_ratio(a * 64, b * 64) == label


@given(st.integers(1, 10_000), st.integers(1, 10_000))
def test_aspect_ratio_is_symmetric(width: int, height: int) -> None:
    """Swapping width and height swaps the ratio's sides."""
    a, b = nearest_aspect_ratio(width, height).split(":")
    assert nearest_aspect_ratio(height, width) in (f"{b}:{a}", "1:1")


def test_aspect_ratio_rejects_non_positive() -> None:
    """A zero or negative side is a ValueError."""
    with pytest.raises(ValueError, match="positive"):
        nearest_aspect_ratio(0, 10)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB", "transient"),
        ("Prediction timed out", "transient"),
        ("upstream timeout", "transient"),
        ("CUDA error: an illegal memory access was encountered", "transient"),
        ("Service Unavailable", "transient"),
        (
            "All generated images contained NSFW content. Try running it again with a "
            "different prompt.",
            "permanent",
        ),
        ("prompt: field required", "permanent"),
        ("the room was booming", "permanent"),
        (None, "permanent"),
    ],
)
def test_failure_classification(error: str | None, cls: str) -> None:
    """Failure text decides transient vs permanent per the documented rule."""
    assert classify_failure(error) == cls


def test_retry_after_parsing() -> None:
    """Retry-After accepts seconds and HTTP dates; junk or absence gives None."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:05 GMT", now=now) == pytest.approx(5)


def test_model_aware_default_timeouts() -> None:
    """schnell models default to 60 s, dev and others to 120 s."""
    assert default_timeout_s("black-forest-labs/flux-schnell") == 60
    assert default_timeout_s("black-forest-labs/flux-dev:" + "c" * 64) == 120
    assert default_timeout_s("stability-ai/sdxl") == 120
