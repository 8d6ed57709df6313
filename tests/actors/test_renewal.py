"""RenewalActor through a running tree (real SoftHSM, the real IssuerActor), checked with
openssl verify and real TLS handshakes on [::1]. Waits are bounded polls, never timings."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ctlog import CTLogActor
from trustchain.actors.hsm import HSMActor
from trustchain.actors.issuer import GetCAStatus, IssuerActor
from trustchain.actors.renewal import (
    CertificateNotIssued,
    GetBundle,
    GetRenewalStatus,
    RegisterCertificate,
    RenewalActor,
    RenewNow,
    Subscribe,
)
from trustchain.actors.renewal.bundle import Bundle, check_period, renewal_due, renewal_reason
from trustchain.config import CaConfig, CtLogConfig, HsmConfig, RenewalConfig
from trustchain.protocols.tls_reload import CertificateNotReady, Reloading, ReloadingSSLContext
from trustchain.supervisors import (
    ActorState,
    ActorUnavailable,
    ChildSpec,
    InvalidRequest,
    Registry,
    Restart,
    RestartChild,
    start_root,
)

from ..ca.conftest import openssl_verify

ZONE = "pki.example.com"
DOQ = f"doq.{ZONE}"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
    return result


@dataclass
class Tree:
    registry: Registry
    root: Any
    ca: CaConfig
    renewal: RenewalConfig

    def status(self, name: str) -> dict[str, Any]:
        return next(
            s for s in self.registry.ask("renewal", GetRenewalStatus()) if s["name"] == name
        )

    def wait_ok(self, name: str, other_than: str | None = None) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            s = self.status(name)
            return s if s["state"] == "ok" and s["serial"] not in (None, other_than) else None

        return wait_for(ok, f"{name!r} to get a certificate")  # type: ignore[no-any-return]

    def root_pem(self) -> str:
        return next(c["certificate"] for c in self.registry.ask("issuer", GetCAStatus())
                    if c["role"] == "root")  # fmt: skip

    def issued_count(self) -> int:
        with sqlite3.connect(self.ca.database) as db:
            return int(db.execute("SELECT count(*) FROM issued").fetchone()[0])

    def restart(self, name: str) -> None:
        cell = self.registry.cell(name)
        before = cell.incarnation
        self.registry.ask("root", RestartChild(name), timeout=60)
        wait_for(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
                 f"{name!r} to restart")  # fmt: skip


def start_tree(hsm: HsmConfig, tmp: Path, **renewal: Any) -> Tree:
    tag = uuid.uuid4().hex[:8]
    ca = CaConfig(
        root_key=f"root-{tag}", intermediate_key=f"int-{tag}", permitted_zones=[ZONE],
        base_url=f"http://{ZONE}", database=tmp / "ca.sqlite3", crl_dir=tmp / "crl",
        min_validity_s=1,  # IssuancePolicy takes any positive minimum; the loader says 60
    )  # fmt: skip
    config = RenewalConfig(**{"directory": tmp / "tls", "validity_s": 3600,
                              "check_interval_s": 0.2, "certificates": {"doq": [DOQ, "::1"]},
                              **renewal})  # fmt: skip
    ctlog = CtLogConfig(key=f"log-{tag}", storage_dir=tmp / "ct" / "tiles",
                        index_db=tmp / "ct" / "index.sqlite3")  # fmt: skip
    registry = Registry()
    children = [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, ctlog)),
        # transient: a test can stop the issuer and it stays down until restarted
        ChildSpec(
            "issuer", lambda ctx: IssuerActor.start(ctx, ca), Restart.TRANSIENT, start_timeout_s=60
        ),
        ChildSpec("renewal", lambda ctx: RenewalActor.start(ctx, config)),
    ]
    return Tree(registry, start_root(registry, "root", children, max_restarts=10, period_s=60),
                ca, config)  # fmt: skip


@pytest.fixture
def tree(softhsm: HsmConfig, tmp_path: Path) -> Iterator[Tree]:
    t = start_tree(softhsm, tmp_path)
    yield t
    t.root.stop(block=True, timeout=30)


@pytest.fixture
def short_lived(softhsm: HsmConfig, tmp_path: Path) -> Iterator[Tree]:
    t = start_tree(softhsm, tmp_path, validity_s=6, renew_at_fraction=2 / 3)
    yield t
    t.root.stop(block=True, timeout=30)


def self_signed_bundle(names: list[str], issued_at: datetime, not_after: datetime) -> Bundle:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
            .public_key(key.public_key()).serial_number(1).add_extension(sans, critical=True)
            .not_valid_before(issued_at - timedelta(seconds=60)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    where = Path("/nonexistent")
    return Bundle("t", tuple(names), "1", cert.not_valid_before_utc, not_after, issued_at, pem, "",
                  "", where, where, where, where)  # fmt: skip


# Pure decisions ------------------------------------------------------------------------------


def test_renewal_is_due_exactly_at_the_fraction_of_the_lifetime() -> None:
    tick = timedelta(microseconds=1)
    assert not renewal_due(T0, T0 + timedelta(seconds=6), T0 + timedelta(seconds=4) - tick, 2 / 3)
    assert renewal_due(T0, T0 + timedelta(seconds=6), T0 + timedelta(seconds=4), 2 / 3)
    day = timedelta(hours=24)
    assert not renewal_due(T0, T0 + day, T0 + timedelta(hours=16) - tick, 2 / 3)
    assert renewal_due(T0, T0 + day, T0 + timedelta(hours=16), 2 / 3)
    assert renewal_due(T0, T0 + day, T0 + timedelta(hours=12), 0.5)
    assert renewal_due(T0, T0 + day, T0 + 2 * day, 2 / 3)  # expired: long due


def test_the_lifetime_counts_from_the_request_not_the_backdated_not_before() -> None:
    bundle = self_signed_bundle(["a.example"], T0, T0 + timedelta(seconds=6))
    assert bundle.not_before == T0 - timedelta(seconds=60)

    def reason(now: datetime, names: tuple[str, ...] = ("a.example",)) -> str | None:
        return renewal_reason(bundle, names, "ec-p256", now, 2 / 3)

    assert reason(T0) is None  # counting from notBefore it would be due at birth
    assert reason(T0 + timedelta(seconds=3.9)) is None
    assert reason(T0 + timedelta(seconds=4)) == "due"
    assert reason(T0, names=("b.example",)) == "names changed"
    assert renewal_reason(bundle, ["a.example"], "ec-p384", T0, 2 / 3) == "key type changed"
    assert renewal_reason(None, ["a.example"], "ec-p256", T0, 2 / 3) == "no usable certificate"


def test_checks_come_often_enough_to_catch_the_renewal_window() -> None:
    assert check_period(86_400, 2 / 3, 30.0) == 30.0
    assert check_period(60, 2 / 3, 30.0) == pytest.approx(5.0)


def test_subscribe_is_refused_over_the_control_socket_with_a_clear_reason() -> None:
    message_class = RenewalActor.message_types()["subscribe"]  # what the control socket looks up
    for args in ({"name": "doq", "callback": "print"}, {"name": "doq"}):
        with pytest.raises(InvalidRequest, match="in-process only") as refused:
            message_class.from_args(args)
        assert refused.value.code == "invalid_request"
    assert GetBundle.from_args({"name": "doq"}) == GetBundle("doq")
    assert "_check_renewals" not in RenewalActor.message_types()


def test_a_reloading_context_refuses_before_the_first_certificate() -> None:
    with pytest.raises(CertificateNotReady, match="get_renewal_status"):
        ReloadingSSLContext("doq").current()


# Through the tree ----------------------------------------------------------------------------


def test_a_configured_certificate_is_issued_at_start_and_verifies(tree: Tree) -> None:
    tree.wait_ok("doq")
    info = tree.registry.ask("renewal", GetBundle("doq"))
    assert "key_pem" not in info and "PRIVATE KEY" not in json.dumps(info)
    paths = {k: Path(v) for k, v in info["paths"].items()}
    key_mode = stat.S_IMODE(paths["key"].stat().st_mode)
    assert key_mode == 0o600
    home = tree.renewal.directory / "doq"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / "key.pem").resolve() == paths["key"] == paths["current"].resolve() / "key.pem"
    root = tree.renewal.directory / "root.pem"
    root.write_text(tree.root_pem())
    done = openssl_verify("-CAfile", root, "-untrusted", paths["chain"], paths["cert"])
    assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr
    key = serialization.load_pem_private_key(paths["key"].read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)
    assert info["names"] == [DOQ, "::1"] and info["serial"] == format(cert.serial_number, "x")
    issued_at = datetime.fromisoformat(json.loads((paths["current"] / "meta.json").read_text())
                                       ["issued_at"])  # fmt: skip
    not_after = cert.not_valid_after_utc
    assert datetime.fromisoformat(info["renew_at"]) == issued_at + (not_after - issued_at) * 2 / 3
    # aioquic takes no ssl.SSLContext: the same helper builds its configuration
    from aioquic.quic.configuration import QuicConfiguration

    def quic(files: Any) -> QuicConfiguration:
        configuration = QuicConfiguration(is_client=False, alpn_protocols=["doq"])
        configuration.load_cert_chain(files.fullchain_path, files.key_path)
        return configuration

    doq = Reloading(quic, "doq")
    tree.registry.ask("renewal", Subscribe("doq", doq))
    assert doq.current().certificate is not None
    assert doq.current().certificate.serial_number == cert.serial_number


class TLSServer:
    """Accepts on [::1] until closed; every connection is wrapped with ``context``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
        self.port = self.listener.getsockname()[1]
        self.context = context
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    def peer_serial(self, root: Path, hostname: str) -> str:
        client = ssl.create_default_context(cafile=str(root))
        with socket.create_connection(("::1", self.port), timeout=10) as raw, \
                client.wrap_socket(raw, server_hostname=hostname) as tls:  # fmt: skip
            der = tls.getpeercert(binary_form=True)
            tls.send(b"x")
        assert der is not None
        return format(x509.load_der_x509_certificate(der).serial_number, "x")


def test_a_short_lived_certificate_is_replaced_in_place_and_served_to_new_clients(
    short_lived: Tree,
) -> None:
    tree = short_lived
    first = tree.wait_ok("doq")["serial"]
    seen: list[Bundle] = []
    raised: list[str] = []

    def broken(bundle: Bundle) -> None:
        raised.append(bundle.serial)
        raise RuntimeError("a subscriber's bug")

    reloading = ReloadingSSLContext("doq")
    # Subscribers are called in order: once ``seen`` has a bundle, ``reloading`` has it.
    for callback in (broken, reloading, seen.append):
        tree.registry.ask("renewal", Subscribe("doq", callback))
    assert seen and raised  # called at once with the current bundle
    root = tree.renewal.directory.parent / "root.pem"
    root.write_text(tree.root_pem())
    server = TLSServer(reloading.listener_context())
    before = server.peer_serial(root, DOQ)
    incarnation = tree.registry.cell("renewal").incarnation

    wait_for(lambda: len({b.serial for b in seen} - {first, before}) >= 1, "a renewal")
    renewed = [b for b in seen if b.serial not in (first, before)]
    assert renewed[0].key_pem != seen[0].key_pem  # a new key, not only a new certificate
    after = server.peer_serial(root, DOQ)
    assert after != before and after in {b.serial for b in seen}
    assert server.peer_serial(root, "::1") in {b.serial for b in seen}  # IPv6 SAN, no SNI
    with pytest.raises(ssl.SSLCertVerificationError):
        server.peer_serial(root, f"other.{ZONE}")
    assert len(raised) >= 2  # the broken subscriber was kept
    cell = tree.registry.cell("renewal")
    assert cell.incarnation == incarnation and cell.restarts == 0

    def versions() -> list[Path]:
        home = tree.renewal.directory / "doq"
        return [p for p in home.iterdir()
                if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]  # fmt: skip

    # Current and the previous one; a renewal in progress holds a third for a moment.
    wait_for(lambda: 1 <= len(versions()) <= 2, "old versions to be pruned")
    server.listener.close()


def test_a_restart_keeps_the_certificate_registrations_and_subscribers(tree: Tree) -> None:
    tree.registry.ask("renewal", RegisterCertificate("api", [f"api.{ZONE}"]))
    doq, api = tree.wait_ok("doq")["serial"], tree.wait_ok("api")["serial"]
    seen: list[Bundle] = []
    tree.registry.ask("renewal", Subscribe("doq", seen.append))
    issued = tree.issued_count()

    tree.restart("renewal")
    assert (tree.status("doq")["serial"], tree.status("api")["serial"]) == (doq, api)
    assert tree.status("api")["source"] == "registered"
    assert tree.issued_count() == issued  # nothing re-issued
    assert [b.serial for b in seen] == [doq]  # not told again about what it has
    renewed = tree.registry.ask("renewal", RenewNow("doq"), timeout=30)
    assert renewed["serial"] != doq and seen[-1].serial == renewed["serial"]


def test_a_key_that_does_not_match_or_that_others_can_read_is_replaced_at_start(
    tree: Tree,
) -> None:
    first = tree.wait_ok("doq")["serial"]
    key_file = Path(tree.registry.ask("renewal", GetBundle("doq"))["paths"]["key"])
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())  # fmt: skip
    key_file.write_bytes(other)
    tree.restart("renewal")
    second = tree.wait_ok("doq", other_than=first)["serial"]
    key_file = Path(tree.registry.ask("renewal", GetBundle("doq"))["paths"]["key"])
    key_file.chmod(0o640)
    tree.restart("renewal")
    tree.wait_ok("doq", other_than=second)


def test_an_issuer_that_is_down_shows_as_failed_and_renewal_resumes_when_it_is_back(
    tree: Tree,
) -> None:
    first = tree.wait_ok("doq")["serial"]
    issuer = tree.registry.cell("issuer")
    assert issuer.ref is not None
    issuer.ref.stop(block=True)  # transient: it stays down
    wait_for(lambda: issuer.state is ActorState.STOPPED, "the issuer to stop")

    with pytest.raises(ActorUnavailable, match="issuer"):
        tree.registry.ask("renewal", RenewNow("doq"))
    tree.registry.ask("renewal", RegisterCertificate("late", [f"late.{ZONE}"]))
    failed = wait_for(lambda: tree.status("late")["state"] == "failed" and tree.status("late"),
                      "the failure to show")  # fmt: skip
    assert "ActorUnavailable" in failed["last_error"] and failed["failures"] >= 1
    with pytest.raises(CertificateNotIssued):
        tree.registry.ask("renewal", GetBundle("late"))
    assert tree.status("doq")["serial"] == first  # the old certificate stays in service

    tree.registry.ask("renewal", RegisterCertificate("outside", ["www.example.org"]))
    refused = wait_for(lambda: tree.status("outside")["failures"] and tree.status("outside"),
                       "the policy refusal to show")  # fmt: skip
    assert refused["state"] == "failed"

    tree.restart("issuer")
    tree.wait_ok("late")
    tree.wait_ok("doq", other_than=first)  # the operator's RenewNow is carried out
    assert "NameNotPermitted" in (tree.status("outside")["last_error"] or "")
    assert tree.registry.cell("renewal").restarts == 0  # failures never crashed it
