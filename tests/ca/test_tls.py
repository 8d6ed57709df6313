"""An issued leaf serves TLS: a client that trusts only the root and checks the
host name completes the handshake, and refuses a name the leaf does not carry."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import IssuancePolicy, check_request, parse_csr


def serve_and_connect(tmp_path: Path, kit, leaf_key, leaf_cert, chain, server_hostname: str):
    chain_file, key_file = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain_file.write_bytes(kit.pem(leaf_cert) + kit.pem(chain.intermediate))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    root_file, _ = chain.write(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname is on
    client_context.load_verify_locations(root_file)
    assert client_context.check_hostname and client_context.verify_mode == ssl.CERT_REQUIRED

    server_side, client_side = socket.socketpair()
    server_side.settimeout(10)
    client_side.settimeout(10)
    server_error: list[BaseException] = []

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_side, server_side=True) as tls:
                tls.sendall(tls.recv(5))
        except (ssl.SSLError, OSError) as error:
            server_error.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(client_side, server_hostname=server_hostname) as tls:
            tls.sendall(b"hello")
            return tls.recv(5)
    finally:
        client_side.close()
        thread.join(10)


@pytest.mark.parametrize(
    ("ca_kind", "leaf_kind"),
    [("ec-p256", "ec-p256"), ("rsa-2048", "rsa-2048"), ("ec-p384", "ed25519")],
)
def test_client_trusting_only_the_root_completes_the_handshake(kit, tmp_path, ca_kind, leaf_kind):
    chain = kit.chain(ca_kind)
    key = kit.key(leaf_kind, 9)
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,))
    cert = chain.issue(check_request(parse_csr(kit.dns_csr(key, f"dot.{kit.ZONE}")), policy))
    echoed = serve_and_connect(tmp_path, kit, key, cert, chain, f"dot.{kit.ZONE}")
    assert echoed == b"hello"


def test_handshake_fails_for_a_host_name_the_leaf_does_not_carry(kit, tmp_path):
    chain = kit.chain("ec-p256")
    key = kit.key("ec-p256", 9)
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,))
    cert = chain.issue(check_request(parse_csr(kit.dns_csr(key, f"dot.{kit.ZONE}")), policy))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        serve_and_connect(tmp_path, kit, key, cert, chain, f"other.{kit.ZONE}")


def test_ipv6_address_san_matches_an_ip_literal_server_name(kit, tmp_path):
    chain = kit.chain("ec-p256")
    key = kit.key("ec-p256", 9)
    names = [x509.DNSName(f"dot.{kit.ZONE}"), x509.IPAddress(ipaddress.IPv6Address("::1"))]
    policy = IssuancePolicy(permitted_zones=(kit.ZONE,), allow_ipv6_sans=True)
    cert = chain.issue(check_request(parse_csr(kit.csr(key, names)), policy))
    assert serve_and_connect(tmp_path, kit, key, cert, chain, "::1") == b"hello"
    with pytest.raises(ssl.SSLCertVerificationError):
        serve_and_connect(tmp_path, kit, key, cert, chain, "::2")
