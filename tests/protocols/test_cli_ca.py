"""`trustchain issue | revoke | crl | ca` against a running TrustChain, checked with openssl."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..ca.conftest import dns_csr, make_key
from .conftest import cli, write_config


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          timeout=30)  # fmt: skip


def test_issue_makes_the_key_here_and_writes_verifiable_files(running, short_tmp) -> None:
    config, _ = running
    out = short_tmp / "out"
    done = cli(config, "issue", "www.pki.example.com", "2001:db8::1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    key, cert, chain = (out / f"www.pki.example.com.{s}" for s in ("key", "crt", "chain.crt"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    root = short_tmp / "root.pem"
    assert cli(config, "ca", "root", "--out", str(root)).returncode == 0
    verified = openssl("verify", "-CAfile", root, "-untrusted", chain, cert)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The key written here is the one certified.
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    assert leaf.public_key() == private.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in san.get_values_for_type(x509.IPAddress)] == ["2001:db8::1"]


def test_issue_from_a_csr_then_revoke_shows_in_the_crl(running, short_tmp) -> None:
    config, _ = running
    csr = short_tmp / "req.pem"
    csr.write_bytes(dns_csr(make_key("ec-p384"), "api.pki.example.com"))
    done = cli(config, "issue", "--csr", str(csr), "--out", str(short_tmp))
    assert done.returncode == 0, done.stderr
    serial = done.stdout.split()[1]
    assert not (short_tmp / "api.pki.example.com.key").exists()  # the CSR's owner has the key
    revoked = cli(config, "revoke", serial, "--reason", "key_compromise")
    assert revoked.returncode == 0 and "revoked (key_compromise)" in revoked.stdout
    crl = short_tmp / "crl.pem"
    assert cli(config, "crl", "--out", str(crl)).returncode == 0
    root = short_tmp / "root.pem"
    cli(config, "ca", "root", "--out", str(root))
    checked = openssl("verify", "-crl_check", "-CAfile", root, "-CRLfile", crl, "-untrusted",
                      short_tmp / "api.pki.example.com.chain.crt",
                      short_tmp / "api.pki.example.com.crt")  # fmt: skip
    assert "certificate revoked" in checked.stdout + checked.stderr
    again = cli(config, "revoke", serial)
    assert again.returncode == 1 and "[already_revoked]" in again.stderr


def test_policy_refusals_print_the_rule(running, short_tmp) -> None:
    config, _ = running
    done = cli(config, "issue", "www.elsewhere.org", "--out", str(short_tmp))
    assert done.returncode == 1
    assert "[name_not_permitted]" in done.stderr and "Traceback" not in done.stderr
    assert not list(short_tmp.glob("*.crt"))


def test_ca_status_and_rotation(running) -> None:
    config, _ = running
    assert "cli-intermediate" in cli(config, "ca", "status").stdout
    done = cli(config, "ca", "rotate-intermediate")
    assert done.returncode == 0 and "cli-intermediate-2" in done.stdout
    status = cli(config, "ca", "status").stdout
    assert "cli-intermediate " in status or "cli-intermediate│" in status.replace(" ", "")
    assert "cli-intermediate-2" in status
    # --ca: a CA's CRL by key label (the former intermediate's too); an unknown one is refused
    old = cli(config, "crl", "--ca", "cli-intermediate")
    assert old.returncode == 0 and "BEGIN X509 CRL" in old.stdout
    unknown = cli(config, "crl", "--ca", "no-such-ca")
    assert unknown.returncode == 1 and "[issuer_not_valid]" in unknown.stderr


def test_trust_commands_say_when_the_consensus_is_not_running(running, softhsm) -> None:
    config, _ = running  # write_config turns trust.enabled off: no detector in the tree
    for args in (
        ("trust", "scores"),
        ("trust", "asset", "00" * 32),
        ("stake", "grant", "00" * 32, "5"),
    ):
        done = cli(config, *args)
        assert done.returncode == 1, done.stdout
        assert done.stderr == (
            "error: the running TrustChain has no detector: it runs without the four-proof "
            "consensus (trust.enabled = false in its config) [unknown_actor]\n"
        )
    # `issue` with a config that has the consensus on (the default) has no one to prove to
    other = config.parent / "other"
    other.mkdir()
    on = write_config(other, softhsm, trust={})
    done = cli(on, "--socket", str(config.parent / "ctl.sock"), "issue", "www.pki.example.com")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: the running TrustChain has no detector")
    assert done.stderr.endswith(
        ", but this command's config has it on: give both the same config [unknown_actor]\n"
    )
