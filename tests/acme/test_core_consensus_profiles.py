"""Profiles that need the four-proof consensus too (``acme.consensus_profiles``), in the
core without threads: the directory says which they are; their finalize must carry the
asset's proofs (``trustchainProofs``), which go to the issuer with the CSR and the
account and survive a restart with the order; other profiles refuse proofs. Whether the
proofs hold is the validators' business (``tests/acme/test_acme_client.py`` runs it
against the real quorum)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Issue
from trustchain.actors.acme.orders import PROOFS_FIELD
from trustchain.actors.acme.records import PROCESSING
from trustchain.config import ConfigError, load_config

from .test_core import DIRECTORY, ERROR, Client, approval, body, csr_for, make_core

PROFILES = {"default": 86_400, "asset": 86_400}
PROOFS = {"asset": "ab" * 32, "epoch": 7, "work_nonce": 1, "vdf_output": "01",
          "vdf_proof": "02", "vdf_prime_index": 0, "signature": "cd" * 64}  # fmt: skip


@pytest.fixture
def core(tmp_path: Path) -> AcmeCore:
    return make_core(tmp_path / "acme.sqlite3", profiles=PROFILES, consensus_profiles=["asset"])


@pytest.fixture
def client(core: AcmeCore) -> Client:
    client = Client(core)
    client.register()
    return client


def ready_order(client: Client, name: str, profile: str) -> dict[str, Any]:
    """An order of ``profile`` whose authorization the quorum validated: ready."""
    order = body(client.order(name, profile=profile))
    for validate in client.answer_challenge(order):
        client.core.validated(validate.challenge_id, approval(validate, client.now), client.now)
    order = body(client.post(order["finalize"].removesuffix("/finalize")))
    assert order["status"] == "ready", order
    return order


def finalize(client: Client, order: dict[str, Any], name: str, **extra: Any) -> dict[str, Any]:
    return client.post(order["finalize"], {"csr": csr_for(name), **extra})


def test_the_directory_says_which_profiles_need_the_consensus(client: Client) -> None:
    profiles = body(client.send("GET", DIRECTORY))["meta"]["profiles"]
    assert PROOFS_FIELD in profiles["asset"] and "four-proof consensus" in profiles["asset"]
    assert PROOFS_FIELD not in profiles["default"]


def test_a_consensus_profiles_finalize_without_proofs_is_unauthorized_and_changes_nothing(
    client: Client,
) -> None:
    order = ready_order(client, "p.example.com", "asset")
    reply = finalize(client, order, "p.example.com")
    assert reply["status"] == 403
    assert body(reply)["type"] == ERROR + "unauthorized"
    assert (
        PROOFS_FIELD in body(reply)["detail"] and "trustchain trust prove" in body(reply)["detail"]
    )
    assert not [e for e in client.effects if isinstance(e, Issue)]
    assert body(client.post(order["finalize"].removesuffix("/finalize")))["status"] == "ready"


@pytest.mark.parametrize("proofs", [[1, 2], "proofs", {}, {f"k{i}": i for i in range(17)}])
def test_proofs_that_are_not_an_object_of_fields_are_malformed(client: Client, proofs: Any) -> None:
    order = ready_order(client, "m.example.com", "asset")
    reply = finalize(client, order, "m.example.com", **{PROOFS_FIELD: proofs})
    assert reply["status"] == 400 and body(reply)["type"] == ERROR + "malformed"
    assert not [e for e in client.effects if isinstance(e, Issue)]


def test_proofs_go_to_the_issuer_with_the_account_and_outlive_a_restart(
    client: Client, tmp_path: Path
) -> None:
    order = ready_order(client, "q.example.com", "asset")
    reply = finalize(client, order, "q.example.com", **{PROOFS_FIELD: PROOFS})
    assert reply["status"] == 200, body(reply)
    (issue,) = [e for e in client.effects if isinstance(e, Issue)]
    assert issue.message.proofs == PROOFS and issue.message.acme_account is not None
    # a restart in the middle: the order is issued again with the same proofs
    again = make_core(tmp_path / "acme.sqlite3", profiles=PROFILES, consensus_profiles=["asset"])
    (resumed,) = [e for e in again.resume(client.now) if isinstance(e, Issue)]
    assert resumed.message == issue.message
    assert again.store.order(issue.order_id).status == PROCESSING  # type: ignore[union-attr]


def test_other_profiles_refuse_proofs_and_issue_on_domain_control_alone(client: Client) -> None:
    order = ready_order(client, "r.example.com", "default")
    reply = finalize(client, order, "r.example.com", **{PROOFS_FIELD: PROOFS})
    assert reply["status"] == 400 and body(reply)["type"] == ERROR + "malformed"
    assert "asset" in body(reply)["detail"]
    reply = finalize(client, order, "r.example.com")
    assert reply["status"] == 200, body(reply)
    (issue,) = [e for e in client.effects if isinstance(e, Issue)]
    assert issue.message.proofs is None and issue.message.acme_account is not None


def test_consensus_profiles_must_be_profiles(tmp_path: Path) -> None:
    path = tmp_path / "tc.toml"
    path.write_text('[acme]\nconsensus_profiles = ["nope"]\n')
    with pytest.raises(ConfigError, match=r"consensus_profiles.*nope"):
        load_config(path)
