"""The key-type list is config's (CA_KEY_TYPES, SUBSCRIBER_KEY_TYPES); everyone else
agrees with it. And ``new_key`` / ``new_csr``: a key of a named type, a CSR for names."""

from __future__ import annotations

import ipaddress

import click
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from trustchain.actors.ca import (
    IssuancePolicy,
    check_request,
    key_type_of,
    new_csr,
    new_key,
    parse_csr,
)
from trustchain.actors.ca.policy import DEFAULT_KEY_TYPES
from trustchain.actors.hsm.token import KEY_PARAMETERS
from trustchain.config import CA_KEY_TYPES, SUBSCRIBER_KEY_TYPES, CaConfig, RenewalConfig
from trustchain.protocols.cli_ca import issue

from .conftest import ZONE


def test_the_hsm_can_make_exactly_the_ca_key_types():
    assert tuple(KEY_PARAMETERS) == CA_KEY_TYPES


def test_the_policy_allows_exactly_the_subscriber_key_types_by_default():
    assert frozenset(SUBSCRIBER_KEY_TYPES) == DEFAULT_KEY_TYPES
    assert IssuancePolicy(permitted_zones=(ZONE,)).allowed_key_types == DEFAULT_KEY_TYPES
    assert tuple(CaConfig().allowed_key_types) == SUBSCRIBER_KEY_TYPES


def test_the_cli_offers_exactly_the_subscriber_key_types():
    option = next(p for p in issue.params if p.name == "key_type")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == SUBSCRIBER_KEY_TYPES


def test_subscriber_key_types_are_the_ca_key_types_and_ed25519():
    assert (*CA_KEY_TYPES, "ed25519") == SUBSCRIBER_KEY_TYPES


def test_ca_and_renewal_keys_are_ca_key_types():
    for section in (CaConfig, RenewalConfig):
        field = section.__dataclass_fields__["key_type"]
        assert field.metadata["choices"] == CA_KEY_TYPES


@pytest.mark.parametrize("kind", SUBSCRIBER_KEY_TYPES)
def test_new_key_makes_a_key_of_the_named_type(kind):
    assert key_type_of(new_key(kind).public_key()) == kind


@pytest.mark.parametrize("kind", ["ec-p521", "rsa-1024", "dsa-2048", ""])
def test_new_key_refuses_a_type_outside_the_list(kind):
    with pytest.raises(ValueError, match="use one of ec-p256"):
        new_key(kind)


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_a_csr_from_new_csr_passes_the_default_policy(kind):
    policy = IssuancePolicy(permitted_zones=(ZONE,), allow_ipv6_sans=True)
    names = [f"www.{ZONE}", "2001:db8::1"]
    approved = check_request(parse_csr(new_csr(new_key(kind), names)), policy)
    assert approved.key_type == kind


def test_new_csr_puts_ip_addresses_and_dns_names_in_the_san_and_nothing_in_the_subject():
    csr = x509.load_pem_x509_csr(new_csr(new_key("ec-p256"), [f"a.{ZONE}", "2001:db8::7"]))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"a.{ZONE}"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("2001:db8::7")]
    assert csr.subject == x509.Name([])
    assert csr.is_signature_valid


def test_new_csr_takes_general_names_as_they_are_and_no_san_for_none():
    key = new_key("ec-p256")
    uri = x509.UniformResourceIdentifier("https://example.com/")
    csr = x509.load_pem_x509_csr(new_csr(key, [uri], common_name=f"a.{ZONE}"))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [uri]
    assert csr.subject.rfc4514_string() == f"CN=a.{ZONE}"
    bare = x509.load_pem_x509_csr(new_csr(key, None))
    assert len(bare.extensions) == 0


@pytest.mark.parametrize(
    ("kind", "hash_name"), [("ec-p256", "sha256"), ("ec-p384", "sha384"), ("rsa-2048", "sha256")]
)
def test_new_csr_hashes_to_match_the_key(kind, hash_name):
    csr = x509.load_pem_x509_csr(new_csr(new_key(kind), [f"a.{ZONE}"]))
    algorithm = csr.signature_hash_algorithm
    assert isinstance(algorithm, hashes.HashAlgorithm)
    assert algorithm.name == hash_name
