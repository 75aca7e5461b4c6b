"""Exit codes shared by every command, so scripts can tell failures apart."""

from __future__ import annotations

from typing import Final

OK: Final = 0
JOB_FAILED: Final = 1  # the work ran and failed (backend error, job failed)
USAGE: Final = 2  # bad arguments (argparse's own code)
CONFIG: Final = 3  # configuration missing or wrong
DATABASE: Final = 4  # database unreachable or refused the operation
INTERRUPTED: Final = 130
