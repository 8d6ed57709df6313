"""lego (the Go ACME client Traefik and many others are built on; Debian's `lego`, installed
by `make test`) against a real ``trustchain run``, unchanged: tls-alpn-01 (RFC 8737) with
lego's own TLS responder, then http-01 with its own HTTP responder, then revocation. Each
validator of the quorum connects to lego itself; lego checks TrustChain's HTTPS with Go's
crypto/x509 (``LEGO_CA_CERTIFICATES``); the certificates verify with openssl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from trustchain.config import HsmConfig

from ..protocols.conftest import free_port
from .conftest import AcmeTree, acme_tree

pytestmark = pytest.mark.slow  # a tree with N = 4 validators takes seconds to start

TLS_ALPN_PORT = free_port()  # where lego answers tls-alpn-01 and the validators connect


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig) -> Iterator[AcmeTree]:
    acme = {"tls_alpn01_port": TLS_ALPN_PORT, "authorization_reuse_s": 0}
    with acme_tree(softhsm, acme, responder=False) as running:
        yield running


def lego(tree: AcmeTree, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("lego"), "lego is missing: `make test` installs it (apt: lego)"
    env = {**os.environ, "LEGO_CA_CERTIFICATES": str(tree.root)}
    command = ["lego", "--path", str(home), "--server", tree.directory_url,
               "--email", "admin@pki.example.com", "--accept-tos", *args]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def verify(tree: AcmeTree, home: Path, name: str) -> x509.Certificate:
    certificates = home / "certificates"
    leaf, issuer = certificates / f"{name}.crt", certificates / f"{name}.issuer.crt"
    checked = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tree.root), "-untrusted", str(issuer), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return x509.load_pem_x509_certificates(leaf.read_bytes())[0]


def test_lego_gets_a_certificate_over_tls_alpn01_then_http01_and_revokes_it(
    tree: AcmeTree, tmp_path: Path
) -> None:
    name = tree.fresh_name()
    tls = lego(tree, tmp_path, "--domains", name, "--tls", "--tls.port",
               f"[::1]:{TLS_ALPN_PORT}", "run")  # fmt: skip
    assert tls.returncode == 0, tls.stderr[-3000:]
    assert "tls-alpn-01" in tls.stderr
    first = verify(tree, tmp_path, name)
    names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [name]

    http = ["--http", "--http.port", f"[::1]:{tree.http01_port}"]
    again = lego(tree, tmp_path, "--domains", name, *http, "renew", "--days", "30",
                 "--no-random-sleep")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "http-01" in again.stderr
    second = verify(tree, tmp_path, name)
    assert second.serial_number != first.serial_number

    revoked = lego(tree, tmp_path, "--domains", name, "revoke")
    assert revoked.returncode == 0, revoked.stderr[-3000:]
    serial = format(second.serial_number, "x")
    record = tree.cli("send", "issuer", "get_certificate", "--args", f'{{"serial": "{serial}"}}')
    assert record.returncode == 0, record.stderr
    assert '"revoked"' in record.stdout
