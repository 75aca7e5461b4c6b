"""Real worker processes for the bench scripts, and what /proc says about them.

``python -m imagen_actors worker --config FILE`` subprocesses, one per simulated host (its
own worker name), stopped with SIGTERM as systemd would; their RSS and CPU time read from
/proc/<pid>/status and /proc/<pid>/stat, and the whole machine's CPU use from /proc/stat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from imagen_actors.config import settings as config


@dataclass
class WorkerProcess:
    """A real ``imagen-actors worker`` process (one per simulated host)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn_worker(config_path: Path, name: str) -> WorkerProcess:
    """``python -m imagen_actors worker --config FILE`` as worker ``name``; stderr to a log."""
    env = {**os.environ, config.ENV_WORKER_NAME: name, "PYTHONUNBUFFERED": "1"}
    log = config_path.with_name(f"worker-{name}.log")
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagen_actors", "worker", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    return WorkerProcess(name, proc, log)


async def wait_listening(workers: Sequence[WorkerProcess], timeout: float = 60) -> None:
    """Until every worker has logged that it listens (it is connected and migrated)."""
    with trio.fail_after(timeout):
        for w in workers:
            while "listening" not in w.log.read_text(errors="replace"):
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited early:\n{w.log_tail()}")
                await trio.sleep(0.05)


def stop_workers(workers: Sequence[WorkerProcess], timeout: float = 30) -> None:
    """SIGTERM (finish the job in flight, then exit); SIGKILL whatever is left after that."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  worker {w.name} ignored SIGTERM; killing it", file=sys.stderr)
            w.proc.kill()
            w.proc.wait()


@contextmanager
def worker_processes(configs: Sequence[tuple[Path, str]]) -> Iterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    try:
        for path, name in configs:
            workers.append(spawn_worker(path, name))
        yield workers
    finally:
        stop_workers(workers)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process (VmRSS in /proc/<pid>/status; VmHWM: its peak), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a live process so far (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat, for a utilisation delta."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values) - idle), float(sum(values))
