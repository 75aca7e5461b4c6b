"""Every bench script in sequence, then the whole table of docs/performance.md.

Each script runs as its own process with its default sizes (or small ones with --quick, a
smoke run whose figures are not worth reporting). Its output is passed through as it
comes; its rows (the lines after ``_common.ROWS_MARKER``) are collected and printed again
at the end as one table, with the date, commit, load average and each script's wall time,
ready to paste into docs/performance.md. The default run took about 6½ minutes on the
2-core machine the report was written on, two thirds of it in the scale-out and the soak.

    .venv/bin/python bench/all.py [--quick] [--only pickup,soak]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

HERE = Path(__file__).resolve().parent
# In the order of the table: the script, its arguments for the real run, and for a --quick
# smoke run.
SCRIPTS: list[tuple[str, list[str], list[str]]] = [
    ("pickup.py", [], ["--n", "20"]),
    ("throughput.py", [], ["--n", "300"]),
    ("duty_cycle.py", [], ["--n", "10"]),
    # Issue 16's second duty-cycle target: 99.5 % at 1 s generation.
    (
        "duty_cycle.py",
        ["--generation-ms", "1000", "--n", "20"],
        ["--generation-ms", "1000", "--n", "4"],
    ),
    ("scale.py", [], ["--n", "100"]),
    ("soak.py", [], ["--n", "1000", "--every", "100"]),
    ("replay.py", [], ["--n", "200"]),
    ("roundtrip.py", [], ["--n", "50"]),
    ("bridge.py", [], ["--n", "100"]),
    ("growth.py", [], ["--quick"]),
    ("cancel.py", [], ["--n", "10"]),
    ("archive.py", [], ["--n", "5000"]),
    # Needs the bench extra (PgQueuer); fails with a clear message without it.
    ("pgqueuer_side_by_side.py", [], ["--n", "200", "--repeats", "1"]),
]


def run_script(script: str, args: list[str]) -> tuple[list[str], int, float]:
    """Run one script, echoing its output; (its table rows, exit status, wall seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    rows: list[str] = []
    in_rows = False
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        text = line.rstrip("\n")
        if text == c.ROWS_MARKER:
            in_rows = True
        elif in_rows and text.startswith("| "):
            if not text.startswith("| " + c.COLUMNS[0] + " |"):
                rows.append(text)
        elif in_rows and not text.startswith("|"):
            in_rows = False
    return rows, proc.wait(), time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures")
    p.add_argument("--only", help="comma-separated script names (without .py)")
    args = p.parse_args()
    chosen = [
        (script, quick if args.quick else full)
        for script, full, quick in SCRIPTS
        if not args.only or script.removesuffix(".py") in args.only.split(",")
    ]
    started = datetime.now(UTC)
    load_at_start = c.loadavg()
    rows: list[str] = []
    walls: list[str] = []
    for script, script_args in chosen:
        print(f"\n# bench/{script} {' '.join(script_args)}".rstrip(), flush=True)
        script_rows, rc, wall = run_script(script, script_args)
        rows += script_rows
        walls.append(f"{script} {wall:.0f} s" + (f" (FAILED: exit {rc})" if rc else ""))
    print("\n## the whole table" + (" (--quick: smoke sizes, not figures)" if args.quick else ""))
    print(f"date: {started:%Y-%m-%d %H:%M} UTC; commit {c.commit()}")
    print(f"machine: {c.machine()}")
    print(f"load average (1/5/15 min): {load_at_start} at start, {c.loadavg()} at end")
    print(f"wall time: {'; '.join(walls)}")
    print()
    for line in [*c.table_head(), *rows]:
        print(line)


if __name__ == "__main__":
    main()
