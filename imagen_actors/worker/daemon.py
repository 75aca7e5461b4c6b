"""The worker: five actors under one supervising nursery, wired by Trio memory channels.

Beside them, one probe per dependency (each backend instance and the object store): a
``HealthBoard`` shared by the actors says which are healthy. The preflight (each one's
``check()``) runs once at start-up; a failing one marks that dependency unhealthy (the
worker still starts, and waits for it), and the same check is the probe afterwards.

Shutdown is two-stage. ``stop_intake`` (first SIGTERM/SIGINT) cancels the Listener,
Claimer and Reaper; the Executor finishes its job, the Uploader drains,
then the pipeline returns. ``abort`` (second signal, or the grace period running out)
cancels the pipeline: in-flight jobs are requeued through an event on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Final

import trio

from imagen_actors.backends.registry import Backends
from imagen_actors.config import slots as cfg_slots
from imagen_actors.config.settings import Config
from imagen_actors.config.slots import Pool
from imagen_actors.core.errors import ConfigError
from imagen_actors.core.naming import validate_template
from imagen_actors.core.records import Checked
from imagen_actors.db.gateway import Gateway
from imagen_actors.observability.telemetry import Telemetry
from imagen_actors.storage.base import ObjectStore
from imagen_actors.worker.actors.claimer import claimer
from imagen_actors.worker.actors.executor import ExecutorSettings, executor
from imagen_actors.worker.actors.listener import listener
from imagen_actors.worker.actors.messages import GeneratedImage, Wake
from imagen_actors.worker.actors.outage import OutageTolerantStore
from imagen_actors.worker.actors.progress import ProgressObserver
from imagen_actors.worker.actors.reaper import Patience, reaper, requeue_own
from imagen_actors.worker.actors.slots import SlotBoard
from imagen_actors.worker.actors.supervisor import DEFAULT_POLICY, RestartPolicy, supervise
from imagen_actors.worker.actors.uploader import OutputSettings, UploaderSettings, uploader
from imagen_actors.worker.caller import caller_identity
from imagen_actors.worker.control import CancelNotices, control_listener
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.health import (
    STORE,
    DependencyFault,
    HealthBoard,
    Probe,
    probe_backoff,
    probing,
)

# One Wake buffered is enough: it means "look", and later ones coalesce into it.
WAKE_BUFFER: Final = 1
# A finished image is handed straight to an idle Uploader (there is one more Uploader
# than slots); a buffer would hold finished jobs on leases with nobody working on them.
UPLOAD_BUFFER: Final = 0


def uploader_count(pools: Sequence[Pool]) -> int:
    """One Uploader per Executor slot plus one: a finished image never waits for another
    slot's upload nor for its own slot's previous one (the GPU is already on the next
    job), and with a fast backend two uploads overlap their commits."""
    return 1 + sum(pool.slots for pool in pools)


log = logging.getLogger("imagen_actors.worker.daemon")


async def run_worker(
    cfg: Config,
    gateway: Gateway,
    store: ObjectStore,
    backends: Backends,
    worker_id: str,
    *,
    handle: WorkerHandle | None = None,
    observer: ProgressObserver | None = None,
    policy: RestartPolicy = DEFAULT_POLICY,
    task_status: trio.TaskStatus[WorkerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until the intake is stopped and the pipeline drains (or is aborted).

    Beside the pipeline run the worker's telemetry: metrics fed by the events committed
    through ``telemetry.gateway``, the ``worker.http`` endpoint and sd_notify (when
    $NOTIFY_SOCKET is set).
    """
    validate_template(cfg.output.naming)
    handle = handle or WorkerHandle(worker_id)
    telemetry = Telemetry(cfg, gateway, handle)
    async with trio.open_nursery() as beside:
        await beside.start(telemetry.run)
        try:
            await _run_pipeline(
                cfg,
                telemetry.gateway,
                store,
                backends,
                handle,
                worker_id,
                observer=observer,
                policy=policy,
                task_status=task_status,
            )
        finally:
            await telemetry.finish()
            telemetry.close()
            beside.cancel_scope.cancel()
    handle.pipeline_done.set()


async def _run_pipeline(
    cfg: Config,
    gateway: Gateway,
    store: ObjectStore,
    backends: Backends,
    handle: WorkerHandle,
    worker_id: str,
    *,
    observer: ProgressObserver | None,
    policy: RestartPolicy,
    task_status: trio.TaskStatus[WorkerHandle],
) -> None:
    w = cfg.worker
    board = HealthBoard([*backends.names, STORE])
    handle.dependencies = board
    probes = {name: backend_probe(backends, name) for name in backends.names}
    probes[STORE] = store_probe(store)
    await preflight(board, probes)
    # Registered before the first claim, so other workers never take this host's jobs as
    # unserved while it starts.
    await gateway.worker_seen(worker_id, backends.names, starting=True, health=board.snapshot())
    await requeue_own(gateway, worker_id)

    wake_send, wake_recv = trio.open_memory_channel[Wake](WAKE_BUFFER)
    # One Executor per slot of each device; outlives Claimer and Executor restarts.
    slots = SlotBoard(cfg_slots.pools(cfg.backends, cfg.source))
    upload_send, upload_recv = trio.open_memory_channel[GeneratedImage](UPLOAD_BUFFER)

    def sup(name: str, child: Callable[[], Awaitable[None]]) -> Awaitable[None]:
        return supervise(name, child, policy=policy, on_restart=handle.record_crash)

    async def stage(
        name: str, child: Callable[[], Awaitable[None]], closes: Sequence[trio.abc.AsyncResource]
    ) -> None:
        """Supervise one pipeline stage; when it ends, close what it fed downstream."""
        try:
            await sup(name, child)
        finally:
            for resource in closes:
                await resource.aclose()

    # Cancel requests for running jobs: the control listener pokes every lease renewal.
    notices = CancelNotices()
    exec_settings = ExecutorSettings(
        worker_id=worker_id,
        lease_s=w.lease_s,
        progress_persist_interval_s=w.progress_persist_interval_s,
        cancel_notice=notices.wait,
    )
    up_settings = UploaderSettings(
        worker_id=worker_id,
        lease_s=w.lease_s,
        caller=caller_identity(),
        cancel_notice=notices.wait,
        output=OutputSettings(
            directory=cfg.output.resolved_directory(),
            naming=cfg.output.naming,
            write_metadata_json=cfg.output.write_metadata_json,
        ),
    )
    # The Executor and Uploader hold a job across their writes: ride out a database outage
    # for as long as the lease lasts rather than crash and strand the job until it expires.
    holding = OutageTolerantStore(gateway, budget_s=w.lease_s)

    with handle.pipeline:
        async with trio.open_nursery() as pipeline:
            for pool in slots.pools:
                for index in range(pool.slots):
                    # Each slot's own clone: the Uploader's intake ends when the last closes.
                    mine = upload_send.clone()
                    pipeline.start_soon(
                        stage,
                        _executor_name(pool.device, index, pool.slots),
                        partial(
                            executor,
                            holding,
                            backends,
                            exec_settings,
                            device=pool.device,
                            slots=slots,
                            uploads=mine,
                            observer=observer,
                            health=board,
                        ),
                        [mine],
                    )
            upload_send.close()
            for index in range(uploader_count(slots.pools)):
                pipeline.start_soon(
                    stage,
                    "uploader" if index == 0 else f"uploader#{index + 1}",
                    lambda: uploader(
                        holding, store, up_settings, uploads=upload_recv, health=board
                    ),
                    [],
                )

            async def intake() -> None:
                with handle.intake:
                    async with trio.open_nursery() as n:
                        n.start_soon(
                            sup,
                            "listener",
                            lambda: listener(
                                gateway,
                                wake_send,
                                poll_interval_s=w.poll_interval_s,
                                listening=handle.listening,
                            ),
                        )
                        n.start_soon(
                            sup,
                            "claimer",
                            lambda: claimer(
                                gateway,
                                worker_id=worker_id,
                                lease_s=w.lease_s,
                                backends=backends.names,
                                backend_absent_after_s=w.backend_absent_after_s,
                                unserved_backend_grace_s=w.unserved_backend_grace_s,
                                slots=slots,
                                wakes=wake_recv,
                                health=board,
                            ),
                        )
                        n.start_soon(sup, "control", lambda: control_listener(gateway, notices))
                        n.start_soon(
                            sup,
                            "reaper",
                            lambda: reaper(
                                gateway,
                                store,
                                worker_id=worker_id,
                                interval_s=w.reap_interval_s,
                                backends=backends.names,
                                health=board,
                                patience=Patience(
                                    max_wait_s=w.max_wait_s,
                                    lease_s=w.lease_s,
                                    absent_after_s=w.backend_absent_after_s,
                                    unserved_grace_s=w.unserved_backend_grace_s,
                                ),
                            ),
                        )
                        backoff = probe_backoff(w.probe_min_s, w.probe_max_s)
                        for name, probe in probes.items():
                            n.start_soon(probing, board, name, probe, backoff)
                # Intake stopped: each Executor finishes its job, then finds no more work.
                await slots.aclose()
                log.info("intake stopped; draining the pipeline")

            pipeline.start_soon(intake)
            task_status.started(handle)


def _executor_name(device: str, index: int, slots: int) -> str:
    """ "executor" for the one GPU slot (as before slots existed), else executor[device#i]."""
    if device == cfg_slots.GPU and slots == 1:
        return "executor"
    return f"executor[{device}#{index}]"


# A preflight check that does not answer in this long counts as the dependency being down.
CHECK_TIMEOUT_S: Final = 30.0


def _checked(name: str, check: Callable[[], Awaitable[Checked]]) -> Probe:
    """A dependency's ``check()`` as a probe: bounded in time, and any way it fails (a
    fault it reports, an unset variable, an unexpected exception) is a DependencyFault."""

    async def probe() -> None:
        try:
            with trio.fail_after(CHECK_TIMEOUT_S):
                checked = await check()
        except trio.TooSlowError as exc:
            raise DependencyFault(
                f"no answer to its check within {CHECK_TIMEOUT_S:g}s", fault="dependency"
            ) from exc
        except ConfigError as exc:
            raise DependencyFault(f"not configured ({exc})", fault="configuration") from exc
        except Exception as exc:
            log.debug("check of %s raised", name, exc_info=True)
            raise DependencyFault(
                f"check failed: {type(exc).__name__}: {exc}", fault="dependency"
            ) from exc
        if not checked.ok:
            raise DependencyFault(checked.detail, fault=checked.fault or "dependency")

    return probe


def backend_probe(backends: Backends, name: str) -> Probe:
    """The backend's ``check()``: the same preflight ``imagen-actors backends`` runs."""
    return _checked(name, lambda: backends.get(name).check())


def store_probe(store: ObjectStore) -> Probe:
    """The store's ``check()``: the bucket exists and the key is accepted."""
    return _checked(STORE, store.check)


async def preflight(board: HealthBoard, probes: dict[str, Probe]) -> None:
    """Every dependency's check, concurrently, once at start-up: a failing one is marked
    unhealthy (the worker starts anyway; its probe takes over)."""

    async def one(name: str, probe: Probe) -> None:
        try:
            await probe()
        except DependencyFault as exc:
            board.mark_unhealthy(name, str(exc), fault=exc.fault)

    async with trio.open_nursery() as n:
        for name, probe in probes.items():
            n.start_soon(one, name, probe)
