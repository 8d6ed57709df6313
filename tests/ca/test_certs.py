"""Certificate building: TBS from create_unsigned, DER assembly, the chain
verifies with openssl and lints clean with pkilint."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustchain.actors import der
from trustchain.actors.ca import (
    BACKDATE,
    SCT_LIST_OID,
    ApprovedRequest,
    IssuancePolicy,
    IssuerNotValid,
    SignatureAlgorithm,
    SignatureInvalid,
    assemble,
    check_request,
    intermediate_tbs,
    leaf_tbs,
    local_signer,
    new_serial,
    parse_csr,
    precert_tbs_for_log,
    with_poison,
    with_sct_list,
)
from trustchain.actors.ca.certs import ID_ALG_UNSIGNED
from trustchain.actors.der import signature_algorithm_of

CA_KINDS = ["ec-p256", "ec-p384", "rsa-2048"]
LEAF_KINDS = ["ed25519", "rsa-2048", "ec-p256"]


def approved_for(kit, *names, key="ec-p256", **policy_options):
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,), **policy_options)
    return check_request(parse_csr(kit.dns_csr(kit.key(key), *names)), policy)


def fake_tls_sct_list(count: int = 2) -> bytes:
    """A TLS-encoded SignedCertificateTimestampList (RFC 6962 §3.2-3.3) of made-up SCTs."""
    scts = b""
    for index in range(count):
        signature = bytes(70)
        sct = (
            b"\x00" + bytes([index]) * 32 + (1_700_000_000_000 + index).to_bytes(8, "big")
            + b"\x00\x00" + b"\x04\x03" + len(signature).to_bytes(2, "big") + signature
        )  # fmt: skip
        scts += len(sct).to_bytes(2, "big") + sct
    return len(scts).to_bytes(2, "big") + scts


def fake_sct_list(count: int = 2) -> bytes:
    """The SCT list extension's value: a DER OCTET STRING around the TLS list."""
    return der.octet_string(fake_tls_sct_list(count))


def test_create_unsigned_encodes_id_alg_unsigned_as_a_12_byte_algorithm_identifier(kit):
    chain = kit.chain("ec-p256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(chain.intermediate.subject)
        .public_key(kit.key("ec-p256").public_key())
        .serial_number(1)
        .not_valid_before(datetime.now(UTC))
        .not_valid_after(datetime.now(UTC) + timedelta(hours=1))
    )
    unsigned = builder.create_unsigned()
    assert signature_algorithm_of(unsigned.tbs_certificate_bytes) == ID_ALG_UNSIGNED
    assert len(ID_ALG_UNSIGNED) == 12


@pytest.mark.parametrize("ca_kind", CA_KINDS)
def test_assembled_certificate_carries_the_signed_tbs_and_verifies(kit, ca_kind):
    chain = kit.chain(ca_kind)
    tbs = leaf_tbs(approved_for(kit, f"a.{kit.ZONE}"), chain.intermediate, 7, datetime.now(UTC),
                   kit.CRL_URL, ca_issuers_url="http://ca.example.com/i.cer")  # fmt: skip
    signature = local_signer(chain.intermediate_key)(tbs.der, tbs.hash_name)
    cert = assemble(tbs.der, tbs.algorithm, signature)
    assert cert.tbs_certificate_bytes == tbs.der
    assert cert.signature == signature
    assert cert.signature_algorithm_oid == tbs.algorithm.oid
    cert.verify_directly_issued_by(chain.intermediate)


def test_assemble_refuses_a_signature_from_another_key(kit):
    chain = kit.chain("ec-p256")
    tbs = leaf_tbs(approved_for(kit, f"a.{kit.ZONE}"), chain.intermediate, 7, datetime.now(UTC),
                   kit.CRL_URL, ca_issuers_url="http://ca.example.com/i.cer")  # fmt: skip
    wrong = local_signer(chain.root_key)(tbs.der, tbs.hash_name)
    with pytest.raises(SignatureInvalid):
        assemble(tbs.der, tbs.algorithm, wrong, issuer_public_key=chain.intermediate.public_key())
    with pytest.raises(ValueError):  # not the algorithm the tbs names
        assemble(tbs.der, SignatureAlgorithm.ECDSA_SHA384,
                 local_signer(chain.intermediate_key)(tbs.der, "sha384"),
                 issuer_public_key=chain.intermediate.public_key())  # fmt: skip


def test_serials_are_positive_random_and_fit_in_20_octets():
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(1 << 64 <= s < 1 << 128 for s in serials)
    assert max(serials).bit_length() > 120  # the top bits are used, not cleared


@pytest.mark.parametrize("ca_kind", CA_KINDS)
@pytest.mark.parametrize("leaf_kind", LEAF_KINDS)
def test_chain_verifies_with_openssl(kit, tmp_path, ca_kind, leaf_kind):
    chain = kit.chain(ca_kind)
    root, intermediate = chain.write(tmp_path)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(kit.pem(chain.issue_for(leaf_kind)))
    result = kit.openssl_verify("-CAfile", root, "-untrusted", intermediate, leaf)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


def test_leaf_has_the_subscriber_profile(kit):
    chain = kit.chain("ec-p256")
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC).replace(microsecond=0)
    approved = approved_for(kit, f"a.{kit.ZONE}", f"b.{kit.ZONE}")
    cert = chain.issue(approved, now=now)
    ext = cert.extensions
    assert cert.subject == x509.Name([])
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == list(approved.dns_names)
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = chain.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    crl_dp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl_dp[0].full_name == [x509.UniformResourceIdentifier(kit.CRL_URL)]
    with pytest.raises(x509.ExtensionNotFound):
        ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + approved.validity


def test_rsa_leaf_adds_key_encipherment_and_client_auth_adds_its_eku(kit):
    chain = kit.chain("ec-p256")
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,))
    csr = parse_csr(kit.dns_csr(kit.key("rsa-2048"), f"a.{kit.ZONE}"))
    cert = chain.issue(check_request(csr, policy, client_auth=True))
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_common_name_mode_puts_the_first_name_in_the_subject_and_san_not_critical(kit):
    chain = kit.chain("ec-p256")
    approved = approved_for(kit, f"first.{kit.ZONE}", kit.ZONE, subject_mode="cn_from_first_san")
    cert = chain.issue(approved)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"first.{kit.ZONE}"
    assert not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_leaf_cannot_outlive_its_issuer(kit):
    chain = kit.chain("ec-p256")
    late = chain.intermediate.not_valid_after_utc - timedelta(hours=1)
    with pytest.raises(IssuerNotValid):
        chain.issue(approved_for(kit, f"a.{kit.ZONE}"), now=late)


def test_name_constrained_intermediate_lets_openssl_refuse_names_outside_its_zones(kit, tmp_path):
    chain = kit.chain("ec-p256", (kit.ZONE,))
    root, intermediate = chain.write(tmp_path)
    inside, outside = tmp_path / "inside.pem", tmp_path / "outside.pem"
    inside.write_bytes(kit.pem(chain.issue_for("ec-p256", f"a.{kit.ZONE}")))
    rogue = ApprovedRequest(
        kit.key("ec-p256").public_key(), "ec-p256", ("www.example.com",), (), timedelta(hours=1)
    )  # fmt: skip  (bypasses the policy)
    outside.write_bytes(kit.pem(chain.issue(rogue)))
    assert kit.openssl_verify("-CAfile", root, "-untrusted", intermediate, inside).returncode == 0
    refused = kit.openssl_verify("-CAfile", root, "-untrusted", intermediate, outside)
    assert refused.returncode != 0 and "subtree violation" in refused.stderr


def test_name_constraints_are_critical_and_hold_only_dns_and_ip_subtrees(kit):
    """No directoryName subtree: Go's crypto/x509 refuses a critical extension with one."""
    chain = kit.chain("ec-p256", (kit.ZONE,))
    extension = chain.intermediate.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.permitted_subtrees == [x509.DNSName(kit.ZONE)]
    assert extension.value.excluded_subtrees == [
        x509.IPAddress(ipaddress.IPv4Network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.IPv6Network("::/0")),
    ]
    network = ipaddress.IPv6Network("2001:db8::/32")
    tbs = intermediate_tbs(
        subject=chain.intermediate.subject,
        public_key=chain.intermediate_key.public_key(),
        issuer_cert=chain.root,
        serial=new_serial(),
        now=datetime.now(UTC),
        validity=timedelta(days=1),
        permitted_zones=[kit.ZONE],
        permitted_ipv6_networks=[network],
        crl_url="http://ca.example.com/root.crl",
    )
    value = kit.sign(tbs, chain.root_key).extensions.get_extension_for_class(x509.NameConstraints)
    assert value.value.permitted_subtrees == [x509.DNSName(kit.ZONE), x509.IPAddress(network)]
    assert value.value.excluded_subtrees == [x509.IPAddress(ipaddress.IPv4Network("0.0.0.0/0"))]


def test_common_name_leaf_under_a_name_constrained_intermediate(kit, tmp_path):
    """The intermediate does not confine the subject (no directoryName subtree), and
    OpenSSL checks no CN against its dNSName subtrees when the SAN has DNS names; so the
    CN can only be one of the SAN names, which the constraints do cover."""
    chain = kit.chain("ec-p256", (kit.ZONE,))
    root, intermediate = chain.write(tmp_path)
    approved = approved_for(kit, f"a.{kit.ZONE}", subject_mode="cn_from_first_san")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(kit.pem(chain.issue(approved)))
    verified = kit.openssl_verify("-CAfile", root, "-untrusted", intermediate, leaf)
    assert verified.returncode == 0, verified.stderr
    rogue = dataclasses.replace(approved, subject_common_name="www.example.com")  # no policy
    with pytest.raises(ValueError, match="CN must be one of"):
        chain.issue(rogue)
    ip_first = check_request(
        parse_csr(kit.csr(kit.key("ec-p256"), [x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
                                                x509.DNSName(f"b.{kit.ZONE}")])),
        IssuancePolicy(permitted_zones=(kit.ZONE,), allow_ipv6_sans=True,
                       subject_mode="cn_from_first_san"))  # fmt: skip
    assert chain.issue(ip_first).subject.rfc4514_string() == "CN=2001:db8::7"


def with_directory_name_constraint(old: x509.Certificate, root_key) -> x509.Certificate:
    """The intermediate ``old`` as earlier versions made it (signed again by
    ``root_key``): its C/O also a permitted directoryName in its critical name
    constraints."""
    organization = x509.Name([a for a in old.subject if a.oid != NameOID.COMMON_NAME])
    zones = old.extensions.get_extension_for_class(x509.NameConstraints).value
    builder = x509.CertificateBuilder(
        old.issuer, old.subject, old.public_key(), new_serial(), old.not_valid_before_utc,
        old.not_valid_after_utc,
        [e for e in old.extensions if not isinstance(e.value, x509.NameConstraints)],
    ).add_extension(x509.NameConstraints(
        [x509.DirectoryName(organization), *(zones.permitted_subtrees or ())],
        zones.excluded_subtrees), critical=True)  # fmt: skip
    return builder.sign(root_key, hashes.SHA256())


def test_an_issuer_with_a_directory_name_constraint_refuses_a_subject_outside_it(kit):
    chain = kit.chain("ec-p256", (kit.ZONE,))
    legacy = dataclasses.replace(
        chain, intermediate=with_directory_name_constraint(chain.intermediate, chain.root_key)
    )
    assert legacy.issue(approved_for(kit, f"a.{kit.ZONE}")).subject == x509.Name([])
    approved = approved_for(kit, f"a.{kit.ZONE}", subject_mode="cn_from_first_san")
    with pytest.raises(IssuerNotValid):
        legacy.issue(approved)


def test_precertificate_and_final_certificate_share_the_rfc6962_tbs(kit):
    chain = kit.chain("ec-p256")
    approved, serial, now = approved_for(kit, f"a.{kit.ZONE}"), new_serial(), datetime.now(UTC)
    precert = chain.issue(approved, now=now, serial=serial, precert=True)
    poison = precert.extensions.get_extension_for_class(x509.PrecertPoison)
    assert poison.critical
    sct_list = fake_sct_list()
    final = chain.issue(approved, now=now, serial=serial, sct_list=sct_list)
    assert final.tbs_precertificate_bytes == precert_tbs_for_log(precert)
    assert precert_tbs_for_log(precert) == leaf_tbs(
        approved, chain.intermediate, serial, now, kit.CRL_URL,
        ca_issuers_url="http://ca.example.com/intermediate.cer",
    ).der  # fmt: skip
    scts = final.extensions.get_extension_for_oid(SCT_LIST_OID).value
    assert [sct.log_id for sct in scts] == [bytes([0]) * 32, bytes([1]) * 32]
    for malformed in (sct_list[:-1], fake_tls_sct_list(), der.octet_string(b"\x00\x05ab")):
        with pytest.raises(ValueError):
            chain.issue(approved, sct_list=malformed)
    with pytest.raises(ValueError):
        chain.issue(approved, precert=True, sct_list=sct_list)


@pytest.mark.parametrize("kind", ["precert", "final"])
def test_poison_and_sct_list_added_to_the_tbs_equal_what_the_builder_makes(kit, kind):
    """with_poison / with_sct_list splice DER; cryptography's builder is the reference."""
    chain = kit.chain("ec-p256")
    approved, serial, now = approved_for(kit, f"a.{kit.ZONE}"), new_serial(), datetime.now(UTC)
    plain = leaf_tbs(approved, chain.intermediate, serial, now, kit.CRL_URL,
                     ca_issuers_url="http://ca.example.com/i.cer")  # fmt: skip
    cert = local_assemble(plain, chain)
    builder = x509.CertificateBuilder(
        cert.issuer, cert.subject, cert.public_key(), cert.serial_number,
        cert.not_valid_before_utc, cert.not_valid_after_utc, list(cert.extensions),
    )  # fmt: skip
    if kind == "precert":
        ours = with_poison(plain)
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    else:
        ours = with_sct_list(plain, fake_sct_list())
        extension = x509.UnrecognizedExtension(SCT_LIST_OID, fake_sct_list())
        builder = builder.add_extension(extension, critical=False)
    reference = der.replace_signature_algorithm(
        builder.create_unsigned().tbs_certificate_bytes, ID_ALG_UNSIGNED,
        plain.algorithm.algorithm_identifier,
    )  # fmt: skip
    assert ours.der == reference
    oid = "1.3.6.1.4.1.11129.2.4.3" if kind == "precert" else SCT_LIST_OID.dotted_string
    assert der.strip_extension(ours.der, der.encode_oid(oid)) == plain.der


def local_assemble(tbs, chain):
    signature = local_signer(chain.intermediate_key)(tbs.der, tbs.hash_name)
    return assemble(tbs.der, tbs.algorithm, signature)


@pytest.mark.parametrize(
    ("options", "cert_type"),
    [({}, "DV-FINAL-CERTIFICATE"),
     ({"subject_mode": "cn_from_first_san"}, "DV-FINAL-CERTIFICATE"),
     ({"precert": True}, "DV-PRE-CERTIFICATE"),
     ({"sct_list": True}, "DV-FINAL-CERTIFICATE")],
)  # fmt: skip
def test_leaf_passes_pkilint_cabf_serverauth_lint(kit, options, cert_type):
    chain = kit.chain("ec-p256")
    policy_options = (
        {"subject_mode": options.pop("subject_mode")} if "subject_mode" in options else {}
    )
    if options.get("sct_list"):
        options["sct_list"] = fake_sct_list()
    cert = chain.issue(approved_for(kit, f"a.{kit.ZONE}", **policy_options), **options)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert kit.serverauth_findings(der, cert_type) == []
    assert kit.serverauth_findings(der) == []  # pkilint detects the same type


@pytest.mark.parametrize("ca_kind", CA_KINDS)
@pytest.mark.parametrize("zones", [None, ("pki.example.com",)])
def test_intermediate_passes_pkilint_as_a_tls_issuing_ca(kit, ca_kind, zones):
    """Linted as a TLS Subordinate CA (BRs §7.1.2.6), which may carry name constraints.
    Left to guess, pkilint takes a constrained one for a Technically Constrained TLS
    Subordinate CA (§7.1.2.5), whose §7.1.2.5.2 wants a permitted directoryName: that one
    finding is the price of chains Go accepts (see certs._name_constraints)."""
    der = kit.chain(ca_kind, zones).intermediate.public_bytes(serialization.Encoding.DER)
    assert kit.serverauth_findings(der, "INTERNAL-UNCONSTRAINED-TLS-CA") == []
    guessed = [] if zones is None else [("ERROR", "cabf.serverauth.ca.incomplete_name_constraints")]
    assert kit.serverauth_findings(der) == guessed


def test_intermediate_refuses_an_empty_zone_list_that_would_constrain_nothing(kit):
    chain = kit.chain("ec-p256")
    with pytest.raises(ValueError):
        intermediate_tbs(
            subject=chain.intermediate.subject,
            public_key=chain.intermediate.public_key(),
            issuer_cert=chain.root,
            serial=new_serial(),
            now=datetime.now(UTC),
            permitted_zones=[],
            crl_url="http://ca.example.com/root.crl",
        )


def test_root_passes_pkilint_as_a_root_ca(kit):
    root = kit.chain("ec-p256").root
    der = root.public_bytes(serialization.Encoding.DER)
    assert kit.serverauth_findings(der, "ROOT-CA") == []


def test_ipv6_san_is_issued_as_an_ip_address(kit):
    chain = kit.chain("ec-p256")
    names = [x509.DNSName(f"a.{kit.ZONE}"), x509.IPAddress(ipaddress.IPv6Address("2001:db8::7"))]
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,), allow_ipv6_sans=True)
    cert = chain.issue(check_request(parse_csr(kit.csr(kit.key("ec-p256"), names)), policy))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.IPv6Address("2001:db8::7")]
