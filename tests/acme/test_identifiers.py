"""actors/acme/identifiers.py: newOrder identifiers, finalize CSRs, ARI certificate ids."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.acme.identifiers import (
    cert_id,
    check_identifiers,
    csr_identifiers,
    parse_cert_id,
)
from trustchain.actors.acme.problems import ERROR_NS, AcmeProblem

ZONES = ["trust.example.com", "Example.NET."]
KEY = ec.generate_private_key(ec.SECP256R1())


def check(
    identifiers: Any,
    *,
    allow_wildcards: bool = False,
    allow_ipv6: bool = True,
    max_identifiers: int = 10,
) -> list[tuple[str, str]]:
    return check_identifiers(
        identifiers,
        ZONES,
        allow_wildcards=allow_wildcards,
        allow_ipv6=allow_ipv6,
        max_identifiers=max_identifiers,
    )


def refused(identifiers: Any, **kw: Any) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        check(identifiers, **kw)
    return caught.value


def dns(value: str) -> dict[str, str]:
    return {"type": "dns", "value": value}


def ip(value: str) -> dict[str, str]:
    return {"type": "ip", "value": value}


# --- newOrder identifiers ----------------------------------------------------------------


def test_names_in_or_under_a_zone_are_lower_cased_deduplicated_and_sorted() -> None:
    got = check(
        [dns("WWW.trust.example.com"), dns("trust.example.com"), dns("www.trust.example.com"),
         dns("a.b.example.net"), ip("2001:db8::1")]
    )  # fmt: skip
    assert got == [
        ("dns", "a.b.example.net"),
        ("dns", "trust.example.com"),
        ("dns", "www.trust.example.com"),
        ("ip", "2001:db8::1"),
    ]


@pytest.mark.parametrize(
    "value", ["example.com", "eviltrust.example.com", "trust.example.com.evil.org", "com"]
)
def test_a_name_outside_the_zones_is_rejected(value: str) -> None:
    problem = refused([dns(value)])
    assert problem.type == "rejectedIdentifier"
    assert "outside the zones" in problem.detail


@pytest.mark.parametrize(
    "value",
    ["-a.trust.example.com", "a-.trust.example.com", "a_b.trust.example.com",
     "a..trust.example.com", "x" * 64 + ".trust.example.com", "ab--c.trust.example.com",
     "a b.trust.example.com", ".trust.example.com", ""],
)  # fmt: skip
def test_a_name_that_is_not_ldh_is_rejected(value: str) -> None:
    assert refused([dns(value)]).type == "rejectedIdentifier"


def test_a_trailing_dot_is_refused_with_a_hint() -> None:
    problem = refused([dns("www.trust.example.com.")])
    assert "trailing dot" in problem.detail


def test_a_valid_a_label_is_accepted() -> None:
    # bücher -> xn--bcher-kva
    assert check([dns("xn--bcher-kva.trust.example.com")]) == [
        ("dns", "xn--bcher-kva.trust.example.com")
    ]


def test_an_invalid_a_label_is_rejected() -> None:
    problem = refused([dns("xn--a.trust.example.com")])
    assert problem.type == "rejectedIdentifier"
    assert "A-label" in problem.detail


def test_a_u_label_is_refused_naming_its_a_label() -> None:
    problem = refused([dns("bücher.trust.example.com")])
    assert problem.type == "rejectedIdentifier"
    assert "xn--bcher-kva.trust.example.com" in problem.detail


def test_wildcards_only_when_allowed_and_only_as_the_whole_leftmost_label() -> None:
    assert refused([dns("*.trust.example.com")]).type == "rejectedIdentifier"
    assert check([dns("*.Trust.example.com")], allow_wildcards=True) == [
        ("dns", "*.trust.example.com")
    ]
    assert check([dns("*.a.example.net")], allow_wildcards=True) == [("dns", "*.a.example.net")]
    for value in ("a.*.trust.example.com", "*a.trust.example.com", "*.*.trust.example.com",
                  "*", "*.com"):  # fmt: skip
        assert refused([dns(value)], allow_wildcards=True).type == "rejectedIdentifier", value


def test_ipv4_is_rejected_ipv6_only() -> None:
    for value in ("192.0.2.1", "::ffff:192.0.2.1"):
        problem = refused([ip(value)])
        assert problem.type == "rejectedIdentifier"
        assert "TrustChain issues IPv6 addresses only" in problem.detail


def test_ipv6_only_when_allowed() -> None:
    assert refused([ip("2001:db8::1")], allow_ipv6=False).type == "rejectedIdentifier"


def test_ipv6_must_be_in_rfc5952_canonical_form() -> None:
    assert check([ip("::1")]) == [("ip", "::1")]
    problem = refused([ip("2001:DB8:0:0::1")])
    assert problem.type == "malformed"
    assert "'2001:db8::1'" in problem.detail
    assert refused([ip("not-an-address")]).type == "malformed"
    assert refused([ip("fe80::1%eth0")]).type == "malformed"
    assert refused([ip("ff02::1")]).type == "rejectedIdentifier"


def test_other_identifier_types_are_unsupported() -> None:
    problem = refused([{"type": "email", "value": "a@trust.example.com"}])
    assert problem.type == "unsupportedIdentifier"


@pytest.mark.parametrize(
    "identifiers",
    [[], {"type": "dns"}, "trust.example.com", [dns("trust.example.com"), "x"],
     [{"type": "dns"}], [{"type": "dns", "value": 5}], None],
)  # fmt: skip
def test_anything_but_a_non_empty_list_of_type_value_objects_is_malformed(
    identifiers: Any,
) -> None:
    assert refused(identifiers).type == "malformed"


def test_more_identifiers_than_allowed_are_rejected() -> None:
    names = [dns(f"n{i}.trust.example.com") for i in range(4)]
    assert len(check(names, max_identifiers=4)) == 4
    problem = refused(names, max_identifiers=3)
    assert problem.type == "rejectedIdentifier"
    assert "at most 3" in problem.detail


def test_several_bad_identifiers_come_back_as_one_problem_with_subproblems() -> None:
    problem = refused(
        [dns("ok.trust.example.com"), dns("example.org"), ip("192.0.2.1"), dns("b.example.org")]
    )
    assert problem.type == "rejectedIdentifier"
    body = problem.to_json()
    assert [s["identifier"] for s in body["subproblems"]] == [
        dns("example.org"), ip("192.0.2.1"), dns("b.example.org")
    ]  # fmt: skip
    assert all(s["type"] == ERROR_NS + "rejectedIdentifier" for s in body["subproblems"])


def test_bad_identifiers_of_different_kinds_make_a_compound_problem() -> None:
    problem = refused([dns("example.org"), {"type": "email", "value": "a@b"}])
    assert problem.type == "compound"
    types = [s["type"] for s in problem.subproblems]
    assert types == [ERROR_NS + "rejectedIdentifier", ERROR_NS + "unsupportedIdentifier"]


def test_one_bad_identifier_is_its_own_problem_with_its_subproblem() -> None:
    problem = refused([dns("ok.trust.example.com"), dns("example.org")])
    assert problem.type == "rejectedIdentifier"
    assert [s["identifier"] for s in problem.subproblems] == [dns("example.org")]


# --- finalize's CSR ----------------------------------------------------------------------


def make_csr(names: list[x509.GeneralName], cn: str | None = None, key: Any = KEY) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_csr_names_are_its_sans_lower_cased_sorted_and_deduplicated() -> None:
    der = make_csr(
        [x509.DNSName("WWW.trust.example.com"), x509.DNSName("www.trust.example.com"),
         x509.IPAddress(ipaddress.ip_address("2001:db8:0:0::1")), x509.DNSName("a.example.net")],
        cn="www.trust.example.com",
    )  # fmt: skip
    csr, names = csr_identifiers(der)
    assert isinstance(csr, x509.CertificateSigningRequest)
    assert names == [
        ("dns", "a.example.net"),
        ("dns", "www.trust.example.com"),
        ("ip", "2001:db8::1"),
    ]


def test_csr_names_match_the_orders_identifiers() -> None:
    order = check([dns("WWW.trust.example.com"), ip("2001:db8::1")])
    der = make_csr([x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                    x509.DNSName("www.trust.example.com")])  # fmt: skip
    assert csr_identifiers(der)[1] == order


def bad_csr(der: bytes) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as caught:
        csr_identifiers(der)
    assert caught.value.type == "badCSR", caught.value.detail
    return caught.value


def test_unparsable_csr_is_bad_csr() -> None:
    bad_csr(b"")
    bad_csr(b"\x30\x03\x02\x01\x01")
    bad_csr(make_csr([x509.DNSName("a.trust.example.com")]) + b"\x00")


def test_csr_with_a_broken_self_signature_is_bad_csr() -> None:
    der = bytearray(make_csr([x509.DNSName("a.trust.example.com")]))
    der[-5] ^= 0x01  # inside the signature
    assert "self-signature" in bad_csr(bytes(der)).detail


def test_csr_with_ipv4_is_bad_csr() -> None:
    bad_csr(make_csr([x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]))


def test_csr_cn_must_be_one_of_its_sans() -> None:
    assert (
        "CN" in bad_csr(make_csr([x509.DNSName("a.trust.example.com")], cn="b.example.net")).detail
    )
    _, names = csr_identifiers(make_csr([x509.IPAddress(ipaddress.ip_address("::1"))], cn="::1"))
    assert names == [("ip", "::1")]


def test_csr_without_names_or_with_other_kinds_is_bad_csr() -> None:
    bad_csr(make_csr([]))
    bad_csr(make_csr([x509.DNSName("a.trust.example.com"), x509.RFC822Name("a@b.example")]))


# --- ARI certificate ids (RFC 9773 §4.1) -------------------------------------------------

# RFC 9773 Appendix A: AKI keyIdentifier 69:88:5B:..:C8:D4, serial 0x0087654321.
RFC9773_EXAMPLE = b"""-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
"""
RFC9773_CERT_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_cert_id_of_the_rfc9773_example() -> None:
    certificate = x509.load_pem_x509_certificate(RFC9773_EXAMPLE)
    assert cert_id(certificate) == RFC9773_CERT_ID
    key_identifier, serial = parse_cert_id(RFC9773_CERT_ID)
    assert key_identifier.hex(":").upper() == (
        "69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4"
    )
    assert serial == 0x87654321


def make_certificate(serial: int, with_aki: bool = True) -> x509.Certificate:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
    )
    if with_aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 0x8000, 2**159 - 1, 0x1234_5678_9ABC])
def test_cert_id_round_trips(serial: int) -> None:
    certificate = make_certificate(serial)
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert parse_cert_id(cert_id(certificate)) == (aki.key_identifier, serial)


def test_serial_octets_are_the_der_integer_content() -> None:
    assert cert_id(make_certificate(0x80)).endswith(".AIA")  # 00 80
    assert cert_id(make_certificate(0x7F)).endswith(".fw")  # 7f


def test_cert_id_needs_an_authority_key_identifier() -> None:
    with pytest.raises(ValueError, match="authority key identifier"):
        cert_id(make_certificate(5, with_aki=False))


@pytest.mark.parametrize(
    "text",
    ["", "aYhba4dGQEHhs3uEe6CuLN4ByNQ", "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE=", "a/b.AQ",
     ".AIdlQyE", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.", "a.b.c", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AACHZUMh",
     "aYhba4dGQEHhs3uEe6CuLN4ByNQ.gA", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AA"],
    ids=["empty", "one-part", "padded", "not-b64url", "no-aki", "no-serial", "three-parts",
         "non-minimal", "negative", "zero"],
)  # fmt: skip
def test_anything_else_is_a_malformed_cert_id(text: str) -> None:
    with pytest.raises(AcmeProblem) as caught:
        parse_cert_id(text)
    assert caught.value.type == "malformed"
