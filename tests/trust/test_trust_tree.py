"""The trust subtree as the composition root builds it: where it sits in TrustChain's
tree, that it starts (validators, then the detector, which needs the HSM and their
keys) and restarts one child alone, and that its stores are locked."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.composition import trust_children, trustchain_children
from trustchain.actors.detector import GetTrustParams, TrustScores
from trustchain.actors.hsm import HSMActor
from trustchain.actors.locks import stores_of
from trustchain.actors.validator import GetValidatorKey
from trustchain.config import Config, HsmConfig, TrustConfig
from trustchain.supervisors import (
    ChildSpec,
    Registry,
    RestartChild,
    Strategy,
    start_root,
    supervisor_spec,
)


def trust_config(directory: Path, n: int = 4) -> TrustConfig:
    return TrustConfig(enabled=True, validators=n, stake_authority_key=f"stake-{directory.name}",
                       database=directory / "trust" / "trust.sqlite3",
                       key_dir=directory / "trust" / "validators")  # fmt: skip


def test_the_trust_supervisor_starts_after_the_log_and_before_the_issuer(tmp_path: Path) -> None:
    enabled = dataclasses.replace(Config(), trust=trust_config(tmp_path, 7))
    names = [spec.name for spec in trustchain_children(enabled)]
    assert names == ["hsm", "ctlog", "trust", "issuer", "monitor", "renewal", "resolver", "acme"]
    assert "trust" in [spec.name for spec in trustchain_children(Config())]  # on by default
    disabled = dataclasses.replace(Config(), trust=TrustConfig(enabled=False))
    assert "trust" not in [spec.name for spec in trustchain_children(disabled)]
    inner = [spec.name for spec in trust_children(enabled.trust)]
    assert inner == [f"validator-{i}" for i in range(1, 8)] + ["detector"]


def test_the_trust_stores_are_locked_when_the_consensus_runs(tmp_path: Path) -> None:
    enabled = dataclasses.replace(Config(), trust=trust_config(tmp_path))
    keys = {store.key: store for store in stores_of(enabled)}
    assert keys["trust.key_dir"].directory and keys["trust.key_dir"].mode == 0o700
    assert not keys["trust.database"].directory
    disabled = dataclasses.replace(Config(), trust=TrustConfig(enabled=False))
    assert not {"trust.key_dir", "trust.database"} & {s.key for s in stores_of(disabled)}


@pytest.fixture
def tree(softhsm: HsmConfig, tmp_path: Path) -> Iterator[Registry]:
    registry = Registry()
    config = trust_config(tmp_path)
    root = start_root(registry, "root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, softhsm), start_timeout_s=60),
        supervisor_spec("trust", trust_children(config), Strategy.ONE_FOR_ONE),
    ])  # fmt: skip
    yield registry
    root.stop(block=True, timeout=30)


def test_the_composed_subtree_runs_and_restarts_one_validator_alone(tree: Registry) -> None:
    params: dict[str, Any] = tree.ask("detector", GetTrustParams())
    assert (params["validators"], params["f"], params["quorum"]) == (4, 1, 3)
    assert params["authority_key"].startswith("-----BEGIN PUBLIC KEY-----")
    key = tree.ask("validator-2", GetValidatorKey())
    tree.ask("trust", RestartChild("validator-2"))
    assert tree.ask("validator-2", GetValidatorKey()) == key  # its key file, reused
    assert tree.lookup("validator-2").restarts == 1
    assert tree.lookup("detector").restarts == tree.lookup("validator-1").restarts == 0
    scores = tree.ask("detector", TrustScores())
    assert [s["validator"] for s in scores] == [f"validator-{i}" for i in range(1, 5)]
