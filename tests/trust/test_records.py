"""Asset records: an asset's name in the zone and its IPv6 addresses, signed by its own
key for one epoch; kept by the detector for the resolver, with the asset's trust."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import outcome
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.detector import AssetRecords, PublishAssetRecord
from trustchain.actors.trust import space
from trustchain.actors.trust.errors import (
    AssetRecordInvalid,
    NameTaken,
    NotRegistered,
    ProofReplayed,
)
from trustchain.actors.trust.records import check_record, sign_record
from trustchain.actors.trust.store import TrustStore
from trustchain.supervisors import Registry

from .consensus import ASSET, ASSET_ID, Consensus, approved, refused

OTHER = ed25519.Ed25519PrivateKey.generate()


def test_a_signed_record_checks_and_is_normalised() -> None:
    record = sign_record(ASSET, 7, "Web-1", ["2001:DB8:0:0::1", "2001:db8::2"])
    assert (record.name, record.addresses) == ("web-1", ("2001:db8::1", "2001:db8::2"))
    again = check_record(record.asset_key, 7, "web-1", ["2001:db8::1", "2001:db8::2"],
                         record.signature)  # fmt: skip
    assert again == record


@pytest.mark.parametrize("name", ["", "-a", "a-", "a.b", "a_b", "x" * 64, "xn--bcher-kva", "é"])
def test_a_name_is_one_ldh_label(name: str) -> None:
    with pytest.raises(AssetRecordInvalid, match="label"):
        sign_record(ASSET, 7, name, ["2001:db8::1"])


@pytest.mark.parametrize(
    "addresses",
    [[], ["192.0.2.1"], ["::ffff:192.0.2.1"], ["ff02::1"], ["::"], ["2001:db8::1"] * 2,
     [f"2001:db8::{i}" for i in range(1, 10)], ["not an address"]],
)  # fmt: skip
def test_addresses_are_distinct_ipv6_unicast(addresses: list[str]) -> None:
    with pytest.raises(AssetRecordInvalid):
        sign_record(ASSET, 7, "web", addresses)


def test_a_record_signed_by_another_key_or_for_another_epoch_is_refused() -> None:
    record = sign_record(OTHER, 7, "web", ["2001:db8::1"])
    with pytest.raises(AssetRecordInvalid, match="not signed by asset"):
        check_record(ASSET.public_key().public_bytes_raw(), 7, "web", ["2001:db8::1"],
                     record.signature)  # fmt: skip
    with pytest.raises(AssetRecordInvalid, match="for epoch 8"):
        check_record(record.asset_key, 8, "web", ["2001:db8::1"], record.signature)
    with pytest.raises(AssetRecordInvalid, match="for epoch 7"):
        check_record(record.asset_key, 7, "web", ["2001:db8::9"], record.signature)


def test_the_store_keeps_one_record_per_asset_and_a_name_for_its_first_holder(
    tmp_path: Path,
) -> None:
    store = TrustStore(tmp_path / "trust.sqlite3")
    try:
        store.put_asset_record(sign_record(ASSET, 7, "web", ["2001:db8::1"]))
        with pytest.raises(NameTaken, match="first"):
            store.put_asset_record(sign_record(OTHER, 7, "web", ["2001:db8::2"]))
        store.put_asset_record(sign_record(ASSET, 7, "www", ["2001:db8::3"]))  # it moves
        store.put_asset_record(sign_record(OTHER, 7, "web", ["2001:db8::2"]))  # now free
        assert [(r.name, r.addresses) for r in store.asset_records(7)] == [
            ("web", ("2001:db8::2",)), ("www", ("2001:db8::3",))
        ]  # fmt: skip
        store.put_asset_record(sign_record(ASSET, 8, "web", ["2001:db8::4"]))
        assert store.asset_records(7) == []  # a new epoch: the old records are gone
    finally:
        store.close()


@pytest.fixture
def tree(hsm: Registry, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4)
    yield made
    made.stop()


def publish(
    tree: Consensus, key: ed25519.Ed25519PrivateKey, name: str, *addresses: str
) -> outcome.Outcome:
    record = sign_record(key, tree.epoch, name, list(addresses))
    return tree.send(PublishAssetRecord(record.asset, record.name, list(record.addresses),
                                        record.signature.hex()))  # fmt: skip


def test_a_registered_asset_publishes_where_it_is_and_its_trust_comes_with_it(
    tree: Consensus, plot: space.Plot
) -> None:
    refused(publish(tree, ASSET, "web", "2001:db8::1"), NotRegistered)
    assert tree.register(plot).unwrap()["registered"]
    published = publish(tree, ASSET, "web", "2001:db8::1").unwrap()
    assert published["name"] == "web" and published["epoch"] == tree.epoch
    forged = sign_record(OTHER, tree.epoch, "web", ["2001:db8::66"])
    forgery = PublishAssetRecord(ASSET_ID, "web", ["2001:db8::66"], forged.signature.hex())
    refused(tree.send(forgery), AssetRecordInvalid)
    (record,) = tree.ask(AssetRecords())
    assert record["asset"] == ASSET_ID and record["addresses"] == ["2001:db8::1"]
    assert record["score"] > 0.5 and record["quarantined"] is False  # registered: a success

    csr = b"used twice"
    proofs = tree.prove(csr)
    approved(tree.decide(csr, proofs))
    refused(tree.decide(csr, proofs), ProofReplayed)  # the asset's doing
    (record,) = tree.ask(AssetRecords())
    assert record["quarantined"] is True  # out of the zone while that weighs
