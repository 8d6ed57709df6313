"""IssuerActor through a running tree (real SoftHSM, SQLite on disk), checked with
tools that do not trust our code: openssl verify, pkilint, Python's ssl."""

from __future__ import annotations

import base64
import dataclasses
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import outcome
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustchain.actors.ca import (
    AlreadyRevoked,
    BadCSRSignature,
    CSRTooLarge,
    KeyNotAllowed,
    MalformedCSR,
    NameNotPermitted,
    UnknownSerial,
)
from trustchain.actors.ctlog import CTLogActor
from trustchain.actors.hsm import EnsureKey, HSMActor, SignBatch, SignData
from trustchain.actors.issuer import (
    GetCAStatus,
    GetCertificate,
    GetCRL,
    GetIssuanceStatus,
    IssueCertificate,
    IssuerActor,
    RefreshCRLs,
    RevokeCertificate,
    RotateIntermediate,
)
from trustchain.config import CaConfig, CtLogConfig, HsmConfig
from trustchain.supervisors import (
    ActorState,
    ChildSpec,
    Message,
    Registry,
    RestartChild,
    SupervisedActor,
    TrustChainError,
    handles,
    start_root,
)

from ..ca.conftest import dns_csr, make_csr, make_key, openssl_verify, serverauth_findings
from ..conftest import wait_until

ZONE = "pki.example.com"


@dataclass
class CA:
    registry: Registry
    root: Any
    config: CaConfig
    directory: Path

    def issue(self, csr: bytes, **kwargs: Any) -> dict[str, Any]:
        """Send a CSR as the control socket would: PEM text, or DER in base64."""
        text = csr.decode() if csr.lstrip().startswith(b"-----") else base64.b64encode(csr).decode()
        return self.registry.ask("issuer", IssueCertificate(text, **kwargs), timeout=30)

    def issued_count(self) -> int:
        import sqlite3

        with sqlite3.connect(self.config.database) as db:
            return db.execute("SELECT count(*) FROM issued").fetchone()[0]

    def root_pem(self) -> str:
        status = self.registry.ask("issuer", GetCAStatus())
        return next(c["certificate"] for c in status if c["role"] == "root")

    def write_chain(self, reply: dict[str, Any], name: str = "leaf") -> tuple[Path, Path, Path]:
        root, chain, leaf = (self.directory / f"{name}-{p}.pem" for p in ("root", "chain", "leaf"))
        root.write_text(self.root_pem())
        chain.write_text(reply["chain"])
        leaf.write_text(reply["certificate"])
        return root, chain, leaf


def start_ca(hsm: HsmConfig, config: CaConfig, ctlog: CtLogConfig) -> tuple[Registry, Any]:
    registry = Registry()
    children = [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, ctlog)),
        ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, config), start_timeout_s=60),
    ]
    return registry, start_root(registry, "root", children, max_restarts=10, period_s=60)


@pytest.fixture
def ca(softhsm: HsmConfig, tmp_path: Path) -> Iterator[CA]:
    tag = uuid.uuid4().hex[:8]
    config = CaConfig(
        root_key=f"root-{tag}", intermediate_key=f"int-{tag}", permitted_zones=[ZONE],
        base_url=f"http://{ZONE}",  # pkilint flags loopback URLs as internal names
        database=tmp_path / "ca.sqlite3", crl_dir=tmp_path / "crl",
    )  # fmt: skip
    ctlog = CtLogConfig(key=f"log-{tag}", storage_dir=tmp_path / "ct" / "tiles",
                        index_db=tmp_path / "ct" / "index.sqlite3")  # fmt: skip
    registry, root = start_ca(softhsm, config, ctlog)
    yield CA(registry, root, config, tmp_path)
    root.stop(block=True, timeout=30)


def test_the_composed_actor_handles_the_messages_of_every_part() -> None:
    """IssuerActor is made of mixins (pipeline, revocation, hierarchy, faults): the
    handlers of each are the actor's, not only those of its first base."""
    assert set(IssuerActor.message_types().values()) == {
        IssueCertificate, RevokeCertificate, GetCertificate, GetCRL, RefreshCRLs,
        GetCAStatus, RotateIntermediate, GetIssuanceStatus,
    }  # fmt: skip
    assert "_retry_store" in {message.type for message in IssuerActor._handlers}


@pytest.mark.parametrize("leaf_kind", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
def test_issued_leaves_verify_with_openssl_and_lint_clean(ca: CA, leaf_kind: str) -> None:
    reply = ca.issue(dns_csr(make_key(leaf_kind), f"www.{ZONE}", f"api.{ZONE}"))
    root, chain, leaf = ca.write_chain(reply)
    done = openssl_verify("-CAfile", root, "-untrusted", chain, leaf)
    assert done.returncode == 0 and f"{leaf}: OK" in done.stdout, done.stdout + done.stderr
    cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
    findings = serverauth_findings(cert.public_bytes(serialization.Encoding.DER))
    if leaf_kind == "ed25519":  # allowed by config, but outside the BRs (§6.1.5)
        expected = [("ERROR", "cabf.serverauth.prohibited_subject_public_key_algorithm_encoding")]
        assert findings == expected
    else:
        assert findings == []
    intermediate = x509.load_pem_x509_certificate(reply["chain"].encode())
    # a TLS Subordinate CA with name constraints but no directoryName (certs._name_constraints)
    intermediate_der = intermediate.public_bytes(serialization.Encoding.DER)
    assert serverauth_findings(intermediate_der, "INTERNAL-UNCONSTRAINED-TLS-CA") == []
    assert reply["names"] == [f"www.{ZONE}", f"api.{ZONE}"]
    assert cert.serial_number.bit_length() >= 64
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 86_400 <= lifetime.total_seconds() <= 86_400 + 60  # 24 h, backdated at most 1 min


def test_the_root_certificate_is_written_beside_the_database(ca: CA) -> None:
    assert (ca.config.database.parent / "root.pem").read_text() == ca.root_pem()


def test_ca_keys_are_in_the_hsm_and_not_extractable(ca: CA) -> None:
    keys = {
        k["label"]: k
        for k in ca.registry.ask(
            "hsm", __import__("trustchain.actors.hsm", fromlist=["ListKeys"]).ListKeys()
        )
    }
    for label in (ca.config.root_key, ca.config.intermediate_key):
        assert keys[label]["extractable"] is False and keys[label]["sensitive"] is True


def test_a_revoked_certificate_shows_as_revoked_to_openssl(ca: CA) -> None:
    revoked = ca.issue(dns_csr(make_key("ec-p256"), f"gone.{ZONE}"))
    kept = ca.issue(dns_csr(make_key("ec-p256"), f"kept.{ZONE}"))
    result = ca.registry.ask("issuer", RevokeCertificate(revoked["serial"], "key_compromise"))
    assert result["status"] == "revoked" and result["reason"] == "key_compromise"
    with pytest.raises(AlreadyRevoked):
        ca.registry.ask("issuer", RevokeCertificate(revoked["serial"], "superseded"))
    with pytest.raises(UnknownSerial):
        ca.registry.ask("issuer", RevokeCertificate("abcdef0123", "superseded"))
    crl = ca.registry.ask("issuer", GetCRL())
    assert crl["revoked"] == 1
    crl_file = ca.directory / "crl.pem"
    crl_file.write_text(crl["crl"])
    assert (ca.config.crl_dir / f"{ca.config.intermediate_key}.crl").exists()
    root, chain, leaf = ca.write_chain(revoked, "revoked")
    done = openssl_verify("-crl_check", "-CAfile", root, "-untrusted", chain, "-CRLfile",
                          crl_file, leaf)  # fmt: skip
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr
    root, chain, leaf = ca.write_chain(kept, "kept")
    done = openssl_verify("-crl_check", "-CAfile", root, "-untrusted", chain, "-CRLfile",
                          crl_file, leaf)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert ca.registry.ask("issuer", GetCertificate(revoked["serial"]))["status"] == "revoked"


def _rsa_1024_csr() -> bytes:
    return dns_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024), f"a.{ZONE}")


def _wrong_key_csr() -> bytes:
    """A CSR for key A whose signature was made with key B (same size, so same layout)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key_a = make_key("rsa-2048")
    key_b = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = x509.load_pem_x509_csr(dns_csr(key_a, f"a.{ZONE}"))
    der = csr.public_bytes(serialization.Encoding.DER)
    assert isinstance(key_b, rsa.RSAPrivateKey)
    wrong = key_b.sign(csr.tbs_certrequest_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert der.endswith(csr.signature) and len(wrong) == len(csr.signature)
    return der[: -len(wrong)] + wrong


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END", MalformedCSR),
        (lambda: b"garbage that is neither", MalformedCSR),
        (lambda: b"\x30\x03\x02\x01\x00", MalformedCSR),
        (_wrong_key_csr, BadCSRSignature),
        (_rsa_1024_csr, KeyNotAllowed),
        (lambda: dns_csr(make_key("ec-p256"), "www.example.org"), NameNotPermitted),
        (
            lambda: make_csr(
                make_key("ec-p256"),
                [x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.1"))],
            ),
            NameNotPermitted,
        ),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 10_000_000, CSRTooLarge),
    ],
)
def test_bad_requests_are_refused_and_leave_the_database_untouched(ca: CA, make, error) -> None:
    before = ca.issued_count()
    with pytest.raises(error):
        ca.issue(make())
    assert ca.issued_count() == before
    assert ca.registry.cell("issuer").restarts == 0


def test_validity_bounds_come_from_config(ca: CA) -> None:
    from trustchain.actors.ca import ValidityOutOfBounds

    short = ca.issue(dns_csr(make_key("ec-p256"), f"s.{ZONE}"), validity_s=600)
    cert = x509.load_pem_x509_certificate(short["certificate"].encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= __import__("datetime").timedelta(
        seconds=660
    )
    for seconds in (60, 2 * 86_400):
        with pytest.raises(ValidityOutOfBounds):
            ca.issue(dns_csr(make_key("ec-p256"), f"s.{ZONE}"), validity_s=seconds)


def test_many_concurrent_requests_share_hsm_batches_and_get_unique_serials(ca: CA) -> None:
    csrs = [dns_csr(make_key("ec-p256"), f"h{i}.{ZONE}").decode() for i in range(200)]
    replies: list[Any] = []
    done = threading.Event()

    def reply(result: Any) -> None:
        replies.append(result.unwrap())
        if len(replies) == len(csrs):
            done.set()

    for csr in csrs:
        ca.registry.tell("issuer", IssueCertificate(csr), reply)
    assert done.wait(60)
    assert len({r["serial"] for r in replies}) == 200
    assert ca.issued_count() == 200
    # Fewer HSM messages than certificates: the signatures went in batches.
    assert ca.registry.cell("hsm").handled < 200


def test_a_restart_reloads_the_same_hierarchy_and_records(ca: CA) -> None:
    reply = ca.issue(dns_csr(make_key("ec-p256"), f"r.{ZONE}"))
    root_before = ca.root_pem()
    cell = ca.registry.cell("issuer")
    before = cell.incarnation
    ca.registry.tell("root", __import__("trustchain.supervisors", fromlist=["RestartChild"])
                     .RestartChild("issuer"))  # fmt: skip
    wait_until(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
               "the issuer to run again", timeout=30)  # fmt: skip
    assert ca.root_pem() == root_before
    assert ca.registry.ask("issuer", GetCertificate(reply["serial"]))["names"] == [f"r.{ZONE}"]


def test_rotation_adds_an_intermediate_and_earlier_leaves_stay_valid(ca: CA) -> None:
    before = ca.issue(dns_csr(make_key("ec-p256"), f"old.{ZONE}"))
    rotated = ca.registry.ask("issuer", RotateIntermediate(), timeout=60)
    assert rotated["key_label"] == f"{ca.config.intermediate_key}-2"
    after = ca.issue(dns_csr(make_key("ec-p256"), f"new.{ZONE}"))
    assert after["ca"] == rotated["key_label"] and before["ca"] != after["ca"]
    for reply, name in ((before, "before"), (after, "after")):
        root, chain, leaf = ca.write_chain(reply, name)
        done = openssl_verify("-CAfile", root, "-untrusted", chain, leaf)
        assert done.returncode == 0, done.stdout + done.stderr
    status = ca.registry.ask("issuer", GetCAStatus())
    intermediates = [c for c in status if c["role"] == "intermediate"]
    assert [c["current"] for c in intermediates] == [False, True]
    assert ca.registry.ask("issuer", GetCRL(ca=before["ca"]))["ca"] == before["ca"]
    assert ca.registry.ask("issuer", GetCertificate(before["serial"]))["ca"] == before["ca"]


def test_a_tls_handshake_with_an_issued_leaf_checks_the_hostname(ca: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    reply = ca.issue(dns_csr(key, f"tls.{ZONE}"))
    key_file = ca.directory / "tls.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    root, _, _ = ca.write_chain(reply, "tls")
    fullchain = ca.directory / "fullchain.pem"
    fullchain.write_text(reply["certificate"] + reply["chain"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(fullchain, key_file)

    def handshake(hostname: str) -> str:
        client_ctx = ssl.create_default_context(cafile=str(root))
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("::1", port), timeout=10) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:  # fmt: skip
                version = tls.version() or ""
                tls.send(b"x")
                return version
        finally:
            thread.join(10)
            listener.close()

    assert handshake(f"tls.{ZONE}").startswith("TLS")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(f"other.{ZONE}")


def test_hsm_errors_reach_the_caller_typed(ca: CA, softhsm: HsmConfig) -> None:
    dataclasses.replace(ca.config)  # the config is a frozen value
    ca.registry.ask("root", __import__("trustchain.supervisors", fromlist=["RestartChild"])
                    .RestartChild("hsm"))  # fmt: skip
    reply = ca.issue(dns_csr(make_key("ec-p256"), f"after-hsm-restart.{ZONE}"))
    assert reply["serial"]


@dataclass(frozen=True)
class HoldSignatures(Message):
    hold: bool


class HSMGate(SupervisedActor):
    """Between the issuer and the HSM: passes every request on, but keeps single
    signatures (CRLs, CA certificates) while told to hold them; answers how many
    it holds."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.hold = False
        self.held: list[tuple[Message, Any]] = []

    def _pass(self, msg: Message) -> None:
        reply = self.defer()
        if self.hold and isinstance(msg, SignData):
            self.held.append((msg, reply))
        else:
            self.request("hsm", msg, reply)

    @handles(SignData)
    def sign(self, msg: SignData) -> None:
        self._pass(msg)

    @handles(SignBatch)
    def sign_batch(self, msg: SignBatch) -> None:
        self._pass(msg)

    @handles(EnsureKey)
    def ensure_key(self, msg: EnsureKey) -> None:
        self._pass(msg)

    @handles(HoldSignatures)
    def set_hold(self, msg: HoldSignatures) -> int:
        self.hold = msg.hold
        if not self.hold:
            held, self.held = self.held, []
            for message, reply in held:
                self.request("hsm", message, reply)
        return len(self.held)


def test_revocation_crls_and_rotation_wait_on_the_hsm_without_blocking_the_issuer(
    softhsm: HsmConfig, tmp_path: Path
) -> None:
    """While the HSM holds their signatures, the issuer goes on issuing and
    answering; each is answered once its signature is back (a handler waiting on
    the HSM would leave the issuer deaf here)."""
    tag = uuid.uuid4().hex[:8]
    config = CaConfig(root_key=f"root-{tag}", intermediate_key=f"int-{tag}",
                      permitted_zones=[ZONE], database=tmp_path / "ca.sqlite3",
                      crl_dir=tmp_path / "crl")  # fmt: skip
    registry = Registry()
    root = start_root(registry, "root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, softhsm)),
        ChildSpec("gate", lambda ctx: HSMGate.start(ctx)),
        ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, config, hsm="gate", ctlog=None),
                  start_timeout_s=60),
    ])  # fmt: skip
    ca = CA(registry, root, config, tmp_path)
    try:
        first = ca.issue(dns_csr(make_key("ec-p256"), f"first.{ZONE}"))
        crl_before = registry.ask("issuer", GetCRL())["crl_number"]
        registry.ask("gate", HoldSignatures(True))
        answers: dict[str, outcome.Outcome] = {}
        for name, message in (
            ("revoke", RevokeCertificate(first["serial"], "superseded")),
            ("rotate", RotateIntermediate()),
            ("refresh", RefreshCRLs()),
        ):
            registry.tell("issuer", message,
                          lambda result, name=name: answers.__setitem__(name, result))  # fmt: skip
        # revoke: 1 CRL; rotate: the new intermediate (after its key); refresh: root + intermediate
        wait_until(lambda: registry.ask("gate", HoldSignatures(True)) == 4, "4 held signatures")

        second = ca.issue(dns_csr(make_key("ec-p256"), f"second.{ZONE}"))  # not blocked
        assert second["ca"] == config.intermediate_key
        assert registry.ask("issuer", GetCertificate(first["serial"]))["status"] == "revoked"
        assert registry.ask("issuer", GetCRL())["crl_number"] == crl_before  # not yet
        assert answers == {}

        registry.ask("gate", HoldSignatures(False))
        wait_until(lambda: len(answers) == 3, "the three answers")
        revoked = answers["revoke"].unwrap()
        assert revoked["status"] == "revoked" and revoked["crl_number"] > crl_before
        assert answers["rotate"].unwrap()["key_label"] == f"{config.intermediate_key}-2"
        assert answers["refresh"].unwrap() == [config.root_key, config.intermediate_key]
        crl = registry.ask("issuer", GetCRL(ca=config.intermediate_key))
        assert crl["revoked"] == 1 and crl["crl_number"] == crl_before + 2
        on_disk = x509.load_der_x509_crl((config.crl_dir / f"{config.intermediate_key}.crl")
                                         .read_bytes())  # fmt: skip
        assert on_disk.get_revoked_certificate_by_serial_number(int(first["serial"], 16))
        assert ca.issue(dns_csr(make_key("ec-p256"), f"third.{ZONE}"))["ca"] == \
            f"{config.intermediate_key}-2"  # fmt: skip
        assert registry.cell("issuer").restarts == 0
    finally:
        root.stop(block=True, timeout=30)


def test_a_request_id_asked_again_gets_the_certificate_issued_for_it_never_a_second(
    ca: CA,
) -> None:
    """An ACME order issued again after a crash (its request id the order's) gets the
    certificate issued for it the first time, across a restart of the issuer too; the
    same id with another key is refused."""
    key = make_key("ec-p256")
    csr = dns_csr(key, f"again.{ZONE}")
    first = ca.issue(csr, request_id="acme-order-1")
    count = ca.issued_count()
    again = ca.issue(dns_csr(key, f"again.{ZONE}"), request_id="acme-order-1")  # a new CSR
    assert again["serial"] == first["serial"] and again["certificate"] == first["certificate"]
    assert again["replayed"] is True and "replayed" not in first
    assert again["chain"] == first["chain"] and again["names"] == [f"again.{ZONE}"]
    assert ca.issued_count() == count  # nothing issued
    other = ca.issue(csr, request_id="acme-order-2")  # another request: another certificate
    assert other["serial"] != first["serial"]
    with pytest.raises(TrustChainError, match="another key") as refused:
        ca.issue(dns_csr(make_key("ec-p256", slot=7), f"again.{ZONE}"), request_id="acme-order-1")
    assert refused.value.code == "request_id_reused"
    cell = ca.registry.cell("issuer")
    before = cell.incarnation
    ca.registry.tell("root", RestartChild("issuer"))
    wait_until(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
               "the issuer to run again", timeout=30)  # fmt: skip
    assert ca.issue(csr, request_id="acme-order-1")["serial"] == first["serial"]  # durable
