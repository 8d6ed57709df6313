"""The resolver with the real detector: an asset that published its record is answered
under assets.<origin>, and one whose trust fails is left out; an upstream that answers
otherwise than the quorum is reported to the detector as a fault of that upstream."""

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
from ..resolver.upstreams import UpstreamServer
from .conftest import ASSET
from .consensus import Consensus, approved, refused


@pytest.fixture
def tree(hsm: Registry, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4)
    yield made
    made.stop()


def start_resolver(tree: Consensus, config: ResolverConfig) -> tuple[str, Any]:
    name = f"resolver-{uuid.uuid4().hex[:8]}"
    spec = ChildSpec(name, lambda ctx: ResolverActor.start(ctx, config, detector=tree.detector))
    return name, start_root(tree.registry, f"dns-{name}", [spec], clock=tree.clock)


@pytest.fixture
def resolver(tree: Consensus) -> Iterator[str]:
    config = ResolverConfig(enabled=True, origin="trust.example.com", records={})
    name, root = start_resolver(tree, config)
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


def test_an_upstream_outvoted_by_the_others_is_a_fault_the_detector_keeps(
    tree: Consensus,
) -> None:
    question = "www.example.org."
    truth, lie = {f"{question} AAAA": ["2001:db8::1"]}, {f"{question} AAAA": ["2001:db8::bad"]}
    upstreams = [UpstreamServer("udp", truth), UpstreamServer("tcp", truth),
                 UpstreamServer("udp", lie)]  # fmt: skip
    liar = upstreams[2].url
    config = ResolverConfig(enabled=True, upstreams=[u.url for u in upstreams],
                            upstream_timeout_s=1.0)  # fmt: skip
    name, root = start_resolver(tree, config)
    try:
        got = answer(tree, name, question)
        assert got["rcode"] == "NOERROR" and got["answer"][0].endswith("2001:db8::1")
        wait_until(lambda: liar in tree.status()["upstream_faults"], "the liar reported")
        status = tree.status()
        assert status["upstream_faults"][liar]["disagreements"] == 1
        assert list(status["upstream_faults"]) == [liar]  # the honest ones are not faulted
        assert status["alerts"]["upstream_disagreed"] == 1
    finally:
        root.stop(block=True, timeout=30)
        for upstream in upstreams:
            upstream.close()
