from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator

import pytest

from imagen_actors.observability.logs import (
    JsonFormatter,
    configure_logging,
    job_fields,
    wants_json,
)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_line_has_the_standard_fields_and_job_id(root_logger: logging.Logger) -> None:
    """One JSON object per line with ts, level, logger, msg, worker_id and job_id."""
    out = io.StringIO()
    configure_logging(True, logging.INFO, worker_id="host:w1", stream=out)
    job = uuid.uuid4()
    logging.getLogger("imagen_actors.uploader").info("job %s done", job, extra=job_fields(job))
    logging.getLogger("imagen_actors.x").debug("not at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["level"] == "info" and doc["logger"] == "imagen_actors.uploader"
    assert doc["msg"] == f"job {job} done" and doc["job_id"] == str(job)
    assert doc["worker_id"] == "host:w1" and doc["ts"].endswith("+00:00")


def test_json_line_carries_the_traceback() -> None:
    """An exception is one line too, with the traceback under 'exc'."""
    formatter = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert "ValueError: boom" in doc["exc"] and "worker_id" not in doc


def test_text_format_when_not_json(root_logger: logging.Logger) -> None:
    """Text mode writes a human line, not JSON."""
    out = io.StringIO()
    configure_logging(False, "WARNING", stream=out)
    logging.getLogger("imagen_actors.worker").warning("hello %s", "there")
    line = out.getvalue().strip()
    assert line.endswith("WARNING imagen_actors.worker: hello there")


def test_auto_format_is_json_unless_a_terminal() -> None:
    """auto picks JSON for a pipe or file (journald) and text for a terminal."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_json("auto", io.StringIO())
    assert not wants_json("auto", Tty())
    assert wants_json("json", Tty()) and not wants_json("text", io.StringIO())
