"""The resolver's zone with the real detector: an asset that published its record is
answered under assets.<origin>, and one whose trust fails is left out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.detector import PublishAssetRecord
from trustchain.actors.resolver.actor import ASSET_REFRESH_S, ResolverActor
from trustchain.actors.resolver.messages import Resolve
from trustchain.actors.trust import space
from trustchain.actors.trust.errors import ProofReplayed
from trustchain.actors.trust.records import sign_record
from trustchain.config import ResolverConfig
from trustchain.supervisors import ChildSpec, Registry, start_root

from ..conftest import wait_until
from .conftest import ASSET
from .test_consensus_actors import Consensus, approved, refused


@pytest.fixture
def tree(hsm: Registry, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4)
    yield made
    made.stop()


@pytest.fixture
def resolver(tree: Consensus) -> Iterator[str]:
    name = f"resolver-{uuid.uuid4().hex[:8]}"
    config = ResolverConfig(enabled=True, origin="trust.example.com", records={})
    spec = ChildSpec(name, lambda ctx: ResolverActor.start(ctx, config, detector=tree.detector))
    root = start_root(tree.registry, f"dns-{name}", [spec], clock=tree.clock)
    yield name
    root.stop(block=True, timeout=30)


def answer(tree: Consensus, resolver: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = tree.registry.ask(resolver, Resolve(name, "AAAA"))
    return result


def test_a_published_asset_is_answered_and_leaves_the_zone_when_it_misuses_proofs(
    tree: Consensus, resolver: str, plot: space.Plot
) -> None:
    web = "web.assets.trust.example.com."
    assert answer(tree, resolver, web)["rcode"] == "NXDOMAIN"
    assert tree.register(plot).unwrap()["registered"]
    record = sign_record(ASSET, tree.epoch, "web", ["2001:db8::1", "2001:db8::2"])
    tree.ask(PublishAssetRecord(record.asset, record.name, list(record.addresses),
                                record.signature.hex()))  # fmt: skip
    tree.clock.advance(ASSET_REFRESH_S)  # the resolver asks the detector again
    wait_until(lambda: answer(tree, resolver, web)["rcode"] == "NOERROR", "the record served")
    got = answer(tree, resolver, web)["answer"]
    assert [rr.split()[-1] for rr in got] == ["2001:db8::1", "2001:db8::2"]

    csr = b"presented twice"
    proofs = tree.prove(csr)
    approved(tree.decide(csr, proofs))
    refused(tree.decide(csr, proofs), ProofReplayed)  # quarantined while that weighs
    tree.clock.advance(ASSET_REFRESH_S)
    wait_until(lambda: answer(tree, resolver, web)["answer"] == [], "the asset left out")
