"""The HTTPS edge's CT and CA routes, through a real tree (SoftHSM, issuer, CT log, renewal)
and real TLS on [::1]: a client that trusts only TrustChain's root, proofs checked with
the verifiers in actors.ct, never with the code that made them."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import quote

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import (
    LogEntryType,
    SignedCertificateTimestamp,
    SignedTreeHead,
    TimestampedEntry,
    decode_data_tile,
    decode_sct_list,
    issuer_key_hash,
    leaf_hash,
    parse_checkpoint,
    precert_tbs_from_certificate,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
    verify_sct,
)
from trustchain.actors.ct.rfc6962 import DigitallySigned, encode_merkle_tree_leaf
from trustchain.actors.ctlog import CTLogActor, GetLogInfo
from trustchain.actors.hsm import HSMActor
from trustchain.actors.issuer import GetCAStatus, GetCertificate, IssueCertificate, IssuerActor
from trustchain.actors.monitor import CTMonitorActor
from trustchain.actors.renewal import RenewalActor
from trustchain.config import (
    CaConfig,
    Config,
    CtLogConfig,
    HsmConfig,
    HttpConfig,
    RenewalConfig,
    RuntimeConfig,
)
from trustchain.protocols.http import serve_http
from trustchain.supervisors import ChildSpec, Registry, Restart, start_root

from ..ca.conftest import dns_csr, make_key
from ..conftest import wait_until
from .conftest import free_port

ZONE = "pki.example.com"
DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def edge_config(tmp: Path, hsm: HsmConfig, **http: Any) -> Config:
    tag = uuid.uuid4().hex[:8]
    return Config(
        runtime=RuntimeConfig(control_socket=tmp / "ctl.sock", drain_timeout_s=2.0),
        hsm=hsm,
        ca=CaConfig(
            root_key=f"root-{tag}",
            intermediate_key=f"int-{tag}",
            permitted_zones=[ZONE],
            base_url="https://[::1]",
            database=tmp / "ca.sqlite3",
            crl_dir=tmp / "crl",
        ),
        ctlog=CtLogConfig(
            key=f"log-{tag}",
            storage_dir=tmp / "ct" / "tiles",
            index_db=tmp / "ct" / "index.sqlite3",
            max_entries_per_page=4,
            checkpoint_interval_s=0.2,
        ),
        renewal=RenewalConfig(directory=tmp / "tls", validity_s=3600, check_interval_s=0.2),
        http=HttpConfig(
            **{"port": 0, "plain_port": free_port(), "names": [f"ct.{ZONE}", "::1"], **http}
        ),
    )


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Edge:
    """A tree plus ``serve_http`` on its own trio loop in a thread; a client trusting the root."""

    def __init__(self, config: Config) -> None:
        self.config, self.registry = config, Registry()
        c = config
        children = [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, c.hsm)),
            # transient: a test stops the log to see /health and /ready say so
            ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, c.ctlog), Restart.TRANSIENT),
            ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, c.ca), start_timeout_s=60),
            ChildSpec("monitor", lambda ctx: CTMonitorActor.start(ctx, c.monitor)),
            ChildSpec("renewal", lambda ctx: RenewalActor.start(ctx, c.renewal)),
        ]
        self.root = start_root(self.registry, "root", children, max_restarts=10, period_s=60)
        self.ca = {ca["role"]: ca for ca in self.registry.ask("issuer", GetCAStatus())}
        self.root_pem = self.ca["root"]["certificate"]
        self.intermediate = x509.load_pem_x509_certificate(
            self.ca["intermediate"]["certificate"].encode())  # fmt: skip
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        assert self.started.wait(60), "the HTTP edge did not start"
        assert self.failure is None, self.failure

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                self.scope = nursery.cancel_scope
                self.port = await nursery.start(serve_http, self.config, self.registry)
                self.started.set()
        except BaseException as exc:  # shown by the fixture, not lost in a thread
            self.failure = exc
            self.started.set()

    def stop(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.scope.cancel)
        self.thread.join(30)
        self.root.stop(block=True, timeout=30)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.root_pem)  # the only trust anchor

    def connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("::1", self.port, context=self.client_context(),
                                           timeout=30)  # fmt: skip

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:  # fmt: skip
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read())  # fmt: skip
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_json(self, path: str, value: Any) -> Reply:
        return self.request("POST", path, json.dumps(value).encode(),
                            {"Content-Type": "application/json"})  # fmt: skip

    def issue(self, name: str) -> x509.Certificate:
        """A new certificate, returned once its final certificate is in the log too (it
        follows the answer), so that tree sizes do not move under a test."""
        csr = dns_csr(make_key("ec-p256"), f"{name}.{ZONE}").decode()
        reply = self.registry.ask("issuer", IssueCertificate(csr), timeout=30)
        record = GetCertificate(reply["serial"])
        wait_until(lambda: self.registry.ask("issuer", record)["final_leaf_index"] is not None,
                   "the final certificate in the log")  # fmt: skip
        return x509.load_pem_x509_certificate(reply["certificate"].encode())

    def log_info(self) -> dict[str, Any]:
        return self.registry.ask("ctlog", GetLogInfo())  # type: ignore[no-any-return]

    def log_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(self.log_info()["public_key"].encode())
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def sth(self) -> SignedTreeHead:
        """get-sth, its signature checked with the log key."""
        reply = self.get("/ct/v1/get-sth")
        assert reply.status == 200, reply.body
        body = reply.json()
        sth = SignedTreeHead(body["tree_size"], body["timestamp"],
                             b64(body["sha256_root_hash"]),
                             DigitallySigned.decode(b64(body["tree_head_signature"])))  # fmt: skip
        sth.verify(self.log_key())
        return sth


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def embedded_sct(cert: x509.Certificate) -> SignedCertificateTimestamp:
    raw = cert.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")).value.public_bytes()  # fmt: skip
    (sct,) = decode_sct_list(raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F) :])
    return sct


def precert_leaf_hash(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """The Merkle leaf hash of the precertificate entry, rebuilt from the final certificate."""
    sct = embedded_sct(cert)
    tbs = precert_tbs_from_certificate(cert.public_bytes(DER))
    key_hash = issuer_key_hash(issuer.public_key().public_bytes(DER, SPKI))
    entry = TimestampedEntry(sct.timestamp, LogEntryType.PRECERT_ENTRY, tbs, key_hash,
                             sct.extensions)  # fmt: skip
    return leaf_hash(encode_merkle_tree_leaf(entry))


@pytest.fixture(scope="module")
def edge(softhsm: HsmConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    e = Edge(edge_config(tmp_path_factory.mktemp("http"), softhsm))
    yield e
    e.stop()


# RFC 6962 reads ---------------------------------------------------------------------------


def test_an_issued_certificate_is_proven_in_the_tree_head_by_get_proof_by_hash(edge: Edge) -> None:
    cert = edge.issue("proof")
    sth = edge.sth()
    leaf = precert_leaf_hash(cert, edge.intermediate)
    reply = edge.get(f"/ct/v1/get-proof-by-hash?hash={quote(base64.b64encode(leaf))}"
                     f"&tree_size={sth.tree_size}")  # fmt: skip
    assert reply.status == 200, reply.body
    proof = reply.json()
    assert proof["leaf_index"] == embedded_sct(cert).leaf_index()
    audit_path = [b64(h) for h in proof["audit_path"]]
    verify_inclusion(leaf, proof["leaf_index"], sth.tree_size, audit_path, sth.root_hash)
    # an unescaped '+' arrives as a space and is read back
    raw = base64.b64encode(leaf).decode()
    assert edge.get(f"/ct/v1/get-proof-by-hash?hash={raw}&tree_size={sth.tree_size}"
                    ).json() == proof  # fmt: skip

    entry = edge.get(f"/ct/v1/get-entry-and-proof?leaf_index={proof['leaf_index']}"
                     f"&tree_size={sth.tree_size}").json()  # fmt: skip
    assert leaf_hash(b64(entry["leaf_input"])) == leaf
    verify_inclusion(leaf, proof["leaf_index"], sth.tree_size,
                     [b64(h) for h in entry["audit_path"]], sth.root_hash)  # fmt: skip


def test_consistency_between_two_tree_heads_verifies(edge: Edge) -> None:
    first = edge.sth()
    edge.issue("grow")
    second = edge.sth()
    assert second.tree_size > first.tree_size
    reply = edge.get(f"/ct/v1/get-sth-consistency?first={first.tree_size}"
                     f"&second={second.tree_size}")  # fmt: skip
    assert reply.status == 200, reply.body
    proof = [b64(h) for h in reply.json()["consistency"]]
    verify_consistency(first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof)


def test_get_entries_returns_the_leaves_a_page_at_a_time(edge: Edge) -> None:
    edge.issue("page-1")
    edge.issue("page-2")
    sth = edge.sth()
    assert sth.tree_size > 4
    page = edge.get(f"/ct/v1/get-entries?start=0&end={sth.tree_size - 1}").json()["entries"]
    assert len(page) == 4  # max_entries_per_page: the client asks again from 4
    hashes = [leaf_hash(b64(e["leaf_input"])) for e in page]
    tile = edge.get(f"/tile/0/000.p/{sth.tree_size}").body
    assert hashes == [tile[i * 32 : (i + 1) * 32] for i in range(4)]
    assert all(e["extra_data"] for e in page)
    last = edge.get(f"/ct/v1/get-entries?start={sth.tree_size - 1}&end=10000000").json()
    assert len(last["entries"]) == 1  # clamped to the tree


def test_get_roots_lists_trustchains_root(edge: Edge) -> None:
    roots = [b64(c) for c in edge.get("/ct/v1/get-roots").json()["certificates"]]
    root = x509.load_pem_x509_certificate(edge.root_pem.encode())
    assert root.public_bytes(DER) in roots


# Submissions -----------------------------------------------------------------------------


def test_add_chain_of_certificates_trustchain_issued_returns_valid_scts(edge: Edge) -> None:
    cert, root = edge.issue("submitted"), x509.load_pem_x509_certificate(edge.root_pem.encode())
    for chain, grows in (([cert, edge.intermediate], 0),  # the issuer logged it already
                         ([edge.intermediate, root], 1)):  # a new entry  # fmt: skip
        size = edge.log_info()["tree_size"]
        body = [base64.b64encode(c.public_bytes(DER)).decode() for c in chain]
        reply = edge.post_json("/ct/v1/add-chain", {"chain": body})
        assert reply.status == 200, reply.body
        sct_json = reply.json()
        assert set(sct_json) == {"sct_version", "id", "timestamp", "extensions", "signature"}
        assert sct_json["sct_version"] == 0 and b64(sct_json["id"]) == edge.log_info()["log_id"]
        sct = SignedCertificateTimestamp(
            b64(sct_json["id"]), sct_json["timestamp"], b64(sct_json["extensions"]),
            DigitallySigned.decode(b64(sct_json["signature"])))  # fmt: skip
        entry = TimestampedEntry(sct.timestamp, LogEntryType.X509_ENTRY, chain[0].public_bytes(DER))
        verify_sct(sct, edge.log_key(), LogEntryType.X509_ENTRY, entry.signed_entry())
        assert edge.log_info()["tree_size"] == size + grows


def foreign_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "not TrustChain")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(DER)


def test_bad_submissions_get_400_naming_the_problem_and_append_nothing(edge: Edge) -> None:
    size = edge.log_info()["tree_size"]
    intermediate = base64.b64encode(edge.intermediate.public_bytes(DER)).decode()
    foreign = base64.b64encode(foreign_certificate()).decode()
    cert = base64.b64encode(edge.issue("not-a-precert").public_bytes(DER)).decode()
    size = edge.log_info()["tree_size"]
    refused = {
        "add-chain": [{"chain": [foreign]}, {"chain": ["%%% not base64"]}, {"chain": []},
                      {"chain": "MIIB"}, {"chain": [cert[:200]]}, ["chain"], {}],
        "add-pre-chain": [{"chain": [cert, intermediate]}],  # no poison: not a precertificate
    }  # fmt: skip
    for path, bodies in refused.items():
        for body in bodies:
            reply = edge.post_json(f"/ct/v1/{path}", body)
            assert reply.status == 400, (path, body, reply.body)
            assert reply.headers["content-type"] == "application/json"
            assert reply.json()["error"]["message"], reply.body
    assert edge.post_json("/ct/v1/add-chain", {"chain": [foreign]}).json()["error"]["code"] == \
        "invalid_chain"  # fmt: skip
    not_json = edge.request("POST", "/ct/v1/add-chain", b"{chain: [", {})
    assert not_json.status == 400 and "JSON" in not_json.json()["error"]["message"]

    assert edge.log_info()["tree_size"] == size


@pytest.mark.parametrize(
    "body",
    [
        b'{"chain": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError in json
        b'{"chain": [], "n": ' + b"7" * 5_000 + b"}",  # past Python's int digit limit
        b'{"chain": [NaN]}',
    ],
    ids=["nested-100000", "int-5000-digits", "nan"],
)
def test_json_bodies_python_cannot_parse_get_400_with_a_json_error_not_500(
    edge: Edge, body: bytes
) -> None:
    reply = edge.request("POST", "/ct/v1/add-chain", body, {"Content-Type": "application/json"})
    assert reply.status == 400, reply.body
    # the control socket's error object: {"error": {"code", "message"}}
    assert reply.json() == {"error": {"code": "invalid_request", "message": ANY}}
    assert reply.json()["error"]["message"]


def test_a_tile_path_with_thousands_of_digits_is_refused_not_a_crash(edge: Edge) -> None:
    restarts = edge.registry.cell("ctlog").restarts
    reply = edge.get("/tile/0/" + "x123/" * 1_500 + "456")  # int() of 4,500 digits raised
    assert reply.status in (400, 404), reply.body
    assert edge.registry.cell("ctlog").restarts == restarts


@pytest.mark.parametrize("query", [
    "get-entries?start=5&end=1",  # reversed
    "get-entries?start=100000000&end=100000001",  # beyond the tree
    f"get-entries?start=0&end={2**64}",  # huge
    "get-entries?start=-1&end=3", "get-entries?start=a&end=3", "get-entries?end=3",
    "get-entries?start=0&start=1&end=3",
    "get-sth-consistency?first=1&second=100000000", "get-sth-consistency?first=3&second=2",
    "get-proof-by-hash?hash=AAAA&tree_size=1",  # not 32 bytes
    f"get-proof-by-hash?hash={quote(base64.b64encode(bytes(32)))}&tree_size=1",  # not there
    f"get-proof-by-hash?hash={quote(base64.b64encode(bytes(32)))}&tree_size=100000000",
    "get-entry-and-proof?leaf_index=0&tree_size=100000000",
    "get-entry-and-proof?leaf_index=5&tree_size=2",
])  # fmt: skip
def test_bad_ranges_and_parameters_get_400_naming_the_problem(edge: Edge, query: str) -> None:
    reply = edge.get(f"/ct/v1/{query}")
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert error["message"] and error["code"] in {
        "invalid_request", "index_out_of_range", "tree_size_out_of_range"}  # fmt: skip


# static-ct-api and the CA -----------------------------------------------------------------


def test_the_checkpoint_and_tiles_hash_to_the_tree_head(edge: Edge) -> None:
    checkpoint = edge.get("/checkpoint")
    assert checkpoint.status == 200, checkpoint.body
    assert checkpoint.headers["content-type"].startswith("text/plain")
    assert checkpoint.headers["cache-control"] == "no-store"
    info = edge.log_info()
    head = parse_checkpoint(checkpoint.body, edge.config.ctlog.origin, info["log_id"],
                            edge.log_key())  # fmt: skip
    n = head.tree_size
    assert 0 < n < 256
    level0 = edge.get(f"/tile/0/000.p/{n}")
    assert level0.status == 200 and level0.headers["content-type"] == "application/octet-stream"
    assert level0.headers["cache-control"] == "no-store"  # partial: a wider one replaces it
    hashes = [level0.body[i : i + 32] for i in range(0, len(level0.body), 32)]
    assert len(hashes) == n and root_from_leaf_hashes(hashes) == head.root_hash
    data = edge.get(f"/tile/data/000.p/{n}").body
    assert [leaf.leaf_hash() for leaf in decode_data_tile(data)] == hashes
    assert edge.get("/tile/0/000").status == 404  # not full yet
    assert edge.get(f"/tile/0/000.p/{n + 1}").status == 404
    assert edge.get("/tile/9/000").status == 404
    fingerprint = hashlib.sha256(edge.intermediate.public_bytes(DER)).hexdigest()
    issuer = edge.get(f"/issuer/{fingerprint}")
    assert issuer.status == 200 and issuer.body == edge.intermediate.public_bytes(DER)
    assert "immutable" in issuer.headers["cache-control"]
    assert edge.get(f"/issuer/{'0' * 64}").status == 404


def test_crls_and_ca_certificates_are_served_at_the_urls_in_certificates(edge: Edge) -> None:
    label = edge.ca["intermediate"]["key_label"]
    crl_url = edge.issue("crl").extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name[0].value  # fmt: skip
    assert crl_url == f"https://[::1]/crl/{label}.crl"
    reply = edge.get(f"/crl/{label}.crl")
    assert reply.status == 200 and reply.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(reply.body)
    assert crl.is_signature_valid(edge.intermediate.public_key())
    assert crl.issuer == edge.intermediate.subject
    for role in ("root", "intermediate"):
        reply = edge.get(f"/ca/{edge.ca[role]['key_label']}.cer")
        assert reply.status == 200 and reply.headers["content-type"] == "application/pkix-cert"
        assert x509.load_der_x509_certificate(reply.body) == x509.load_pem_x509_certificate(
            edge.ca[role]["certificate"].encode())  # fmt: skip
    assert edge.get("/crl/nobody.crl").status == 404
    assert edge.get("/ca/nobody.cer").status == 404
    # The root publishes a CRL too: the intermediate's CRL distribution point names it.
    root_label = edge.ca["root"]["key_label"]
    root_crl = x509.load_der_x509_crl(edge.get(f"/crl/{root_label}.crl").body)
    root = x509.load_pem_x509_certificate(edge.ca["root"]["certificate"].encode())
    assert root_crl.is_signature_valid(root.public_key()) and len(root_crl) == 0


def test_plain_http_serves_crls_and_ca_certificates_and_nothing_else(edge: Edge) -> None:
    import http.client

    label = edge.ca["intermediate"]["key_label"]

    def plain_get(path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("::1", edge.config.http.plain_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    status, body = plain_get(f"/crl/{label}.crl")
    assert status == 200
    assert x509.load_der_x509_crl(body).is_signature_valid(edge.intermediate.public_key())
    status, body = plain_get(f"/ca/{label}.cer")
    assert status == 200 and x509.load_der_x509_certificate(body) == edge.intermediate
    for path in ("/ct/v1/get-sth", "/checkpoint", "/metrics", "/health"):
        status, body = plain_get(path)
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
