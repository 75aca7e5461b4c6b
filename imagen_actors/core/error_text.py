"""What ``imagen.jobs.error`` shows: one line, bounded, no HTML page, no server file paths.

The owner UI shows that column to the job's owner. The full text stays in the event
(``GenerationFailed.error``, ``JobFailed.error``, ``JobRequeued.error``) for the operator and
``replay``; the event also carries this shown form, so replay reproduces the column exactly.
"""

from __future__ import annotations

import re
from typing import Final

SHOWN_MAX: Final = 500
_HTML: Final = re.compile(r"<(?:!doctype|html|head|body)\b.*", re.IGNORECASE | re.DOTALL)
_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# Absolute paths of the server's files: /home/..., /usr/lib/..., C:\..., ~/...; not URLs.
_PATH: Final = re.compile(r"(?<![\w:/.])(?:~?/(?:[\w.@+-]+/)+[\w.@+-]*|[A-Za-z]:\\[^\s'\"]+)")
_SPACE: Final = re.compile(r"\s+")


def shown(text: str, limit: int = SHOWN_MAX) -> str:
    """One line of at most ``limit`` characters that says what went wrong."""

    def page(match: re.Match[str]) -> str:
        title = _TITLE.search(match.group(0))
        named = f" titled {_SPACE.sub(' ', title.group(1)).strip()!r}" if title else ""
        return f"(an HTML page{named})"

    line = _HTML.sub(page, text)
    line = _PATH.sub("<path>", line)
    line = _SPACE.sub(" ", line).strip()
    if len(line) <= limit:
        return line
    return line[: limit - 1].rstrip() + "…"
