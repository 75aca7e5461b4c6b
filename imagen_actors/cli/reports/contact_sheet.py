"""A labelled contact sheet: one tile per backend, the caption under each image."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Final

import attrs
from PIL import Image, ImageDraw, ImageFont

TILE: Final = 320
CAPTION_LINES: Final = 4
LINE_H: Final = 14
PAD: Final = 8


@attrs.frozen
class Tile:
    caption: list[str]
    image: Path | None = None  # None: the backend failed; the caption says why


def render(tiles: list[Tile], *, columns: int = 3) -> bytes:
    columns = max(1, min(columns, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns
    cell_h = TILE + PAD + CAPTION_LINES * LINE_H + PAD
    sheet = Image.new("RGB", (columns * (TILE + PAD) + PAD, rows * cell_h + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, tile in enumerate(tiles):
        x = PAD + (i % columns) * (TILE + PAD)
        y = PAD + (i // columns) * cell_h
        if tile.image is not None:
            with Image.open(tile.image) as img:
                thumb = img.convert("RGB")
                thumb.thumbnail((TILE, TILE))
                sheet.paste(thumb, (x + (TILE - thumb.width) // 2, y + (TILE - thumb.height) // 2))
        else:
            draw.rectangle(
                [x, y, x + TILE - 1, y + TILE - 1],
                fill=(235, 225, 225),
                outline=(190, 60, 60),
                width=2,
            )
            draw.text(
                (x + TILE // 2, y + TILE // 2), "FAILED", fill=(190, 60, 60), font=font, anchor="mm"
            )
        lines: list[str] = []
        for text in tile.caption:
            lines.extend(textwrap.wrap(text, width=TILE // 7) or [""])
        for j, line in enumerate(lines[:CAPTION_LINES]):
            draw.text((x, y + TILE + PAD + j * LINE_H), line, fill="black", font=font)
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
