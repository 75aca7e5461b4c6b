"""Slots: how many jobs a host runs at once, and which backend instances share them.

Every ``backends.<name>`` block may set ``slots`` (default 1) and ``device``. Instances that
name the same device share its slots: the local GPU backends (mock, comfyui) are on device
``gpu`` by default, so one GPU runs one job, as a single semaphore did before. A remote
backend (replicate) is on a device of its own by default (``remote:<name>``), so its jobs
never wait behind a GPU job, and ``slots: 4`` lets four predictions run at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from imagen_actors.core.errors import ConfigError

# The keys every backend block may carry besides its adapter's own settings.
SHARED_KEYS: Final = frozenset({"type", "slots", "device"})
LOCAL_TYPES: Final = frozenset({"mock", "comfyui"})
GPU: Final = "gpu"
DEFAULT_SLOTS: Final = 1
# More concurrent jobs than this on one device is a typo, not a plan (and each slot holds
# a lease, a connection and a task).
MAX_SLOTS: Final = 64
DEVICE_RULE: Final = "1-64 characters of letters, digits, '.', '_', ':' or '-'"


@attrs.frozen
class Pool:
    """One device's slots and the backend instances that share them."""

    device: str
    slots: int
    backends: tuple[str, ...]


def default_device(name: str, kind: object) -> str:
    return GPU if kind in LOCAL_TYPES else f"remote:{name}"


def pools(backends: Mapping[str, Mapping[str, Any]], where: str) -> tuple[Pool, ...]:
    """The device pools of ``backends`` (instance name -> block), sorted by device; a
    ConfigError naming the key and the fix for a bad ``slots`` or ``device``, and for two
    instances that share a device but set different ``slots``."""
    members: dict[str, list[str]] = {}
    sizes: dict[str, tuple[int, str | None]] = {}
    for name in sorted(backends):
        block = backends[name]
        device = block.get("device", default_device(name, block.get("type")))
        if not isinstance(device, str) or not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", device):
            raise ConfigError(
                f"backends.{name}.device {device!r} must be {DEVICE_RULE}, e.g. device: gpu "
                f"(instances naming the same device share its slots) (in {where})",
                key=f"backends.{name}.device",
            )
        raw = block.get("slots")
        if raw is not None and (
            isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_SLOTS
        ):
            raise ConfigError(
                f"backends.{name}.slots {raw!r} must be a whole number from 1 to {MAX_SLOTS}: "
                f"how many of its jobs run at once on device {device} (default "
                f"{DEFAULT_SLOTS}) (in {where})",
                key=f"backends.{name}.slots",
            )
        members.setdefault(device, []).append(name)
        if raw is None:
            continue
        earlier = sizes.get(device)
        if earlier is not None and earlier[0] != raw:
            raise ConfigError(
                f"backends.{name}.slots {raw} disagrees with backends.{earlier[1]}.slots "
                f"{earlier[0]}: both are on device {device}, whose slots they share; set the "
                f"same number on both, or give one its own device (in {where})",
                key=f"backends.{name}.slots",
            )
        sizes[device] = (raw, name)
    return tuple(
        Pool(device, sizes.get(device, (DEFAULT_SLOTS, None))[0], tuple(names))
        for device, names in sorted(members.items())
    )
