"""Every kind of chain TrustChain hands out, accepted by four independent TLS stacks.

One real tree (SoftHSM, issuer, CT log, renewal, HTTPS edge on [::1]) per module; the
chains: a subscriber leaf, TrustChain's own HTTPS certificate, and a leaf issued after
an intermediate rotation. Each is checked by OpenSSL, GnuTLS, NSS and Go's
crypto/x509 (which refuses a critical nameConstraints extension holding any name type
it does not process, e.g. a directoryName), and each of them also completes a TLS
handshake with the HTTPS edge trusting only TrustChain's root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from trustchain.actors.issuer import IssueCertificate, RotateIntermediate
from trustchain.actors.renewal import GetBundle
from trustchain.config import HsmConfig

from ..ca.conftest import chain_of, dns_csr, make_key, pem
from ..ca.test_certs import with_directory_name_constraint
from ..protocols.test_http import ZONE, Edge, edge_config
from .verifiers import VERIFIERS, ChainFiles, Verifiers, build_go_checker

HTTPS_NAME = f"ct.{ZONE}"  # one of edge_config's names (the other is ::1)


@pytest.fixture(scope="session")
def verifiers(tmp_path_factory: pytest.TempPathFactory) -> Verifiers:
    go_checker = build_go_checker(tmp_path_factory.mktemp("go"))
    return Verifiers(tmp_path_factory.mktemp("verifiers"), go_checker)


@pytest.fixture(scope="module")
def edge(softhsm: HsmConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    e = Edge(edge_config(tmp_path_factory.mktemp("interop"), softhsm))
    yield e
    e.stop()


def issue(edge: Edge, directory: Path, name: str) -> ChainFiles:
    hostname = f"{name}.{ZONE}"
    csr = dns_csr(make_key("ec-p256"), hostname).decode()
    reply = edge.registry.ask("issuer", IssueCertificate(csr), timeout=30)
    return ChainFiles.write(directory, edge.root_pem, reply["chain"], reply["certificate"],
                            hostname)  # fmt: skip


@pytest.fixture(scope="module")
def chains(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ChainFiles]:
    """The three kinds of chain, made in this order (the rotation changes the issuer)."""
    work = tmp_path_factory.mktemp("chains")
    made = {"subscriber": issue(edge, work / "subscriber", "www")}
    bundle = edge.registry.ask("renewal", GetBundle("https"))
    made["https"] = ChainFiles.write(work / "https", edge.root_pem, bundle["chain_pem"],
                                     bundle["cert_pem"], HTTPS_NAME)  # fmt: skip
    rotated = edge.registry.ask("issuer", RotateIntermediate(), timeout=60)
    made["rotated"] = issue(edge, work / "rotated", "after-rotation")
    assert made["rotated"].intermediates.read_text() == rotated["certificate"]
    assert rotated["certificate"] != made["subscriber"].intermediates.read_text()
    return made


def test_the_intermediates_name_constraints_are_critical_and_name_only_dns_and_ip(
    chains: dict[str, ChainFiles],
) -> None:
    for files in chains.values():
        intermediate = x509.load_pem_x509_certificate(files.intermediates.read_bytes())
        extension = intermediate.extensions.get_extension_for_class(x509.NameConstraints)
        assert extension.critical
        constraints = extension.value
        names = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
        assert {type(n) for n in names} == {x509.DNSName, x509.IPAddress}


@pytest.mark.parametrize("kind", ["subscriber", "https", "rotated"])
@pytest.mark.parametrize("verifier", VERIFIERS)
def test_chain_is_accepted(
    verifiers: Verifiers, chains: dict[str, ChainFiles], verifier: str, kind: str
) -> None:
    verdict = verifiers.verify(verifier, chains[kind])
    assert verdict.accepted, str(verdict)


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_a_name_outside_the_certificate_is_refused(
    verifiers: Verifiers, chains: dict[str, ChainFiles], verifier: str, tmp_path: Path
) -> None:
    """The verifiers do check: the same leaf for another name fails (except in vfychain,
    which checks no name), and a leaf against an unrelated root fails in all four."""
    files = chains["subscriber"]
    elsewhere = ChainFiles(files.root, files.intermediates, files.leaf, f"other.{ZONE}")
    if verifier != "nss":
        assert not verifiers.verify(verifier, elsewhere).accepted
    other_root = tmp_path / "other-root.pem"
    other_root.write_bytes(pem(chain_of("ec-p256").root))  # same names, another key
    stranger = ChainFiles(other_root, files.intermediates, files.leaf, files.hostname)
    assert not verifiers.verify(verifier, stranger).accepted


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_handshake_with_the_https_edge(
    verifiers: Verifiers, chains: dict[str, ChainFiles], edge: Edge, verifier: str
) -> None:
    verdict = verifiers.handshake(verifier, chains["https"].root, edge.port, HTTPS_NAME)
    assert verdict.accepted, str(verdict)
    wrong = verifiers.handshake(verifier, chains["https"].root, edge.port, f"other.{ZONE}")
    assert not wrong.accepted, str(wrong)


def test_go_refuses_a_critical_directory_name_constraint(
    verifiers: Verifiers, tmp_path: Path
) -> None:
    """Why the intermediate holds no directoryName: one made as before this change (its
    C/O a permitted directoryName) is refused by Go, whatever the leaf."""
    chain = chain_of("ec-p256", (ZONE,))
    legacy = with_directory_name_constraint(chain.intermediate, chain.root_key)
    files = ChainFiles.write(tmp_path, pem(chain.root).decode(), pem(legacy).decode(),
                             pem(chain.issue_for("ec-p256", f"www.{ZONE}")).decode(),
                             f"www.{ZONE}")  # fmt: skip
    refused = verifiers.verify("go", files)
    assert not refused.accepted and "unhandled critical extension" in refused.output
    files = ChainFiles.write(tmp_path, pem(chain.root).decode(), pem(chain.intermediate).decode(),
                             files.leaf.read_text(), f"www.{ZONE}")  # fmt: skip
    assert verifiers.verify("go", files).accepted
