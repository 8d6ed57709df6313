"""The ``acme`` library's own client (``ClientV2``, what certbot is built on) against a
real ``trustchain run`` (the validators' quorum checks each http-01 challenge, the issuer
signs in the HSM and logs to CT): account, an order for two names with the ``short``
profile, finalize, the chain, renewal information (RFC 9773), revocation,
``alreadyRevoked`` and deactivation, every request made and checked by the library.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import josepy as jose
import pytest
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.config import HsmConfig

from .conftest import AcmeTree, acme_tree

pytestmark = pytest.mark.slow  # a tree with N = 4 validators takes seconds to start


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig) -> Iterator[AcmeTree]:
    with acme_tree(softhsm, {"authorization_reuse_s": 0}) as running:
        yield running


def test_the_acme_library_gets_renews_and_revokes_a_certificate(tree: AcmeTree) -> None:
    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=jose.ES256, user_agent="trustchain-tests",
                               verify_ssl=str(tree.root))  # fmt: skip
    acme = client.ClientV2(client.ClientV2.get_directory(tree.directory_url, net), net)
    assert "short" in acme.directory.meta.profiles
    registration = acme.new_account(messages.NewRegistration.from_data(
        email="admin@example.com", terms_of_service_agreed=True))  # fmt: skip
    assert registration.body.status == "valid"

    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())  # fmt: skip
    names = sorted([tree.fresh_name(), tree.fresh_name()])
    csr = crypto_util.make_csr(key_pem, names)
    order = acme.new_order(csr, profile="short")
    for authz in order.authorizations:
        (challenge,) = [c for c in authz.body.challenges
                        if isinstance(c.chall, challenges.HTTP01)]  # fmt: skip
        response, validation = challenge.response_and_validation(account_key)
        assert tree.responder is not None  # the validators fetch it there, each itself
        tree.responder.tokens[challenge.chall.encode("token")] = validation
        acme.answer_challenge(challenge, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    order = acme.poll_and_finalize(order, deadline)
    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    leaf = chain[0]
    assert len(chain) == 2
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc  # the short profile's,
    assert lifetime == datetime.timedelta(hours=6, seconds=60)  # not_before backdated 60 s
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == names

    renew_at, _ = acme.renewal_time(order.fullchain_pem.encode())
    assert renew_at is not None
    assert leaf.not_valid_before_utc + lifetime * 2 / 3 <= renew_at.astimezone(
        datetime.UTC) + datetime.timedelta(seconds=1)  # fmt: skip

    acme.revoke(leaf, 4)
    with pytest.raises(messages.Error) as caught:
        acme.revoke(leaf, 4)
    assert caught.value.code == "alreadyRevoked"
    assert acme.deactivate_registration(registration).body.status == "deactivated"
