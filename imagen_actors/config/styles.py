"""Style presets (embedded styles.yaml) applied to the user's prompt."""

from __future__ import annotations

from functools import cache
from importlib import resources

import attrs
import yaml

from imagen_actors.core.errors import ConfigError


@attrs.frozen
class Style:
    name: str
    prompt: str
    negative: str | None = None


@cache
def presets() -> dict[str, Style]:
    raw = yaml.safe_load(resources.files(__package__).joinpath("styles.yaml").read_text("utf-8"))
    return {name: Style(name, body["prompt"], body.get("negative")) for name, body in raw.items()}


def apply(style: str | None, prompt: str, negative: str | None) -> tuple[str, str | None]:
    """(prompt for the backend, negative prompt); the user's own text is inserted verbatim."""
    if style is None:
        return prompt, negative
    preset = presets().get(style)
    if preset is None:
        raise ConfigError(
            f"unknown style {style!r}; presets: {', '.join(sorted(presets()))} (--style NAME)"
        )
    styled = preset.prompt.replace("{prompt}", prompt)
    parts = [p for p in (negative, preset.negative) if p]
    return styled, ", ".join(parts) or None
