"""image_size reads a PNG's IHDR itself and asks Pillow for anything else."""

from __future__ import annotations

import io

from PIL import Image

from imagen_actors.backends.base import image_size
from imagen_actors.backends.mock import render_png


def _encoded(fmt: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, fmt)
    return buf.getvalue()


def test_png_size_comes_from_its_header() -> None:
    assert image_size(render_png("a prompt", 7, 96, 64)) == (96, 64)
    assert image_size(_encoded("PNG", (3000, 17))) == (3000, 17)


def test_other_formats_and_garbage() -> None:
    assert image_size(_encoded("JPEG", (30, 20))) == (30, 20)
    assert image_size(b"not an image") is None
    # A PNG signature with a zero-sized IHDR is not trusted: Pillow decides (and refuses).
    assert image_size(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(8)) is None
