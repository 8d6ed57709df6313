"""CRLs: reasons, content, both signing paths, openssl -crl_check, pkilint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import (
    RevokedEntry,
    SignatureInvalid,
    UnknownRevocationReason,
    assemble_crl,
    build_crl,
    crl_tbs,
    local_signer,
    parse_reason,
)

CA_KINDS = ["ec-p256", "ec-p384", "rsa-2048"]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("key_compromise", "key_compromise"), ("keyCompromise", "key_compromise"),
     ("Key-Compromise", "key_compromise"), ("superseded", "superseded"),
     ("cessationOfOperation", "cessation_of_operation"), ("unspecified", "unspecified")],
)  # fmt: skip
def test_reasons_are_read_in_snake_kebab_or_rfc_spelling(text, canonical):
    assert parse_reason(text) == canonical


@pytest.mark.parametrize(
    "text", ["bogus", "", "certificate_hold", "ca_compromise", "remove_from_crl", "aACompromise"]
)
def test_unknown_or_forbidden_reasons_are_refused(text):
    with pytest.raises(UnknownRevocationReason) as error:
        parse_reason(text)
    assert error.value.code == "unknown_revocation_reason"
    assert "key_compromise" in error.value.message  # says what to use instead


def entries(now: datetime) -> list[RevokedEntry]:
    return [
        RevokedEntry(0x2222, now - timedelta(hours=1), "superseded"),
        RevokedEntry(0x1111, now - timedelta(hours=2), "key_compromise"),
        RevokedEntry(0x3333, now - timedelta(minutes=5), "unspecified"),
    ]


def test_crl_lists_entries_with_reasons_number_aki_and_update_times(kit):
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC).replace(microsecond=0)
    crl = build_crl(issuer_cert=chain.intermediate, entries=entries(now), crl_number=42, now=now,
                    sign=local_signer(chain.intermediate_key))  # fmt: skip
    assert crl.issuer == chain.intermediate.subject
    assert crl.last_update_utc == now
    assert crl.next_update_utc == now + timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = chain.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert [r.serial_number for r in crl] == [0x1111, 0x2222, 0x3333]
    compromised = crl.get_revoked_certificate_by_serial_number(0x1111)
    assert compromised is not None
    assert compromised.revocation_date_utc == now - timedelta(hours=2)
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    unspecified = crl.get_revoked_certificate_by_serial_number(0x3333)
    assert unspecified is not None and len(unspecified.extensions) == 0  # BRs §7.2.2


@pytest.mark.parametrize("ca_kind", CA_KINDS)
def test_tbs_path_and_remote_key_path_give_the_same_crl_content(kit, ca_kind):
    chain = kit.chain(ca_kind)
    now = datetime.now(UTC)
    arguments = dict(issuer_cert=chain.intermediate, entries=entries(now), crl_number=7, now=now)
    tbs = crl_tbs(**arguments)
    signature = local_signer(chain.intermediate_key)(tbs.der, tbs.hash_name)
    split = assemble_crl(tbs.der, tbs.algorithm, signature,
                         issuer_public_key=chain.intermediate.public_key())  # fmt: skip
    direct = build_crl(sign=local_signer(chain.intermediate_key), **arguments)
    assert split.is_signature_valid(chain.intermediate.public_key())
    assert split.signature_algorithm_oid == direct.signature_algorithm_oid == tbs.algorithm.oid
    if ca_kind == "rsa-2048":  # PKCS#1 v1.5 is deterministic: the same bytes
        assert split.public_bytes(serialization.Encoding.DER) == direct.public_bytes(
            serialization.Encoding.DER
        )
    else:
        assert split.tbs_certlist_bytes == direct.tbs_certlist_bytes


def test_a_signature_from_the_wrong_key_yields_no_crl(kit):
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC)
    tbs = crl_tbs(issuer_cert=chain.intermediate, entries=[], crl_number=1, now=now)
    wrong = local_signer(chain.root_key)(tbs.der, tbs.hash_name)
    with pytest.raises(SignatureInvalid):
        assemble_crl(
            tbs.der, tbs.algorithm, wrong, issuer_public_key=chain.intermediate.public_key()
        )
    with pytest.raises(SignatureInvalid):
        build_crl(issuer_cert=chain.intermediate, entries=[], crl_number=1, now=now,
                  sign=local_signer(chain.root_key))  # fmt: skip


def test_crl_validity_and_number_are_bounded(kit):
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC)
    with pytest.raises(ValueError):
        crl_tbs(issuer_cert=chain.intermediate, entries=[], crl_number=1, now=now,
                validity=timedelta(days=11))  # fmt: skip
    with pytest.raises(ValueError):
        crl_tbs(issuer_cert=chain.intermediate, entries=[], crl_number=1 << 160, now=now)


@pytest.mark.parametrize("ca_kind", CA_KINDS)
def test_openssl_crl_check_reports_the_revoked_leaf_and_passes_the_other(kit, tmp_path, ca_kind):
    chain = kit.chain(ca_kind)
    root, intermediate = chain.write(tmp_path)
    revoked, good = chain.issue_for("ec-p256"), chain.issue_for("ec-p256")
    now = datetime.now(UTC)
    tbs = crl_tbs(issuer_cert=chain.intermediate, crl_number=3, now=now,
                  entries=[RevokedEntry(revoked.serial_number, now, "key_compromise")])  # fmt: skip
    crl = assemble_crl(tbs.der, tbs.algorithm,
                       local_signer(chain.intermediate_key)(tbs.der, tbs.hash_name))  # fmt: skip
    crl_file = tmp_path / "crl.pem"
    crl_file.write_bytes(kit.pem(crl))
    for name, cert in (("revoked.pem", revoked), ("good.pem", good)):
        (tmp_path / name).write_bytes(kit.pem(cert))
    # -crl_check checks the leaf only; the intermediate's own CRL is the root's business
    common = ("-crl_check", "-CRLfile", crl_file, "-CAfile", root, "-untrusted", intermediate)
    refused = kit.openssl_verify(*common, tmp_path / "revoked.pem")
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stderr
    accepted = kit.openssl_verify(*common, tmp_path / "good.pem")
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize("ca_kind", CA_KINDS)
def test_crl_passes_pkilint_crl_lint_with_the_baseline_requirements_profile(kit, ca_kind):
    chain = kit.chain(ca_kind)
    now = datetime.now(UTC)
    crl = build_crl(issuer_cert=chain.intermediate, entries=entries(now), crl_number=9, now=now,
                    sign=local_signer(chain.intermediate_key))  # fmt: skip
    assert kit.crl_findings(crl.public_bytes(serialization.Encoding.DER)) == []
