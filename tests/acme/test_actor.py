"""AcmeActor in a supervised tree on a FakeClock: requests answered from the core,
effects performed as requests to the detector and the issuer without waiting, results
fed back, work left processing resumed by a restart, a full disk answered at once and
probed until it works.

The detector and the issuer are peers here that hold each request until the test
answers it (``Peer``), with the answers' shapes of the real ones
(``ValidateChallenge``'s and ``IssueCertificate``'s docstrings): what the ACME actor
does while a peer is slow, restarting or failing is then the test's to choose.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import outcome
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.acme import AcmeActor, AcmeRequest, GetAcmeStatus
from trustchain.actors.detector.messages import ValidateChallenge
from trustchain.actors.issuer.messages import IssueCertificate, RevokeCertificate
from trustchain.config import AcmeConfig, CaConfig
from trustchain.supervisors import (
    ActorContext,
    ActorUnavailable,
    ChildSpec,
    Clock,
    FakeClock,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)
from trustchain.supervisors.registry import Reply

from ..actors.test_faults import fill
from .test_core import BASE, ZONE, Client, Issuer, approval, b64, body, csr_for, header, problem

PEER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class _Answer(Message):
    reply: Reply
    result: outcome.Outcome


class Peer(SupervisedActor):
    """Stands where the detector or the issuer runs: every request it gets waits in
    ``inbox`` until the test answers it (``answer``), on the peer's own thread."""

    def __init__(self, context: ActorContext, inbox: queue.Queue[tuple[Message, Reply]]) -> None:
        super().__init__(context)
        self.inbox = inbox

    def _hold(self, msg: Message) -> None:
        self.inbox.put((msg, self.defer()))

    @handles(ValidateChallenge)
    def validate(self, msg: ValidateChallenge) -> None:
        self._hold(msg)

    @handles(IssueCertificate)
    def issue(self, msg: IssueCertificate) -> None:
        self._hold(msg)

    @handles(RevokeCertificate)
    def revoke(self, msg: RevokeCertificate) -> None:
        self._hold(msg)

    @handles(_Answer)
    def answer(self, msg: _Answer) -> None:
        msg.reply(msg.result)


class Tree:
    def __init__(self, database: Path, clock: Clock | None = None,
                 peer: type[Peer] | None = None, actor: type[AcmeActor] = AcmeActor,
                 **acme: Any) -> None:  # fmt: skip
        self.registry = Registry()
        self.clock: Any = clock or FakeClock()
        self.asked: dict[str, queue.Queue[tuple[Message, Reply]]] = {
            "detector": queue.Queue(), "issuer": queue.Queue()}  # fmt: skip
        config = AcmeConfig(database=database, **acme)
        ca = CaConfig(permitted_zones=[ZONE], allow_wildcards=True)
        children = [
            ChildSpec("detector", lambda ctx: (peer or Peer).start(ctx, self.asked["detector"])),
            ChildSpec("issuer", lambda ctx: (peer or Peer).start(ctx, self.asked["issuer"])),
            ChildSpec("acme", lambda ctx: actor.start(ctx, config, ca)),
        ]
        self.root = start_root(self.registry, "root", children, max_restarts=5, period_s=60,
                               clock=self.clock)  # fmt: skip

    def next(self, peer: str) -> tuple[Any, Reply]:
        return self.asked[peer].get(timeout=PEER_TIMEOUT_S)

    def answer(self, peer: str, reply: Reply, result: Any) -> None:
        value = outcome.Error(result) if isinstance(result, Exception) else outcome.Value(result)
        self.registry.tell(peer, _Answer(reply, value))

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.registry.ask("acme", GetAcmeStatus())
        return status

    def faults(self) -> list[str]:
        return [f["resource"] for f in self.registry.cell("acme").health()["faults"]]

    def stop(self) -> None:
        self.root.stop(block=True, timeout=30)


class ActorClient(Client):
    """The same client, over the actor (``Registry.ask``), as the HTTP edge asks it."""

    def __init__(self, tree: Tree) -> None:
        super().__init__(core=None, now=tree.clock.time())  # type: ignore[arg-type]
        self.tree = tree

    def send(self, method: str, url: str, body: bytes = b"",
             content_type: str = "application/jose+json") -> dict[str, Any]:  # fmt: skip
        answer: dict[str, Any] = self.tree.registry.ask(
            "acme", AcmeRequest(method, url, body, content_type)
        )
        self.nonce = header(answer, "Replay-Nonce")
        self.last = answer
        return answer


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    running = Tree(tmp_path / "acme.sqlite3")
    yield running
    running.stop()


def validate_all(tree: Tree, client: ActorClient, order: dict[str, Any]) -> None:
    """Answer each challenge; the detector approves each."""
    for authz_url in order["authorizations"]:
        authz = body(client.post(authz_url))
        url = next(c["url"] for c in authz["challenges"] if c["type"] == "http-01")
        assert body(client.post(url, {}))["status"] == "processing"
        message, reply = tree.next("detector")
        assert isinstance(message, ValidateChallenge)
        tree.answer("detector", reply, approval(_validate(message), tree.clock.time()))


def _validate(message: ValidateChallenge) -> Any:
    return type("V", (), {"message": message})()


def wait_for_status(client: ActorClient, url: str, status: str) -> dict[str, Any]:
    for _ in range(200):
        order: dict[str, Any] = body(client.post(url))
        if order["status"] == status:
            return order
        time.sleep(0.01)
    raise AssertionError(f"{url} never became {status}: {order}")


def test_an_order_through_the_actor_with_the_detector_and_the_issuer(tree: Tree) -> None:
    client = ActorClient(tree)
    client.register()
    reply = client.order(f"www.{ZONE}")
    url = header(reply, "Location")
    assert url is not None
    validate_all(tree, client, body(reply))
    order = wait_for_status(client, url, "ready")
    assert body(client.post(order["finalize"], {"csr": csr_for(f"www.{ZONE}")}))["status"] == (
        "processing")  # fmt: skip
    message, reply_to = tree.next("issuer")
    assert isinstance(message, IssueCertificate) and message.acme_account
    assert message.validity_s == 86_400
    tree.answer("issuer", reply_to, Issuer().answer(_issue(message), tree.clock.time()))
    order = wait_for_status(client, url, "valid")
    download = client.post(order["certificate"])
    assert download["content_type"] == "application/pem-certificate-chain"
    assert tree.status()["certificates"] == 1


def _issue(message: IssueCertificate) -> Any:
    return type("I", (), {"message": message})()


def test_the_actor_answers_others_while_a_validation_is_outstanding(tree: Tree) -> None:
    client = ActorClient(tree)
    client.register()
    order = body(client.order(f"slow.{ZONE}"))
    authz = body(client.post(order["authorizations"][0]))
    client.post(authz["challenges"][0]["url"], {})
    tree.next("detector")  # held: the validators have not answered
    assert client.send("GET", BASE + "/acme/directory")["status"] == 200
    assert body(client.order(f"other.{ZONE}"))["status"] == "pending"
    assert tree.status()["validations_in_flight"] == 1


def test_a_restart_mid_order_validates_and_issues_again(tmp_path: Path) -> None:
    database = tmp_path / "acme.sqlite3"
    first = Tree(database)
    client = ActorClient(first)
    client.register()
    challenged = body(client.order(f"c.{ZONE}"))
    authz = body(client.post(challenged["authorizations"][0]))
    client.post(next(c["url"] for c in authz["challenges"] if c["type"] == "http-01"), {})
    first.next("detector")  # the validators are still at it when the process goes down
    finalized = header(client.order(f"f.{ZONE}"), "Location")
    assert finalized is not None
    validate_all(first, client, body(client.post(finalized)))
    order = wait_for_status(client, finalized, "ready")
    client.post(order["finalize"], {"csr": csr_for(f"f.{ZONE}")})
    first.next("issuer")  # the issuer is still at it
    first.stop()

    second = Tree(database)
    try:
        message, reply = second.next("detector")  # asked again, unasked by anyone
        assert isinstance(message, ValidateChallenge) and message.identifier == f"c.{ZONE}"
        second.answer("detector", reply, approval(_validate(message), second.clock.time()))
        issue, reply = second.next("issuer")
        assert isinstance(issue, IssueCertificate)
        second.answer("issuer", reply, Issuer().answer(_issue(issue), second.clock.time()))
        client.tree = second  # the client retries against the new process
        client.nonce = None
        assert wait_for_status(client, finalized, "valid")["certificate"]
        wait_for_status(client, header(client.order(f"c.{ZONE}"), "Location") or "", "ready")
    finally:
        second.stop()


def test_a_detector_that_is_restarting_is_asked_again_after_a_backoff(tree: Tree) -> None:
    client = ActorClient(tree)
    client.register()
    order = body(client.order(f"r.{ZONE}"))
    authz = body(client.post(order["authorizations"][0]))
    client.post(authz["challenges"][0]["url"], {})
    _, reply = tree.next("detector")
    tree.answer("detector", reply, ActorUnavailable("the detector is restarting"))
    with pytest.raises(queue.Empty):
        tree.asked["detector"].get(timeout=0.2)  # not at once: after the backoff
    for _ in range(50):
        tree.clock.advance(1.0)
        try:
            message, _ = tree.asked["detector"].get(timeout=0.05)
            break
        except queue.Empty:
            continue
    else:
        raise AssertionError("the detector was never asked again")
    assert isinstance(message, ValidateChallenge)


def test_revocation_is_answered_once_the_issuer_has_revoked(tree: Tree) -> None:
    client = ActorClient(tree)
    client.register()
    url = header(client.order(f"v.{ZONE}"), "Location")
    assert url is not None
    validate_all(tree, client, body(client.post(url)))
    order = wait_for_status(client, url, "ready")
    client.post(order["finalize"], {"csr": csr_for(f"v.{ZONE}")})
    message, reply = tree.next("issuer")
    tree.answer("issuer", reply, Issuer().answer(_issue(message), tree.clock.time()))
    order = wait_for_status(client, url, "valid")
    leaf = x509.load_pem_x509_certificates(client.post(order["certificate"])["body"])[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    answers: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: answers.append(
            client.post(BASE + "/acme/revoke-cert", {"certificate": b64(der), "reason": 4})
        )
    )
    thread.start()
    revoke, reply = tree.next("issuer")
    assert isinstance(revoke, RevokeCertificate) and revoke.reason == "superseded"
    assert not answers  # the client waits for the issuer
    tree.answer("issuer", reply, {"serial": revoke.serial, "status": "revoked"})
    thread.join(timeout=10)
    assert answers[0]["status"] == 200 and header(answers[0], "Replay-Nonce")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_a_503_problem_at_once_and_the_probe_clears_it(small_disk: Path) -> None:
    tree = Tree(small_disk / "acme.sqlite3")
    try:
        client = ActorClient(tree)
        client.register()
        filler = fill(small_disk)
        refused = [client.order(f"d{i}.{ZONE}") for i in range(3)]
        for reply in refused:
            assert reply["status"] == 503 and problem(reply) == "serverInternal"
            assert header(reply, "Retry-After") and header(reply, "Replay-Nonce")
        assert tree.faults() == ["acme_store"]
        assert tree.registry.cell("acme").restarts == 0
        filler.unlink()
        for _ in range(100):
            tree.clock.advance(1.0)
            if not tree.faults():
                break
            time.sleep(0.01)
        assert tree.faults() == []
        assert client.order(f"ok.{ZONE}")["status"] == 201
    finally:
        tree.stop()
