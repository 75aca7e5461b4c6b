"""config/slots: which backend instances share a device, and how many jobs each device runs."""

from __future__ import annotations

from typing import Any

import pytest

from imagen_actors.config.slots import GPU, Pool, pools
from imagen_actors.core.errors import ConfigError


def test_local_backends_share_the_one_gpu_slot_and_remote_ones_get_their_own() -> None:
    got = pools(
        {
            "mock": {"type": "mock"},
            "comfy": {"type": "comfyui", "url": "http://gpu:8188"},
            "flux": {"type": "replicate", "slots": 4},
        },
        "test.yaml",
    )
    assert got == (Pool(GPU, 1, ("comfy", "mock")), Pool("remote:flux", 4, ("flux",)))


def test_a_named_device_is_shared_and_takes_the_slots_set_on_it() -> None:
    got = pools(
        {
            "a": {"type": "comfyui", "device": "gpu1", "slots": 2},
            "b": {"type": "comfyui", "device": "gpu1"},
            "c": {"type": "replicate", "device": "gpu"},
        },
        "test.yaml",
    )
    assert got == (Pool(GPU, 1, ("c",)), Pool("gpu1", 2, ("a", "b")))


@pytest.mark.parametrize(
    ("block", "key", "fix"),
    [
        ({"type": "mock", "slots": 0}, "backends.m.slots", "from 1 to 64"),
        ({"type": "mock", "slots": True}, "backends.m.slots", "whole number"),
        ({"type": "mock", "slots": "2"}, "backends.m.slots", "whole number"),
        ({"type": "mock", "slots": 65}, "backends.m.slots", "from 1 to 64"),
        ({"type": "mock", "device": ""}, "backends.m.device", "device: gpu"),
        ({"type": "mock", "device": "gpu 0"}, "backends.m.device", "letters, digits"),
    ],
)
def test_a_bad_slots_or_device_names_the_key_and_the_fix(
    block: dict[str, Any], key: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        pools({"m": block}, "test.yaml")
    assert caught.value.key == key
    assert (
        key in str(caught.value) and fix in str(caught.value) and "test.yaml" in str(caught.value)
    )


def test_two_instances_on_one_device_must_agree_on_its_slots() -> None:
    with pytest.raises(
        ConfigError, match=r"backends\.b\.slots 2 disagrees with backends\.a\.slots 1"
    ):
        pools({"a": {"type": "mock", "slots": 1}, "b": {"type": "comfyui", "slots": 2}}, "x")


def test_the_adapters_accept_the_shared_keys() -> None:
    from imagen_actors.backends.registry import build

    backend = build("m", {"type": "mock", "slots": 1, "device": "gpu"})
    assert backend.name == "m"
