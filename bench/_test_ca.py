"""A throwaway CA for benchmarks' peer servers (pebble, aioquic's DoQ example), which
need a TLS certificate that TrustChain did not issue.

``write_test_ca(directory, names)`` writes ``root.pem``, ``cert.pem``, ``fullchain.pem``
(the leaf, then the root) and ``key.pem`` under ``directory``: an EC P-256 root and a
leaf for ``names`` (DNS names and IP addresses), valid for a day.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def write_test_ca(directory: Path, names: list[str], root_name: str = "Bench Root") -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )

    def valid_for_a_day(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        return (
            builder.serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=1))
        )

    root = (
        valid_for_a_day(x509.CertificateBuilder())
        .subject_name(_name(root_name))
        .issuer_name(_name(root_name))
        .public_key(root_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        valid_for_a_day(x509.CertificateBuilder())
        .subject_name(_name(names[0]))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "root.pem").write_bytes(root.public_bytes(pem))
    (directory / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "fullchain.pem").write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip
    (directory / "key.pem").write_bytes(key)
