"""actors/acme/core.py without threads: whole ACME flows driven by requests signed with
the ``acme`` library's own JWS (as certbot signs them), over a real SQLite store, with
the effects' results fed as the detector and the issuer answer them. Time is passed in.

``Client`` and ``Issuer`` here are also used by the other tests of the core
(``test_core_refusals``, ``test_core_lifecycle``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Issue, Validate
from trustchain.actors.acme.jws import thumbprint
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.store import AcmeStore
from trustchain.config import AcmeConfig, CaConfig

BASE = "https://[::1]:8443"
DIRECTORY = BASE + "/acme/directory"
T0 = 1_800_000_000.0
ZONE = "example.com"
ERROR = "urn:ietf:params:acme:error:"


def make_core(path: Path, **acme: Any) -> AcmeCore:
    config = AcmeConfig(database=path, **acme)
    ca = CaConfig(permitted_zones=[ZONE], allow_wildcards=True)
    return AcmeCore(config, ca, AcmeStore(path), NonceStore(config.nonces))


def b64(data: bytes) -> str:
    return jose.encode_b64jose(data)


class Client:
    """An ACME client in memory: it signs as certbot does and talks to a core directly,
    keeping the effects the core asked for."""

    def __init__(self, core: AcmeCore, now: float = T0) -> None:
        self.core = core
        self.now = now
        self.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.kid: str | None = None
        self.nonce: str | None = None
        self.effects: list[Any] = []
        self.last: dict[str, Any] = {}

    def send(self, method: str, url: str, body: bytes = b"",
             content_type: str = "application/jose+json") -> dict[str, Any]:  # fmt: skip
        answer, effects = self.core.handle(AcmeRequest(method, url, body, content_type), self.now)
        self.effects.extend(effects)
        assert answer is not None
        self.nonce = header(answer, "Replay-Nonce")
        self.last = answer
        return answer

    def sign(self, url: str, payload: dict[str, Any] | None, *, key: jose.JWK | None = None,
             jwk: bool = False, nonce: str | None = None) -> bytes:  # fmt: skip
        if self.nonce is None:
            self.send("HEAD", BASE + "/acme/new-nonce")
        data = b"" if payload is None else json.dumps(payload).encode()
        used = nonce or self.nonce
        assert used is not None
        signed = acme_jws.JWS.sign(data, key=key or self.key, alg=jose.ES256,
                                   nonce=jose.b64decode(used), url=url,
                                   kid=None if jwk else self.kid)  # fmt: skip
        return signed.json_dumps().encode()

    def post(self, url: str, payload: dict[str, Any] | None = None, **how: Any) -> dict[str, Any]:
        """POST a signed payload (None: POST-as-GET); the answer, raw."""
        return self.send("POST", url, self.sign(url, payload, **how))

    def register(self, **payload: Any) -> dict[str, Any]:
        answer = self.post(BASE + "/acme/new-account", {"contact": [], **payload}, jwk=True)
        assert answer["status"] in (200, 201), body(answer)
        self.kid = header(answer, "Location")
        return answer

    def order(self, *names: str, **payload: Any) -> dict[str, Any]:
        identifiers = [{"type": "ip" if ":" in n else "dns", "value": n} for n in names]
        return self.post(BASE + "/acme/new-order", {"identifiers": identifiers, **payload})

    def answer_challenge(self, order: dict[str, Any], kind: str = "http-01") -> list[Validate]:
        """Answer the challenge of ``kind`` of every authorization of ``order``."""
        validations = []
        for authz_url in order["authorizations"]:
            authz = body(self.post(authz_url))
            (challenge,) = [c for c in authz["challenges"] if c["type"] == kind]
            before = len(self.effects)
            reply = self.post(challenge["url"], {})
            assert reply["status"] == 200 and body(reply)["status"] == "processing"
            validations += [e for e in self.effects[before:] if isinstance(e, Validate)]
        return validations


def header(answer: dict[str, Any], name: str) -> str | None:
    values = [v for n, v in answer["headers"] if n.lower() == name.lower()]
    return values[0] if values else None


def headers(answer: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in answer["headers"] if n.lower() == name.lower()]


def body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


def problem(answer: dict[str, Any]) -> str:
    assert answer["content_type"] == "application/problem+json", answer
    return str(body(answer)["type"]).removeprefix(ERROR)


def approval(validate: Validate, now: float, valid_for: float = 28_800) -> dict[str, Any]:
    """What the detector answers ValidateChallenge when 2f+1 validators approve."""
    m = validate.message
    return {"account": m.account, "type": m.identifier_type, "identifier": m.identifier,
            "kind": m.kind, "validated_at": now, "expires": now + valid_for,
            "decision": {"outcome": "approve", "votes": ["dm90ZQ=="]}}  # fmt: skip


class Issuer:
    """Answers IssueCertificate as the issuer does (its answer's shape), with a CA of
    its own made here."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")])
        now = datetime.fromtimestamp(T0, UTC)
        self.name = name
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip

    def answer(self, issue: Issue, now: float) -> dict[str, Any]:
        csr = x509.load_pem_x509_csr(issue.message.csr.encode())
        start = datetime.fromtimestamp(now, UTC)
        validity = timedelta(seconds=issue.message.validity_s or 86_400)
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        leaf = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.name)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + validity)
            .add_extension(san.value, critical=True).add_extension(aki, critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        return {"serial": format(leaf.serial_number, "x"), "certificate": pem,
                "chain": self.cert.public_bytes(serialization.Encoding.PEM).decode(),
                "not_before": leaf.not_valid_before_utc.isoformat(),
                "not_after": leaf.not_valid_after_utc.isoformat(), "ca": "ca-intermediate",
                "names": [n.value if isinstance(n, x509.DNSName) else str(n.value)
                          for n in san.value]}  # fmt: skip


def csr_for(*names: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """A CSR for ``names``, base64url DER as finalize takes it."""
    import ipaddress

    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if ":" in n else x509.DNSName(n) for n in names
    ]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(key, hashes.SHA256()))  # fmt: skip
    return b64(csr.public_bytes(serialization.Encoding.DER))


def issue(client: Client, issuer: Issuer, *names: str, **order: Any) -> dict[str, Any]:
    """A whole order to a valid certificate; the order's final JSON and URL."""
    reply = client.order(*names, **order)
    assert reply["status"] == 201, body(reply)
    url = header(reply, "Location")
    assert url is not None
    if body(reply)["status"] == "pending":  # (else its authorizations are reused)
        for validate in client.answer_challenge(body(reply)):
            client.core.validated(validate.challenge_id, approval(validate, client.now),
                                  client.now)  # fmt: skip
    before = len(client.effects)
    reply = client.post(body(reply)["finalize"], {"csr": csr_for(*names)})
    assert reply["status"] == 200, body(reply)
    (effect,) = client.effects[before:]
    client.core.issued(effect.order_id, issuer.answer(effect, client.now), client.now)
    return {**body(client.post(url)), "url": url}


@pytest.fixture
def core(tmp_path: Path) -> AcmeCore:
    return make_core(tmp_path / "acme.sqlite3")


@pytest.fixture
def client(core: AcmeCore) -> Client:
    client = Client(core)
    client.register(contact=["mailto:admin@example.com"])
    return client


# The directory and nonces -------------------------------------------------------------------


def test_the_directory_names_every_resource_and_the_profiles(tmp_path: Path) -> None:
    core = make_core(tmp_path / "a.sqlite3", terms_of_service="https://example.com/tos",
                     website="https://example.com", eab_required=True,
                     eab_keys={"kid-1": b64(b"k" * 32)})  # fmt: skip
    reply = Client(core).send("GET", DIRECTORY)
    directory = body(reply)
    assert reply["status"] == 200 and reply["content_type"] == "application/json"
    for name, path in [("newNonce", "new-nonce"), ("newAccount", "new-account"),
                       ("newOrder", "new-order"), ("revokeCert", "revoke-cert"),
                       ("keyChange", "key-change"), ("renewalInfo", "renewal-info")]:  # fmt: skip
        assert directory[name] == f"{BASE}/acme/{path}"
    meta = directory["meta"]
    assert meta["termsOfService"] == "https://example.com/tos"
    assert meta["website"] == "https://example.com"
    assert meta["externalAccountRequired"] is True
    assert set(meta["profiles"]) == {"default", "short"}
    assert "86400 s" in meta["profiles"]["default"] and "21600 s" in meta["profiles"]["short"]
    assert header(reply, "Replay-Nonce")
    assert header(reply, "Link") == f'<{DIRECTORY}>;rel="index"'


def test_urls_come_from_base_url_when_it_is_set(tmp_path: Path) -> None:
    core = make_core(tmp_path / "a.sqlite3", base_url="https://acme.example.com/")
    directory = body(Client(core).send("GET", DIRECTORY))
    assert directory["newOrder"] == "https://acme.example.com/acme/new-order"


def test_new_nonce_is_200_to_head_204_to_get_and_never_cached(core: AcmeCore) -> None:
    client = Client(core)
    head = client.send("HEAD", BASE + "/acme/new-nonce")
    get = client.send("GET", BASE + "/acme/new-nonce")
    assert (head["status"], get["status"]) == (200, 204)
    for reply in (head, get):
        assert header(reply, "Cache-Control") == "no-store" and reply["body"] == b""
    assert header(head, "Replay-Nonce") != header(get, "Replay-Nonce")


# A whole order --------------------------------------------------------------------------------


def test_an_order_from_account_to_certificate(client: Client) -> None:
    core, issuer = client.core, Issuer()
    reply = client.order("www.example.com", profile="short")
    assert reply["status"] == 201
    order_url = header(reply, "Location")
    order = body(reply)
    assert order["status"] == "pending" and order["profile"] == "short"
    assert order["identifiers"] == [{"type": "dns", "value": "www.example.com"}]
    assert order["expires"].endswith("Z") and order["finalize"] == f"{order_url}/finalize"

    authz = body(client.post(order["authorizations"][0]))
    assert authz["status"] == "pending"
    assert {c["type"] for c in authz["challenges"]} == {"http-01", "dns-01", "tls-alpn-01"}
    http01 = next(c for c in authz["challenges"] if c["type"] == "http-01")
    reply = client.post(http01["url"], {})
    assert body(reply)["status"] == "processing"
    assert header(reply, "Link") and f'<{order["authorizations"][0]}>;rel="up"' in headers(
        reply, "Link"
    )
    (validate,) = client.effects
    assert isinstance(validate, Validate)
    message = validate.message
    assert (message.kind, message.identifier_type, message.identifier) == (
        "http-01", "dns", "www.example.com")  # fmt: skip
    assert (
        message.key_authorization
        == f"{http01['token']}.{thumbprint(client.key.public_key().to_json())}"
    )
    assert message.account == client.kid.rsplit("/", 1)[1] and message.port == 80

    # the validators approve (the detector's answer)
    assert core.validated(validate.challenge_id, approval(validate, client.now), client.now) == []
    challenge = body(client.post(http01["url"]))
    assert challenge["status"] == "valid" and challenge["validated"].endswith("Z")
    assert body(client.post(order["authorizations"][0]))["status"] == "valid"
    assert body(client.post(order_url))["status"] == "ready"

    reply = client.post(order["finalize"], {"csr": csr_for("www.example.com")})
    assert body(reply)["status"] == "processing" and header(reply, "Retry-After")
    assert header(reply, "Location") == order_url
    issue_effect = client.effects[-1]
    assert isinstance(issue_effect, Issue)
    assert issue_effect.message.validity_s == 21_600
    assert issue_effect.message.acme_account == message.account
    reply = client.post(order_url)
    assert body(reply)["status"] == "processing" and header(reply, "Retry-After")

    core.issued(issue_effect.order_id, issuer.answer(issue_effect, client.now), client.now)
    order = body(client.post(order_url))
    assert order["status"] == "valid"
    download = client.post(order["certificate"])
    assert download["status"] == 200
    assert download["content_type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(download["body"])
    assert [c.issuer for c in chain] == [issuer.name, issuer.name]  # the leaf, then its CA
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["www.example.com"]


def test_every_answer_carries_a_fresh_nonce_and_the_directory_link(client: Client) -> None:
    seen = set()
    for reply in [client.order("a.example.com"), client.post(BASE + "/acme/nowhere"),
                  client.send("GET", DIRECTORY)]:  # fmt: skip
        nonce = header(reply, "Replay-Nonce")
        assert nonce and nonce not in seen
        seen.add(nonce)
        assert f'<{DIRECTORY}>;rel="index"' in headers(reply, "Link")


def test_a_second_order_reuses_the_valid_authorization(client: Client) -> None:
    first = issue(client, Issuer(), "www.example.com")
    reply = client.order("www.example.com")
    assert body(reply)["status"] == "ready"
    assert body(reply)["authorizations"] == first["authorizations"]


def test_no_reuse_when_authorization_reuse_is_off(tmp_path: Path) -> None:
    client = Client(make_core(tmp_path / "a.sqlite3", authorization_reuse_s=0))
    client.register()
    first = issue(client, Issuer(), "www.example.com")
    again = body(client.order("www.example.com"))
    assert again["status"] == "pending" and again["authorizations"] != first["authorizations"]


def test_a_reused_authorization_is_not_reused_once_older_than_the_reuse_window(
    client: Client,
) -> None:
    issue(client, Issuer(), "www.example.com")
    client.now += client.core.config.authorization_reuse_s + 1
    assert body(client.order("www.example.com"))["status"] == "pending"


def test_ip_identifiers_get_no_dns01_and_wildcards_only_dns01(client: Client) -> None:
    order = body(client.order("2001:db8::1", "*.example.com"))
    kinds = {}
    for url in order["authorizations"]:
        authz = body(client.post(url))
        kinds[authz["identifier"]["value"], authz.get("wildcard", False)] = {
            c["type"] for c in authz["challenges"]}  # fmt: skip
    assert kinds == {("2001:db8::1", False): {"http-01", "tls-alpn-01"},
                     ("example.com", True): {"dns-01"}}  # fmt: skip


def test_challenge_types_follow_the_config(tmp_path: Path) -> None:
    client = Client(make_core(tmp_path / "a.sqlite3", challenge_types=["dns-01"]))
    client.register()
    authz = body(client.post(body(client.order("a.example.com"))["authorizations"][0]))
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]
    reply = client.order("2001:db8::2")
    assert reply["status"] == 400 and problem(reply) == "rejectedIdentifier"


def test_a_wildcard_order_validates_the_base_name_with_dns01(client: Client) -> None:
    (validate,) = client.answer_challenge(body(client.order("*.example.com")), "dns-01")
    assert (validate.message.kind, validate.message.identifier) == ("dns-01", "example.com")
    assert validate.message.port == 53


def test_answering_a_challenge_twice_validates_once(client: Client) -> None:
    order = body(client.order("b.example.com"))
    (validate,) = client.answer_challenge(order)
    again = client.post(_challenge_url(client, order), {})
    assert body(again)["status"] == "processing"
    assert [e for e in client.effects if isinstance(e, Validate)] == [validate]


def _challenge_url(client: Client, order: dict[str, Any], kind: str = "http-01") -> str:
    authz = body(client.post(order["authorizations"][0]))
    return str(next(c["url"] for c in authz["challenges"] if c["type"] == kind))


def test_the_orders_list_names_the_accounts_orders(client: Client) -> None:
    urls = [header(client.order(f"o{i}.example.com"), "Location") for i in range(3)]
    account = body(client.post(client.kid))
    reply = client.post(account["orders"])
    assert reply["status"] == 200 and body(reply)["orders"] == urls


def test_statuses_in_get_acme_status(client: Client) -> None:
    issue(client, Issuer(), "s.example.com")
    client.order("t.example.com")
    status = client.core.status()
    assert status["accounts"] == 1
    assert status["orders"] == {"valid": 1, "pending": 1}
    assert status["challenges"]["validated"] == 1 and status["certificates"] == 1
    assert status["nonces"] >= 1


def test_a_copy_of_the_config_with_profiles_is_used_as_given(tmp_path: Path) -> None:
    core = make_core(tmp_path / "a.sqlite3", profiles={"day": 86_400}, default_profile="day")
    client = Client(core)
    client.register()
    assert body(client.order("d.example.com"))["profile"] == "day"
    assert dataclasses.asdict(core.config)["default_profile"] == "day"
