"""IssuerActor and the CT log together (real SoftHSM, tiles and SQLite on disk): the SCT
embedded in each certificate verifies against the log's key, the final certificate
follows the answer into the log (and a restart sends what is owed again), and a
submitted chain the log cannot read is refused, not a crash. The tree and its ``ca``
fixture are ``test_issuer.py``'s."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.issuer import GetCertificate, GetIssuanceStatus
from trustchain.supervisors import ActorState

from ..ca.conftest import dns_csr, make_key
from ..conftest import wait_until
from .test_issuer import CA, ZONE, ca

__all__ = ["ca"]  # the fixture, used by name


def test_the_embedded_sct_verifies_against_the_log_key(ca: CA) -> None:
    from cryptography.x509.certificate_transparency import LogEntryType as CryptoEntryType

    from trustchain.actors.ct import (
        LogEntryType,
        SignedCertificateTimestamp,
        TimestampedEntry,
        decode_sct_list,
        issuer_key_hash,
        precert_tbs_from_certificate,
        verify_sct,
    )
    from trustchain.actors.ctlog import GetLogInfo

    reply = ca.issue(dns_csr(make_key("ec-p256"), f"ct.{ZONE}"))
    cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
    info = ca.registry.ask("ctlog", GetLogInfo())
    log_key = serialization.load_pem_public_key(info["public_key"].encode())
    assert isinstance(log_key, ec.EllipticCurvePublicKey)

    # cryptography reads the SCT list the issuer embedded ...
    (embedded,) = cert.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    assert embedded.log_id == info["log_id"]
    assert embedded.entry_type == CryptoEntryType.PRE_CERTIFICATE
    # ... and our own check of the RFC 6962 §3.2 signature, over the precert TBS
    # rebuilt from the final certificate (the SCT list removed).
    raw = cert.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")).value.public_bytes()  # fmt: skip
    (sct,) = decode_sct_list(raw[2:] if raw[1] < 0x80 else raw[2 + (raw[1] & 0x7F) :])
    assert sct == SignedCertificateTimestamp.decode(reply["sct"])
    assert int(embedded.timestamp.timestamp() * 1000) == sct.timestamp
    intermediate = x509.load_pem_x509_certificate(reply["chain"].encode())
    spki = intermediate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    tbs = precert_tbs_from_certificate(cert.public_bytes(serialization.Encoding.DER))
    assert tbs == cert.tbs_precertificate_bytes  # cryptography agrees on the rebuilt TBS
    entry = TimestampedEntry(sct.timestamp, LogEntryType.PRECERT_ENTRY, tbs, issuer_key_hash(spki))
    verify_sct(sct, log_key, LogEntryType.PRECERT_ENTRY, entry.signed_entry())
    assert sct.leaf_index() == reply["leaf_index"]
    # A different certificate's TBS does not verify under this SCT.
    other = x509.load_pem_x509_certificate(
        ca.issue(dns_csr(make_key("ec-p256"), f"ct2.{ZONE}"))["certificate"].encode())  # fmt: skip
    wrong = TimestampedEntry(sct.timestamp, LogEntryType.PRECERT_ENTRY,
                             other.tbs_precertificate_bytes, issuer_key_hash(spki))  # fmt: skip
    with pytest.raises(Exception, match="signature"):
        verify_sct(sct, log_key, LogEntryType.PRECERT_ENTRY, wrong.signed_entry())


def test_the_final_certificate_follows_the_answer_into_the_log_and_a_restart_resends_it(
    ca: CA,
) -> None:
    import sqlite3

    from trustchain.actors.ct.rfc6962 import decode_merkle_tree_leaf
    from trustchain.actors.ctlog import GetEntryAndProof, GetSTH
    from trustchain.supervisors import RestartChild

    reply = ca.issue(dns_csr(make_key("ec-p256"), f"final.{ZONE}"))
    assert "final_leaf_index" not in reply  # answered once the precertificate is logged
    final = GetCertificate(reply["serial"])

    def final_index() -> int | None:
        index: int | None = ca.registry.ask("issuer", final)["final_leaf_index"]
        return index

    wait_until(lambda: final_index() is not None, "the final certificate in the log")
    index = final_index()
    assert index is not None and index > reply["leaf_index"]
    size = ca.registry.ask("ctlog", GetSTH())["tree_size"]
    entry = ca.registry.ask("ctlog", GetEntryAndProof(index, size))
    leaf = decode_merkle_tree_leaf(entry["leaf_input"])  # bytes in process (base64 in JSON)
    cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
    assert leaf.certificate == cert.public_bytes(serialization.Encoding.DER)

    # As if a crash came between the record and the log's answer: owed again. The issuer
    # sends it at start-up; the log answers the repeat with the entry it has.
    assert ca.registry.ask("issuer", GetIssuanceStatus())["finals_owed"] == 0
    with sqlite3.connect(ca.config.database) as db:
        db.execute("UPDATE final_log SET leaf_index = NULL")
    assert ca.registry.ask("issuer", GetIssuanceStatus()) == {"finals_owed": 1,
                                                              "finals_sending": 0}  # fmt: skip
    cell = ca.registry.cell("issuer")
    before = cell.incarnation
    ca.registry.tell("root", RestartChild("issuer"))
    wait_until(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
               "the issuer to run again", timeout=30)  # fmt: skip
    wait_until(lambda: final_index() is not None, "the final certificate sent again")
    assert final_index() == index
    assert ca.registry.ask("ctlog", GetSTH())["tree_size"] == size  # nothing logged twice
    assert ca.registry.ask("issuer", GetIssuanceStatus())["finals_owed"] == 0


def test_a_submitted_certificate_with_a_duplicate_extension_is_an_invalid_chain(ca: CA) -> None:
    """x509.DuplicateExtension escaped the log's chain check and crashed it."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from trustchain.actors import der
    from trustchain.actors.ct import InvalidChain
    from trustchain.actors.ctlog import AddChain

    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    usage = dict.fromkeys(["content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only",
                           "decipher_only"], False)  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"a.{ZONE}")]), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
        .sign(key, None)
    )  # fmt: skip
    # KeyUsage's OID (2.5.29.15) becomes SAN's (2.5.29.17): same length, no length to mend
    tbs = cert.tbs_certificate_bytes.replace(bytes.fromhex("0603551d0f"),
                                             bytes.fromhex("0603551d11"))  # fmt: skip
    forged = der.sequence(tbs, bytes.fromhex("300506032b6570"), der.bit_string(key.sign(tbs)))
    before = ca.registry.cell("ctlog").incarnation
    with pytest.raises(InvalidChain, match="extensions cannot be read"):
        ca.registry.ask("ctlog", AddChain([forged]))
    assert ca.registry.cell("ctlog").incarnation == before
    assert ca.registry.cell("ctlog").state is ActorState.RUNNING
