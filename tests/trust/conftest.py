"""What the consensus tests share: one HSM actor per module, beside the trees its tests
start (each a root of its own; ``trees`` stops them); the asset they prove as, and its
plot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.hsm import HSMActor
from trustchain.actors.trust import requests, space
from trustchain.config import HsmConfig
from trustchain.supervisors import ChildSpec, Registry, start_root

ASSET = ed25519.Ed25519PrivateKey.generate()
ASSET_KEY = requests.asset_key_of(ASSET)
ASSET_ID = ASSET_KEY.hex()


@pytest.fixture(scope="module")
def hsm(softhsm: HsmConfig) -> Iterator[Registry]:
    """One HSM actor for the module's trees (each tree a root of its own beside it)."""
    registry = Registry()
    root = start_root(registry, "hsm-root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, softhsm), start_timeout_s=60),
    ])  # fmt: skip
    yield registry
    root.stop(block=True, timeout=30)


@pytest.fixture(scope="module")
def plot() -> space.Plot:
    return space.plot(ASSET_KEY, 32, space.SpaceParams(cost=16, min_blocks=32))


@pytest.fixture
def trees(hsm: Registry) -> Iterator[list[Any]]:
    """Trees a test starts (``consensus.Consensus``); each stopped at its end."""
    made: list[Any] = []
    yield made
    for tree in made:
        tree.stop()
