"""A restart in the middle of an order loses nothing: ``kill -9`` of ``trustchain run``
while the validators are checking a challenge, and again while the order is ready, then
a new ``trustchain run`` on the same stores; the ``acme`` library's client, which only
retries (its old nonce is ``badNonce``, which it retries with the fresh one), finishes
the order and gets a certificate that verifies.

The challenge's responder holds its first request until the process is gone, so the
kill lands while the challenge is ``processing``: the restarted ACME actor validates it
again (``core.resume``), and the validators' quorum decides this time.
"""

from __future__ import annotations

import datetime
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import josepy as jose
import pytest
from acme import challenges, client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.config import HsmConfig

from ..protocols.conftest import TRUSTCHAIN, free_port
from .conftest import CHALLENGE_PATH, AcmeTree, _https_ready, acme_tree

pytestmark = pytest.mark.slow  # two starts of a tree with N = 4 validators


class HoldingResponder(ThreadingHTTPServer):
    """http-01 on [::1]: answers every token it knows, but holds each request until
    ``release`` is set (so that a validator's fetch is in flight when the CA dies)."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.release = threading.Event()
        self.fetched = threading.Event()
        super().__init__(("::1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: HoldingResponder

    def do_GET(self) -> None:
        self.server.fetched.set()
        self.server.release.wait(30)
        token = self.path.removeprefix(CHALLENGE_PATH)
        body = self.server.tokens.get(token, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def responder() -> Iterator[HoldingResponder]:
    server = HoldingResponder(free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig, responder: HoldingResponder) -> Iterator[AcmeTree]:
    acme = {"authorization_reuse_s": 0, "challenge_timeout_s": 10.0}
    with acme_tree(softhsm, acme, http01_port=responder.server_address[1],
                   responder=False) as running:  # fmt: skip
        yield running


def kill_and_start_again(tree: AcmeTree) -> None:
    """``kill -9`` the tree's process, then start ``trustchain run`` again on its stores."""
    tree.process.send_signal(signal.SIGKILL)
    tree.process.wait(timeout=30)
    log = tree.directory / "stderr.log"
    with log.open("ab") as stderr:
        tree.process = subprocess.Popen([TRUSTCHAIN, "--config", str(tree.config), "run"],
                                        stderr=stderr)  # fmt: skip
    deadline = time.monotonic() + 60  # a bound on a failure, not a timing assertion
    while not _https_ready(tree.port, tree.root):
        assert tree.process.poll() is None, tree.log()
        assert time.monotonic() < deadline, f"/ready never answered 200:\n{tree.log()}"
        time.sleep(0.1)


def test_kill_9_mid_challenge_and_mid_order_loses_nothing(
    tree: AcmeTree, responder: HoldingResponder
) -> None:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, verify_ssl=str(tree.root))
    acme = client.ClientV2(client.ClientV2.get_directory(tree.directory_url, net), net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    name = tree.fresh_name()
    cert_key = ec.generate_private_key(ec.SECP256R1())
    pem_key = cert_key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())  # fmt: skip
    orderr = acme.new_order(crypto_util.make_csr(pem_key, [name]))
    (authzr,) = orderr.authorizations
    challb = next(c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01))
    response, validation = challb.response_and_validation(key)
    responder.tokens[challb.chall.encode("token")] = validation
    acme.answer_challenge(challb, response)

    assert responder.fetched.wait(30), "no validator fetched the challenge"
    kill_and_start_again(tree)  # the challenge is processing, its fetches held
    responder.release.set()

    deadline = time.monotonic() + 60
    while (order := acme.poll(authzr)[0]).body.status == messages.STATUS_PENDING:
        assert time.monotonic() < deadline, f"the authorization stayed pending: {order}"
        time.sleep(0.1)
    assert order.body.status == messages.STATUS_VALID, order.body

    kill_and_start_again(tree)  # the order is ready, not yet finalized
    deadline_at = datetime.datetime.now() + datetime.timedelta(seconds=60)
    finished = acme.poll_and_finalize(orderr, deadline=deadline_at)
    assert finished.fullchain_pem.count("BEGIN CERTIFICATE") == 2
    leaf = tree.directory / "leaf.pem"
    leaf.write_text(finished.fullchain_pem)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tree.root), "-untrusted", str(leaf), str(leaf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
