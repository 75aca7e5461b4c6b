from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagen_actors.core import naming


@given(st.text())
def test_slug_is_always_safe_ascii(text: str) -> None:
    """Any prompt gives a non-empty ASCII slug without separators, '..' or '#'."""
    slug = naming.slugify(text)
    assert slug and slug.isascii() and len(slug) <= naming.SLUG_MAX
    assert "/" not in slug and "\\" not in slug and ".." not in slug and "#" not in slug


def test_storage_key_contract() -> None:
    """<YYYY-MM-DD>/<slug>-<seed>.png, dated by the job's creation."""
    when = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert naming.storage_key(when, "Tiny Owl #42 über", 42) == "2026-11-22/tiny-owl-42-uber-42.png"


def test_default_seed_is_stable_per_job() -> None:
    """The same job always gets the same seed, so a re-run stores the same object."""
    job = uuid.uuid4()
    assert naming.default_seed(job) == naming.default_seed(job) < naming.SEED_SPACE


@pytest.mark.parametrize("template", ["{date}/{nope}.png", "/abs/{slug}.png", "../{slug}.png"])
def test_bad_templates_are_refused(template: str) -> None:
    """Unknown tokens, absolute paths and '..' in output.naming are errors."""
    with pytest.raises(naming.NamingError):
        naming.validate_template(template)


def test_template_tokens_cannot_add_directories() -> None:
    """A model name with a slash stays one path component."""
    out = naming.render_template(
        "{model}/{slug}-{seed}.png",
        when=datetime(2026, 1, 2, tzinfo=UTC),
        prompt="owl",
        seed=1,
        backend="r",
        model="black-forest-labs/flux",
        job_id=None,
    )
    assert out == "black-forest-labs-flux/owl-1.png"
