"""The slot board: which devices have an Executor waiting for work, and the hand-over to it.

Each device pool (config/slots) runs one Executor per slot. An Executor waiting in
``next_work`` is a free slot; the Claimer claims only for backends whose device has one, so
a job is never ``running`` while it waits for a slot, and a remote backend's jobs never wait
behind the GPU's. The counts follow the Executors' own waits and deliveries, not tokens
held by the Claimer, so a Claimer or an Executor that crashes and restarts leaves nothing
to lose or to count twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from imagen_actors.config.slots import Pool
from imagen_actors.worker.actors.messages import ClaimedWork


class SlotBoard:
    def __init__(self, pools: Sequence[Pool]) -> None:
        self.pools = tuple(pools)
        self._device = {b: p.device for p in self.pools for b in p.backends}
        self._free = {p.device: 0 for p in self.pools}
        self._reserved = {p.device: 0 for p in self.pools}
        channels = {p.device: trio.open_memory_channel[ClaimedWork](0) for p in self.pools}
        self._send = {d: c[0] for d, c in channels.items()}
        self._recv = {d: c[1] for d, c in channels.items()}
        self._changed = trio.Event()

    def device_of(self, backend: str) -> str:
        return self._device[backend]

    def free(self, device: str) -> int:
        """Slots of ``device`` waiting for work."""
        return self._free[device]

    def offered(self, backends: Sequence[str]) -> list[str]:
        """Those of ``backends`` with a free slot on their device."""
        return [b for b in backends if b in self._device and self._free[self._device[b]] > 0]

    def changed(self) -> trio.Event:
        """Set at the next change: taken before reading ``offered``, it cannot miss one."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def next_work(self, device: str) -> ClaimedWork:
        """The Executor's side: be a free slot of ``device`` until a claimed job arrives.
        EndOfChannel once intake has stopped."""
        self._free[device] += 1
        self._notify()
        try:
            return await self._recv[device].receive()
        except BaseException:
            self._free[device] -= 1
            self._notify()
            raise

    async def hand_over(self, work: ClaimedWork) -> None:
        """The Claimer's side: give a claimed job to a free slot of its backend's device.
        The slot is counted taken here, when the job is delivered (a receive that got a job
        cannot fail afterwards), so the next claim never counts it free meanwhile."""
        device = self._device[work.submitted.backend]
        await self._send[device].send(work)
        self._free[device] -= 1

    async def aclose(self) -> None:
        """Intake stopped: the waiting Executors get EndOfChannel."""
        for channel in self._send.values():
            await channel.aclose()
