"""The ``acme`` library's own client (``ClientV2``, what certbot is built on) against the
ACME actor behind TrustChain's HTTP edge (``serve_http``, plain http on [::1]): account,
order with a profile, http-01, finalize, the chain, renewal information, revocation and
deactivation, every request made and checked by the library itself.

The detector and the issuer are peers that answer at once (the validators approve; the
issuer signs with a CA of the test's own, answering as the issuer does): the whole tree
with real validators and certbot is ``test_certbot.py``'s.
"""

from __future__ import annotations

import dataclasses
import datetime
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
import trio
from acme import challenges, client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.detector.messages import ValidateChallenge
from trustchain.actors.issuer.messages import IssueCertificate, RevokeCertificate
from trustchain.config import AcmeConfig, Config, HttpConfig
from trustchain.protocols.http_server import serve_http
from trustchain.supervisors import SystemClock, handles

from .test_actor import Peer, Tree
from .test_core import Issuer


class AnsweringPeer(Peer):
    """The detector's and the issuer's answers, at once."""

    issuer = Issuer()

    @handles(ValidateChallenge)
    def validate(self, msg: ValidateChallenge) -> dict[str, Any]:
        now = self.clock.time()
        return {"account": msg.account, "type": msg.identifier_type, "kind": msg.kind,
                "identifier": msg.identifier, "validated_at": now,
                "expires": now + msg.valid_for_s, "decision": {"outcome": "approve"}}  # fmt: skip

    @handles(IssueCertificate)
    def issue(self, msg: IssueCertificate) -> dict[str, Any]:
        return self.issuer.answer(type("I", (), {"message": msg})(), self.clock.time())

    @handles(RevokeCertificate)
    def revoke(self, msg: RevokeCertificate) -> dict[str, Any]:
        return {"serial": msg.serial, "status": "revoked", "reason": msg.reason}


@pytest.fixture
def directory_url(tmp_path: Path) -> Iterator[str]:
    tree = Tree(tmp_path / "acme.sqlite3", clock=SystemClock(), peer=AnsweringPeer)
    config = dataclasses.replace(
        Config(), http=HttpConfig(tls=False, port=0, plain_port=-1),
        acme=AcmeConfig(database=tmp_path / "acme.sqlite3"),
    )  # fmt: skip
    started: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()

    async def serve() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_http, config, tree.registry)
            started.put((port, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    port, token, stop = started.get(timeout=30)
    try:
        yield f"http://[::1]:{port}/acme/directory"
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=30)
        tree.stop()


def test_the_acme_library_gets_renews_and_revokes_a_certificate(directory_url: str) -> None:
    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=jose.ES256, user_agent="trustchain-tests",
                               verify_ssl=False)  # fmt: skip
    acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
    assert "short" in acme.directory.meta.profiles
    registration = acme.new_account(messages.NewRegistration.from_data(
        email="admin@example.com", terms_of_service_agreed=True))  # fmt: skip
    assert registration.body.status == "valid"

    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())  # fmt: skip
    csr = crypto_util.make_csr(key_pem, ["www.trust.example.com", "api.trust.example.com"])
    order = acme.new_order(csr, profile="short")
    for authz in order.authorizations:
        (challenge,) = [c for c in authz.body.challenges
                        if isinstance(c.chall, challenges.HTTP01)]  # fmt: skip
        acme.answer_challenge(challenge, challenge.response(account_key))
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    order = acme.poll_and_finalize(order, deadline)
    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    leaf = chain[0]
    assert len(chain) == 2
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(hours=6)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == [
        "api.trust.example.com", "www.trust.example.com"]  # fmt: skip

    renew_at, _ = acme.renewal_time(order.fullchain_pem.encode())
    assert renew_at is not None
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert leaf.not_valid_before_utc + lifetime * 2 / 3 <= renew_at.astimezone(
        datetime.UTC) + datetime.timedelta(seconds=1)  # fmt: skip

    acme.revoke(leaf, 4)
    with pytest.raises(messages.Error) as caught:
        acme.revoke(leaf, 4)
    assert caught.value.code == "alreadyRevoked"
    assert acme.deactivate_registration(registration).body.status == "deactivated"
