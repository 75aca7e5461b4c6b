"""The progress bar ``generate`` draws on a terminal's stderr.

Backends report ``(step, total)`` as the service does; ComfyUI's last ``progress`` frame
is often ``max - 1`` (measured on 0.3.64), so the bar cannot wait for ``step == total``
to go away: ``end()`` erases it once the job is over, and whatever is printed next (the
summary, an error) starts on a clean line.
"""

from __future__ import annotations

import uuid
from typing import Final, TextIO

import attrs

WIDTH: Final = 24


@attrs.define
class ProgressBar:
    stream: TextIO
    drawn: bool = False
    _length: int = 0

    def __call__(self, _job: uuid.UUID, step: int, total: int) -> None:
        filled = WIDTH * min(step, total) // max(1, total)
        text = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {step}/{total}"
        self.stream.write("\r" + text.ljust(self._length))
        self.stream.flush()
        self.drawn, self._length = True, max(self._length, len(text))
        if step >= total:
            self.end()

    def end(self) -> None:
        """Erase the bar (if one is drawn) and leave the cursor at the start of the line."""
        if self.drawn:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self.drawn = False
