"""Logging set-up: human lines on a terminal, one JSON object per line for journald.

A JSON line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, ``worker_id``
when known, ``job_id`` on every line about a job (pass ``extra=job_fields(job_id)``), any
other ``extra=`` field, and ``exc`` with the traceback when there is one. httpx's
per-request lines are kept to DEBUG runs.
"""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import msgspec

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_fields(job_id: uuid.UUID | str) -> dict[str, str]:
    """``extra=`` for a log call about one job: ``log.info("...", extra=job_fields(id))``."""
    return {"job_id": str(job_id)}


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_id: str | None = None) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.worker_id is not None:
            doc["worker_id"] = self.worker_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return msgspec.json.encode(doc, enc_hook=str).decode()


def configure_logging(
    json: bool,
    level: int | str = logging.INFO,
    *,
    worker_id: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one on ``stream`` (stderr) and return it."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(worker_id) if json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO ("HTTP Request: POST ..."): only a DEBUG run shows them.
    quiet = root.getEffectiveLevel() > logging.DEBUG
    logging.getLogger("httpx").setLevel(logging.WARNING if quiet else logging.DEBUG)
    return handler


def wants_json(log_format: str, stream: TextIO | None = None) -> bool:
    """``json``/``text`` as asked; ``auto`` is JSON unless ``stream`` (stderr) is a terminal."""
    if log_format != "auto":
        return log_format == "json"
    stream = stream if stream is not None else sys.stderr
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True
