"""The worker's telemetry end to end: sd_notify, /metrics, /healthz, /readyz, JSON logs."""

from __future__ import annotations

import json
import logging
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from imagen_actors.db.gateway import Gateway
from imagen_actors.observability.logs import JsonFormatter
from imagen_actors.worker.handle import WorkerHandle
from tests.support.jobs import insert_job
from tests.support.pg import Cluster
from tests.support.worker import (
    make_config,
    running_worker,
    wait_all_terminal,
    wait_terminal,
    worker_process,
)

pytestmark = pytest.mark.db


async def http_get(handle: WorkerHandle, path: str) -> tuple[int, str]:
    """GET ``path`` from the worker's endpoint: (status, body)."""
    assert handle.http_address is not None
    host, port = handle.http_address
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
async def notify_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[trio.socket.SocketType]:
    """A datagram socket standing in for systemd, named by $NOTIFY_SOCKET."""
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    path = Path("/tmp") / f"imagen-notify-{uuid.uuid4().hex[:12]}.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink()


async def next_message(sock: trio.socket.SocketType, wanted: str) -> list[str]:
    """Datagrams received until one containing the line ``wanted`` (that one included)."""
    seen = []
    with trio.fail_after(10):
        while True:
            message = (await sock.recv(4096)).decode()
            seen.append(message)
            if wanted in message.splitlines():
                return seen


async def test_sd_notify_ready_watchdog_then_stopping(
    database_url: str, tmp_path: Path, notify_socket: trio.socket.SocketType
) -> None:
    """READY=1 once LISTEN is up, WATCHDOG=1 while healthy, STOPPING=1 on stop."""
    async with running_worker(make_config(tmp_path, database_url)) as (handle, _gw):
        before_ready = await next_message(notify_socket, "READY=1")
        assert all("WATCHDOG=1" not in m for m in before_ready)
        assert "STATUS=ready: listening as" in before_ready[-1]
        await next_message(notify_socket, "WATCHDOG=1")
        await next_message(notify_socket, "WATCHDOG=1")
        handle.stop_intake()
        stopping = await next_message(notify_socket, "STOPPING=1")
        assert stopping[-1].startswith("STOPPING=1\nSTATUS=stopping")
        with trio.fail_after(10):
            await handle.pipeline_done.wait()


async def test_stopping_is_sent_on_abort(
    database_url: str, tmp_path: Path, notify_socket: trio.socket.SocketType
) -> None:
    """Leaving running_worker (an abort) still sends STOPPING=1 on the way out."""
    async with running_worker(make_config(tmp_path, database_url)):
        await next_message(notify_socket, "READY=1")
    await next_message(notify_socket, "STOPPING=1")


async def test_metrics_match_the_jobs_run(database_url: str, tmp_path: Path) -> None:
    """/metrics parses; job counters, stage histograms and queue depth match the jobs run."""
    cfg = make_config(tmp_path, database_url, http="127.0.0.1:0")
    async with running_worker(cfg) as (handle, gw):
        for i in range(3):
            await insert_job(gw, f"a red kite number {i}")
        failing = await insert_job(gw, "a broken kite [fail:permanent]")
        await wait_all_terminal(gw)
        assert (await wait_terminal(gw, failing))["status"] == "failed"
        with trio.fail_after(10):
            while True:
                status, text = await http_get(handle, "/metrics")
                assert status == 200
                got = samples(text)
                if got[("imagen_jobs_total", (("outcome", "done"),))] == 3:
                    break
                await trio.sleep(0.05)
    assert got[("imagen_jobs_total", (("outcome", "failed"),))] == 1
    assert got[("imagen_jobs_total", (("outcome", "requeued"),))] == 0
    assert got[("imagen_stage_seconds_count", (("stage", "queue_wait"),))] == 4
    assert got[("imagen_stage_seconds_count", (("stage", "generation"),))] == 4
    assert got[("imagen_stage_seconds_count", (("stage", "upload"),))] == 3
    assert got[("imagen_gpu_busy_seconds_total", ())] > 0
    assert got[("imagen_queue_jobs", (("status", "done"),))] == 3
    assert got[("imagen_queue_jobs", (("status", "failed"),))] == 1
    assert got[("imagen_queue_jobs", (("status", "pending"),))] == 0
    assert not any(name == "imagen_actor_restarts_total" for name, _ in got)


async def test_healthz_and_readyz_follow_the_database(
    database_url: str, pg_cluster: Cluster, tmp_path: Path
) -> None:
    """/healthz is 200; /readyz is 200 while listening, 503 with the reason while the
    database refuses connections, 200 again once it is back, 503 once stopping."""
    cfg = make_config(tmp_path, database_url, http="127.0.0.1:0")
    async with (
        running_worker(cfg) as (handle, gw),
        Gateway.open(pg_cluster.admin_dsn) as admin,
    ):
        assert await http_get(handle, "/healthz") == (200, "ok\n")
        assert await http_get(handle, "/readyz") == (200, "ready\n")
        assert (await http_get(handle, "/nope"))[0] == 404
        db = (await gw.fetch_sql("SELECT current_database() AS d"))[0]["d"]
        await admin.execute_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        try:
            await admin.fetch_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2",
                db,
                handle.worker_id,
            )
            status, body = await http_get(handle, "/readyz")
        finally:
            await admin.execute_sql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        assert status == 503 and body.startswith("not ready: ")
        assert await http_get(handle, "/healthz") == (200, "ok\n")
        with trio.fail_after(20):
            while await http_get(handle, "/readyz") != (200, "ready\n"):
                await trio.sleep(0.2)
        handle.stop_intake()
        assert await http_get(handle, "/readyz") == (
            503,
            "not ready: stopping: finishing the job in flight\n",
        )


async def test_json_log_lines_carry_job_id(database_url: str, tmp_path: Path) -> None:
    """In-process: every line about a job is a JSON object with its job_id."""
    formatter = JsonFormatter(worker_id="w")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    logger = logging.getLogger("imagen_actors")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
            job = await insert_job(gw, "a logged heron")
            await wait_terminal(gw, job)
            with trio.fail_after(5):
                while not any(str(job) in line for line in lines):
                    await trio.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    docs = [json.loads(line) for line in lines]
    about_job = [d for d in docs if str(job) in d["msg"]]
    assert about_job and all(d["job_id"] == str(job) for d in about_job)
    assert {"ts", "level", "logger", "msg", "worker_id"} <= set(about_job[0])


async def test_worker_process_logs_json_lines_to_a_non_tty_stderr(
    database_url: str, tmp_path: Path
) -> None:
    """`imagen-actors worker` with stderr in a file writes only JSON lines, job_id included."""
    make_config(tmp_path, database_url, name="j")
    proc = worker_process(tmp_path / "imagen-j.yaml", name="host-j:j")
    try:
        async with Gateway.open(database_url) as gw:
            job = await insert_job(gw, "a journald pelican")
            assert (await wait_terminal(gw, job, timeout=40))["status"] == "done"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_path = tmp_path / "imagen-j.host-j_j.log"
    docs = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert all({"ts", "level", "logger", "msg"} <= set(d) for d in docs)
    assert all(d["worker_id"] == "host-j:j" for d in docs)
    done = [d for d in docs if d["logger"] == "imagen_actors.uploader"]
    assert done and done[0]["job_id"] == str(job) and "done" in done[0]["msg"]
    assert any(d["msg"] == "worker host-j:j stopped" for d in docs)
