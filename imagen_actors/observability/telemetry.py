"""What watches a running worker: metrics, the optional HTTP endpoint, systemd notifications.

``run_worker`` creates one ``Telemetry`` per worker, hands the actors ``telemetry.gateway``
(which reports every committed event to the metrics) and runs ``telemetry.run`` in a
nursery beside the pipeline; ``finish`` sends STOPPING=1 on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import trio

from imagen_actors.config.settings import Config
from imagen_actors.config.slots import LOCAL_TYPES
from imagen_actors.core.errors import DatabaseError
from imagen_actors.db.gateway import Gateway
from imagen_actors.observability.health import WorkerHealth
from imagen_actors.observability.http import Response, serve_http
from imagen_actors.observability.metrics import CONTENT_TYPE, WorkerMetrics
from imagen_actors.observability.observed import ObservedGateway
from imagen_actors.observability.sdnotify import Notifier, watchdog_interval_s

PING_TIMEOUT_S: Final = 2.0
QUERY_TIMEOUT_S: Final = 5.0
# How often the systemd STATUS= line is refreshed when no watchdog asks for more often.
STATUS_INTERVAL_S: Final = 10.0
log = logging.getLogger("imagen_actors.observability")


class Telemetry:
    def __init__(
        self,
        cfg: Config,
        gateway: Gateway,
        health: WorkerHealth,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.health = health
        self.http_spec = cfg.worker.http
        self.metrics = WorkerMetrics(
            health.worker_id,
            restarts=lambda: health.restarts,
            dependencies=health.dependencies_up,
            gpu_backends=[n for n, b in cfg.backends.items() if b.get("type") in LOCAL_TYPES],
        )
        self.notifier = Notifier(env)
        self.watchdog_s = watchdog_interval_s(env)
        self.gateway = ObservedGateway.wrap(
            gateway, on_commit=self.metrics.observe, on_listen=self._on_listen
        )
        self._stopping_sent = False

    def _on_listen(self, up: bool) -> None:
        self.health.listen_up = up

    # ---- health -------------------------------------------------------------------

    async def database_problem(self) -> str | None:
        """None when ``SELECT 1`` answers in time, else why not."""
        with trio.move_on_after(PING_TIMEOUT_S):
            try:
                await self.gateway.ping()
            except DatabaseError as exc:
                return f"database: {exc}"
            return None
        return f"database did not answer within {PING_TIMEOUT_S:.0f}s"

    def _not_listening(self) -> str | None:
        h = self.health
        if h.stopping.is_set():
            return "stopping: finishing the job in flight"
        if not h.listening.is_set():
            return "starting: LISTEN not up yet"
        if not h.listen_up:
            return "LISTEN connection lost; reconnecting"
        return None

    async def not_ready(self) -> str | None:
        """None when ready to take work, else the reason (for /readyz and STATUS=): a
        dependency that is down names itself ("flux down since 12:03:00: ...")."""
        return (
            self._not_listening()
            or self.health.crash_problem()
            or self.health.dependency_problem()
            or await self.database_problem()
        )

    async def refresh_queue_depth(self) -> None:
        with trio.move_on_after(QUERY_TIMEOUT_S):
            try:
                self.metrics.set_queue_depth(await self.gateway.status_counts())
            except DatabaseError as exc:
                log.debug("queue depth not refreshed: %s", exc)

    async def respond(self, path: str) -> Response:
        if path == "/healthz":
            return Response(200, b"ok\n")
        if path == "/readyz":
            reason = await self.not_ready()
            if reason is None:
                return Response(200, b"ready\n")
            return Response(503, f"not ready: {reason}\n".encode())
        if path == "/metrics":
            await self.refresh_queue_depth()
            return Response(200, self.metrics.render(), CONTENT_TYPE)
        return Response(404, b"not found: try /healthz, /readyz or /metrics\n")

    # ---- running ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve HTTP (bound before ``started``, so a taken port fails the start) and talk to
        systemd, until cancelled."""
        async with trio.open_nursery() as nursery:
            if self.http_spec:
                self.health.http_address = await nursery.start(
                    serve_http, self.http_spec, self.respond
                )
            if self.notifier.enabled:
                nursery.start_soon(self._systemd)
            task_status.started()

    async def _systemd(self) -> None:
        h = self.health
        await h.listening.wait()
        if not h.stopping.is_set():
            await self.notifier.ready(self._ready_status())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_stopping)
            await self._status_loop()

    def _ready_status(self) -> str:
        return f"ready: listening as {self.health.worker_id}"

    async def _watch_stopping(self) -> None:
        await self.health.stopping.wait()
        await self.finish()

    async def _status_loop(self) -> None:
        interval = min(self.watchdog_s or STATUS_INTERVAL_S, STATUS_INTERVAL_S)
        last = self._ready_status()
        while True:
            try:
                db = await self.database_problem()
            except Exception as exc:  # never let bookkeeping stop the worker
                log.exception("health check failed")
                db = f"health check failed: {exc!r}"
            if self.watchdog_s is not None and db is None:
                await self.notifier.watchdog()
            reason = (
                self._not_listening()
                or self.health.crash_problem()
                or self.health.dependency_problem()
                or db
            )
            status = reason or self._ready_status()
            if status != last and not self._stopping_sent:
                await self.notifier.status(status)
                last = status
            await trio.sleep(interval)

    async def finish(self) -> None:
        """STOPPING=1 (once), even from a cancelled scope."""
        if self._stopping_sent or not self.notifier.enabled:
            return
        self._stopping_sent = True
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.notifier.stopping("stopping: finishing the job in flight")

    def close(self) -> None:
        self.notifier.close()
