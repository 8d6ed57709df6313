"""Issuance policy: every refusal is a typed PolicyViolation naming its rule."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.actors import der
from trustchain.actors.ca import (
    BadCSRSignature,
    CSRTooLarge,
    DuplicateName,
    InvalidName,
    IssuancePolicy,
    KeyNotAllowed,
    MalformedCSR,
    NameNotPermitted,
    NoNames,
    PolicyViolation,
    TooManyNames,
    ValidityOutOfBounds,
    check_request,
    parse_csr,
)
from trustchain.actors.ca.policy import check_names, check_validity_seconds
from trustchain.config import ConfigError

ZONE = "pki.example.com"


def approve(kit, policy, *names, key="ec-p256", **kwargs):
    return check_request(parse_csr(kit.dns_csr(kit.key(key), *names)), policy, **kwargs)


# -- parsing and proof of possession ------------------------------------------


def test_parse_csr_accepts_pem_bytes_pem_text_and_der(kit):
    pem = kit.dns_csr(kit.key("ec-p256"), f"a.{ZONE}")
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    for form in (pem, pem.decode("ascii"), der, b"\n  " + pem):
        assert parse_csr(form).public_bytes(serialization.Encoding.DER) == der


def test_csr_larger_than_the_limit_is_refused_before_parsing():
    with pytest.raises(CSRTooLarge) as error:
        parse_csr(b"\x30" * 101, max_bytes=100)
    assert error.value.code == "csr_too_large"
    assert error.value.rule == "max_csr_bytes"


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"\x30\x03\x02\x01\x00", "caf\u00e9",
     b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"],
)  # fmt: skip
def test_bytes_that_are_not_a_csr_are_malformed(data):
    with pytest.raises(MalformedCSR) as error:
        parse_csr(data)
    assert error.value.code == "malformed_csr"


def test_csr_whose_signature_does_not_verify_has_no_proof_of_possession(kit, policy):
    pem = kit.dns_csr(kit.key("rsa-2048"), f"a.{ZONE}")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last octet of the PKCS#1 signature
    with pytest.raises(BadCSRSignature) as error:
        check_request(parse_csr(bytes(der)), policy)
    assert error.value.code == "bad_csr_signature"


# -- keys ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"])
def test_allowed_key_types_are_approved(kit, policy, kind):
    approved = approve(kit, policy, f"a.{ZONE}", key=kind)
    assert approved.key_type == kind


@pytest.mark.parametrize("kind", ["rsa-1024", "ec-p521"])
def test_weak_or_unlisted_keys_are_refused(kit, policy, kind):
    with pytest.raises(KeyNotAllowed) as error:
        approve(kit, policy, f"a.{ZONE}", key=kind)
    assert kind in error.value.message


def test_key_type_missing_from_the_policy_is_refused(kit):
    policy = IssuancePolicy(permitted_zones=(ZONE,), allowed_key_types=frozenset({"ec-p256"}))
    with pytest.raises(KeyNotAllowed):
        approve(kit, policy, f"a.{ZONE}", key="ec-p384")


def test_rsa_key_with_small_public_exponent_is_refused(policy):
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"a.{ZONE}")]), False)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(KeyNotAllowed) as error:
        check_request(csr, policy)
    assert error.value.rule == "rsa_exponent"


# -- names ---------------------------------------------------------------------


def test_names_are_lower_cased_and_lose_a_trailing_dot(kit, policy):
    approved = approve(kit, policy, f"WWW.{ZONE.upper()}.", ZONE)
    assert approved.dns_names == (f"www.{ZONE}", ZONE)


@pytest.mark.parametrize("name", ["www.example.com", f"evil{ZONE}", "test", f"{ZONE}.evil.com"])
def test_name_outside_the_permitted_zones_is_refused(kit, policy, name):
    with pytest.raises(NameNotPermitted) as error:
        approve(kit, policy, name)
    assert error.value.rule == "permitted_zones"
    assert error.value.message.startswith("permitted_zones:")


def test_wildcard_is_refused_unless_the_policy_allows_it(kit, policy):
    with pytest.raises(NameNotPermitted) as error:
        approve(kit, policy, f"*.{ZONE}")
    assert error.value.rule == "allow_wildcards"
    allowing = IssuancePolicy(permitted_zones=(ZONE,), allow_wildcards=True)
    assert approve(kit, allowing, f"*.{ZONE}").dns_names == (f"*.{ZONE}",)


@pytest.mark.parametrize("name", [f"w*.{ZONE}", f"a.*.{ZONE}", f"*.*.{ZONE}", "*"])
def test_wildcard_other_than_the_whole_leftmost_label_is_invalid(name):
    policy = IssuancePolicy(permitted_zones=(ZONE,), allow_wildcards=True)
    with pytest.raises(InvalidName):
        check_names([x509.DNSName(name)], policy)


@pytest.mark.parametrize(
    "name",
    [f"a_b.{ZONE}", f"-a.{ZONE}", f"a-.{ZONE}", f"a..{ZONE}", f"{'a' * 64}.{ZONE}",
     ".".join(["abcdefghi"] * 25) + f".{ZONE}", f"ab--cd.{ZONE}", f"xn--.{ZONE}",
     f"b\u00fccher.{ZONE}", f"a b.{ZONE}", "1.2.3.4", "", "."],
)  # fmt: skip
def test_names_that_are_not_ldh_host_names_are_invalid(policy, name):
    with pytest.raises(InvalidName) as error:
        # a SAN dNSName; non-ASCII cannot be built as one, so it goes in as CN text
        check_names([x509.DNSName(name) if name.isascii() else name], policy)
    assert error.value.code == "invalid_name"


def test_idna_a_labels_are_accepted(kit, policy):
    assert approve(kit, policy, f"xn--bcher-kva.{ZONE}").dns_names == (f"xn--bcher-kva.{ZONE}",)


def test_a_name_asked_twice_is_a_duplicate(kit, policy):
    with pytest.raises(DuplicateName):
        approve(kit, policy, f"a.{ZONE}", f"A.{ZONE}.")


def test_csr_without_san_uses_the_subject_common_name(kit, policy):
    csr = kit.csr(kit.key("ec-p256"), None, common_name=f"Host.{ZONE}")
    assert check_request(parse_csr(csr), policy).dns_names == (f"host.{ZONE}",)


def test_csr_without_san_or_common_name_has_no_names(kit, policy):
    with pytest.raises(NoNames):
        check_request(parse_csr(kit.csr(kit.key("ec-p256"), None)), policy)


def test_more_names_than_max_sans_are_refused(kit):
    policy = IssuancePolicy(permitted_zones=(ZONE,), max_sans=3)
    with pytest.raises(TooManyNames):
        approve(kit, policy, *(f"h{i}.{ZONE}" for i in range(4)))


def test_ipv4_san_is_never_permitted(kit):
    policy = IssuancePolicy(permitted_zones=(ZONE,), allow_ipv6_sans=True)
    for address in ("192.0.2.1", "::ffff:192.0.2.1"):
        names = [x509.IPAddress(ipaddress.ip_address(address))]
        with pytest.raises(NameNotPermitted) as error:
            check_request(parse_csr(kit.csr(kit.key("ec-p256"), names)), policy)
        assert error.value.rule == "ipv6_only"


def test_ipv6_san_needs_the_policy_to_allow_it(kit, policy):
    names = [x509.DNSName(f"a.{ZONE}"), x509.IPAddress(ipaddress.IPv6Address("2001:db8::1"))]
    csr = parse_csr(kit.csr(kit.key("ec-p256"), names))
    with pytest.raises(NameNotPermitted) as error:
        check_request(csr, policy)
    assert error.value.rule == "allow_ipv6_sans"
    allowing = IssuancePolicy(permitted_zones=(ZONE,), allow_ipv6_sans=True)
    assert check_request(csr, allowing).ip_addresses == (ipaddress.IPv6Address("2001:db8::1"),)


def test_ipv6_san_outside_the_permitted_networks_is_refused(kit):
    policy = IssuancePolicy(
        permitted_zones=(ZONE,),
        allow_ipv6_sans=True,
        permitted_ipv6_networks=(ipaddress.IPv6Network("2001:db8:1::/48"),),
    )
    for address in ("2001:db8:2::1", "ff02::1", "fe80::1"):
        names = [x509.IPAddress(ipaddress.IPv6Address(address))]
        with pytest.raises(NameNotPermitted):
            check_request(parse_csr(kit.csr(kit.key("ec-p256"), names)), policy)


def test_san_types_other_than_dns_and_ip_are_refused(kit, policy):
    names = [x509.DNSName(f"a.{ZONE}"), x509.RFC822Name(f"me@{ZONE}")]
    with pytest.raises(NameNotPermitted) as error:
        check_request(parse_csr(kit.csr(kit.key("ec-p256"), names)), policy)
    assert error.value.rule == "san_types"


# -- validity and the approved request ------------------------------------------


def test_validity_defaults_to_the_policy_default_and_must_be_within_bounds(kit, policy):
    assert approve(kit, policy, f"a.{ZONE}").validity == timedelta(hours=24)
    assert approve(kit, policy, f"a.{ZONE}", requested_validity=timedelta(hours=1)).validity == (
        timedelta(hours=1)
    )
    for bad in (timedelta(minutes=4), timedelta(hours=25), timedelta(0), -timedelta(hours=1)):
        with pytest.raises(ValidityOutOfBounds):
            approve(kit, policy, f"a.{ZONE}", requested_validity=bad)


@pytest.mark.parametrize(
    "seconds",
    [2**63, 2**63 - 1, -(2**63) - 1, 10**5000, 0, -1, 299, 86_401],
    ids=["2^63", "2^63-1", "-2^63-1", "10^5000", "0", "-1", "299", "86401"],
)  # timedelta(seconds=2**63) raised OverflowError: the issuer crashed before this check
def test_validity_in_seconds_is_refused_out_of_bounds_without_overflowing(policy, seconds):
    with pytest.raises(ValidityOutOfBounds, match="validity_s must be 300 to 86400 seconds"):
        check_validity_seconds(seconds, policy)


def test_validity_in_seconds_within_bounds_or_absent_is_approved(policy):
    assert check_validity_seconds(3600, policy) == timedelta(hours=1)
    assert check_validity_seconds(None, policy) == policy.default_validity


def _csr_with_duplicate_san(kit) -> bytes:
    """A correctly self-signed CSR carrying two subjectAltName extensions."""
    key = kit.key("ed25519")
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(f"a.{ZONE}")]), critical=False
    )
    usage = dict.fromkeys(["content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only",
                           "decipher_only"], False)  # fmt: skip
    builder = builder.add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
    csr = builder.sign(key, None)
    # KeyUsage's OID (2.5.29.15) becomes SAN's (2.5.29.17): same length, no length to mend
    info = csr.tbs_certrequest_bytes.replace(
        bytes.fromhex("0603551d0f"), bytes.fromhex("0603551d11")
    )
    algorithm = bytes.fromhex("300506032b6570")  # Ed25519
    return der.sequence(info, algorithm, der.bit_string(key.sign(info)))


def test_a_csr_with_a_duplicate_extension_is_malformed_not_a_crash(kit, policy):
    csr = parse_csr(_csr_with_duplicate_san(kit))  # x509.DuplicateExtension escaped before
    with pytest.raises(MalformedCSR):
        check_request(csr, policy)


def test_approved_request_carries_client_auth_and_the_common_name_mode(kit):
    policy = IssuancePolicy(permitted_zones=(ZONE,), subject_mode="cn_from_first_san")
    approved = approve(kit, policy, f"b.{ZONE}", f"a.{ZONE}", client_auth=True)
    assert approved.client_auth is True
    assert approved.subject_common_name == f"b.{ZONE}"
    assert (
        approve(kit, IssuancePolicy(permitted_zones=(ZONE,)), f"a.{ZONE}").subject_common_name
        is None
    )


def test_every_refusal_is_a_policy_violation_with_a_code_and_rule(kit, policy):
    with pytest.raises(PolicyViolation) as error:
        approve(kit, policy, "www.example.com")
    assert error.value.to_dict()["code"] == "name_not_permitted"
    assert error.value.to_dict()["details"]["rule"] == "permitted_zones"


@pytest.mark.parametrize(
    "settings_",
    [dict(permitted_zones=()), dict(permitted_zones=("*.example.com",)),
     dict(permitted_zones=("bad_zone",)),
     dict(permitted_zones=(ZONE,), min_validity=timedelta(days=2)),
     dict(permitted_zones=(ZONE,), allowed_key_types=frozenset({"rsa-1024"})),
     dict(permitted_zones=(ZONE,), subject_mode="full")],
)  # fmt: skip
def test_unusable_policy_settings_are_config_errors(settings_):
    with pytest.raises(ConfigError):
        IssuancePolicy(**settings_)


# -- properties --------------------------------------------------------------------

LDH = "abcdefghijklmnopqrstuvwxyz0123456789"
labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z").filter(lambda s: s[2:4] != "--")


@given(st.lists(labels, min_size=0, max_size=5), st.booleans())
def test_well_formed_names_inside_the_zone_are_accepted(parts, upper):
    name = ".".join([*parts, ZONE])
    name = name.upper() if upper else name
    policy = IssuancePolicy(permitted_zones=(ZONE,))
    assert check_names([x509.DNSName(name)], policy)[0] == (name.lower(),)


@given(st.lists(labels, min_size=0, max_size=3), st.text(min_size=1, max_size=5))
def test_labels_with_characters_outside_ldh_are_invalid(parts, bad):
    bad_chars = "".join(c for c in bad if not (c.isascii() and c.lower() in LDH + "-.")) or "_"
    name = ".".join([*parts, "x" + bad_chars + "y", ZONE])
    with pytest.raises(InvalidName):
        check_names([name], IssuancePolicy(permitted_zones=(ZONE,)))


@given(st.integers(min_value=64, max_value=300))
def test_labels_longer_than_63_are_invalid(length):
    with pytest.raises(InvalidName):
        check_names([f"{'a' * length}.{ZONE}"], IssuancePolicy(permitted_zones=(ZONE,)))


@given(st.text(max_size=300))
def test_any_text_as_a_name_is_accepted_or_refused_with_a_policy_violation(text):
    policy = IssuancePolicy(permitted_zones=(ZONE,), allow_wildcards=True, allow_ipv6_sans=True)
    try:
        check_names([text], policy)
    except PolicyViolation:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_are_malformed_or_too_large_and_nothing_else(data):
    with pytest.raises((MalformedCSR, CSRTooLarge)):
        parse_csr(data, max_bytes=1000)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_csrs_raise_only_policy_violations(kit, policy, data):
    pem = kit.dns_csr(kit.key("ed25519"), f"a.{ZONE}")  # Ed25519 signs deterministically
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        check_request(parse_csr(bytes(der)), policy)
    except PolicyViolation:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_validly_signed_requests_with_corrupted_content_raise_only_policy_violations(
    kit, policy, data
):
    # Corrupt the CertificationRequestInfo and sign it again, so the fuzzing gets
    # past proof of possession into the key, extension and name checks.
    key = kit.key("ed25519")
    names = [x509.DNSName(f"a.{ZONE}"), x509.IPAddress(ipaddress.IPv6Address("2001:db8::1"))]
    csr_der = x509.load_pem_x509_csr(kit.csr(key, names, common_name=f"a.{ZONE}")).public_bytes(
        serialization.Encoding.DER
    )
    info, algorithm, _ = der.children(csr_der, der.read_single(csr_der, der.SEQUENCE))
    body = bytearray(csr_der[info.start : info.end])
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    blob = der.sequence(
        bytes(body), csr_der[algorithm.start : algorithm.end], der.bit_string(key.sign(bytes(body)))
    )
    try:
        check_request(parse_csr(blob), policy)
    except PolicyViolation:
        pass


def test_a_subject_value_cryptography_refuses_to_decode_is_malformed_not_a_crash(kit, policy):
    # A common name whose value is tagged BIT STRING (cryptography raises TypeError on
    # reading it, not ValueError): found by the property test above, kept as a fixed case.
    key = kit.key("ed25519")
    csr_der = x509.load_pem_x509_csr(kit.csr(key, None, common_name=f"a.{ZONE}")).public_bytes(
        serialization.Encoding.DER
    )
    info, algorithm, _ = der.children(csr_der, der.read_single(csr_der, der.SEQUENCE))
    body = bytearray(csr_der[info.start : info.end])
    at = body.index(bytes([0x06, 0x03, 0x55, 0x04, 0x03])) + 5  # id-at-commonName, its value
    body[at] = 0x03  # BIT STRING
    blob = der.sequence(
        bytes(body), csr_der[algorithm.start : algorithm.end], der.bit_string(key.sign(bytes(body)))
    )
    with pytest.raises(MalformedCSR, match="subject cannot be read"):
        check_request(parse_csr(blob), policy)
