"""certbot, unchanged, against a real ``trustchain run``: a certificate, its renewal and
its revocation, as a user on this machine would get them.

certbot answers http-01 itself (``--standalone`` on [::1]) at the port the tree's
validators fetch from; it trusts TrustChain's root through ``REQUESTS_CA_BUNDLE``.
The certificate is then checked with tools that are not TrustChain's: ``openssl
verify`` for the chain, cryptography for the SCT, the lifetime and the CRL.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.config import HsmConfig

from ..protocols.conftest import free_port
from .conftest import AcmeTree, acme_tree

pytestmark = pytest.mark.slow  # a tree with N = 4 validators, and certbot polls once a second

CERTBOT = str(Path(sys.executable).parent / "certbot")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig) -> Iterator[AcmeTree]:
    # certbot --standalone answers the challenges: no responder of ours on that port
    with acme_tree(softhsm, http01_port=free_port(), responder=False) as running:
        yield running


@pytest.fixture(scope="module")
def name(tree: AcmeTree) -> str:
    return tree.fresh_name()


def certbot(tree: AcmeTree, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            CERTBOT,
            *args,
            "--config-dir",
            str(tmp / "config"),
            "--work-dir",
            str(tmp / "work"),
            "--logs-dir",
            str(tmp / "logs"),
            "--non-interactive",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(tree.root)},
    )
    assert done.returncode == 0, f"certbot {args[0]}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def live(tree: AcmeTree, name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """certbot certonly for ``name``: its live/<name>/ directory."""
    tmp = tmp_path_factory.mktemp("certbot")
    certbot(
        tree,
        tmp,
        "certonly",
        "--standalone",
        "--http-01-address",
        "::1",
        "--http-01-port",
        str(tree.http01_port),
        "--server",
        tree.directory_url,
        "-d",
        name,
        "--agree-tos",
        "--register-unsafely-without-email",
    )
    return tmp / "config" / "live" / name


def leaf(live: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())


def test_certbot_gets_a_certificate_that_openssl_verifies(
    tree: AcmeTree, name: str, live: Path
) -> None:
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tree.root),
            "-untrusted",
            str(live / "chain.pem"),
            str(live / "cert.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify
    sans = leaf(live).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]


def test_the_certificate_carries_an_sct_from_trustchains_log(tree: AcmeTree, live: Path) -> None:
    info = json.loads(tree.cli("send", "ctlog", "get_log_info").stdout)
    log_key = serialization.load_pem_public_key(info["public_key"].encode())
    spki = log_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    log_id = hashlib.sha256(spki).digest()  # RFC 6962 §3.2
    scts = leaf(live).extensions.get_extension_for_oid(SCT_LIST).value
    assert [sct.log_id for sct in scts] == [log_id]
    proof = tree.cli("ct", "proof", str(live / "cert.pem"), "--chain", str(live / "chain.pem"))
    assert proof.returncode == 0, proof.stdout + proof.stderr  # and it is in the log


def test_the_certificate_lives_24_hours(live: Path) -> None:
    cert = leaf(live)
    # the CA backdates notBefore a little; the lifetime runs from issuance
    assert cert.not_valid_before_utc <= datetime.now(UTC) <= cert.not_valid_after_utc
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(hours=23) < lifetime <= timedelta(hours=24), cert.not_valid_after_utc


def test_renewal_gives_a_new_certificate_and_revocation_shows_in_the_crl(
    tree: AcmeTree, name: str, live: Path
) -> None:
    first = leaf(live)
    certbot(
        tree,
        live.parent.parent.parent,
        "renew",
        "--force-renewal",
        "--no-random-sleep-on-renew",
        "--cert-name",
        name,
    )
    renewed = leaf(live)
    assert renewed.serial_number != first.serial_number
    certbot(
        tree,
        live.parent.parent.parent,
        "revoke",
        "--cert-path",
        str(live / "cert.pem"),
        "--server",
        tree.directory_url,
        "--no-delete-after-revoke",
    )
    points = renewed.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = urllib.parse.urlsplit(points[0].full_name[0].value)  # type: ignore[index]
    # the CRL at the distribution point's path, on this tree's plain http port
    with urllib.request.urlopen(f"http://[::1]:{tree.plain_port}{url.path}", timeout=10) as got:
        crl = x509.load_der_x509_crl(got.read())
    issuer = x509.load_pem_x509_certificate((live / "chain.pem").read_bytes())
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(renewed.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is None
