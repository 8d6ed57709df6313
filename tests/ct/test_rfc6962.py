"""RFC 6962 structures, and SCTs from the log checked on real certificates."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType as CryptoEntryType
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.ct import LogEntryInput, rfc6962
from trustchain.actors.ct.entries import TileLeaf
from trustchain.actors.ct.errors import InvalidLogEntry, MalformedStructure, SignatureError
from trustchain.actors.ct.rfc6962 import (
    DigitallySigned,
    LogEntryType,
    SignedCertificateTimestamp,
    TimestampedEntry,
)

DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo

entries = st.builds(
    lambda ts, precert, cert, ikh, ext: TimestampedEntry(
        ts,
        LogEntryType.PRECERT_ENTRY if precert else LogEntryType.X509_ENTRY,
        cert,
        ikh if precert else None,
        ext,
    ),
    st.integers(0, 2**64 - 1),
    st.booleans(),
    st.binary(min_size=1, max_size=300),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
)


@given(entries)
def test_timestamped_entry_and_merkle_leaf_round_trip(entry: TimestampedEntry) -> None:
    assert TimestampedEntry.decode(entry.encode()) == entry
    assert rfc6962.decode_merkle_tree_leaf(rfc6962.encode_merkle_tree_leaf(entry)) == entry
    assert rfc6962.encode_merkle_tree_leaf(entry)[:2] == b"\x00\x00"


@given(entries, st.binary(max_size=40), st.lists(st.binary(min_size=32, max_size=32), max_size=4))
def test_tile_leaf_round_trips(entry: TimestampedEntry, pre: bytes, fps: list[bytes]) -> None:
    pre_cert = (pre or b"x") if entry.entry_type == LogEntryType.PRECERT_ENTRY else None
    leaf = TileLeaf(entry, pre_cert, tuple(fps))
    assert TileLeaf.decode(leaf.encode()) == leaf


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**40 - 1),
    st.binary(min_size=1, max_size=80),
)
def test_sct_and_sct_list_round_trip(log_id: bytes, ts: int, index: int, sig: bytes) -> None:
    sct = SignedCertificateTimestamp(
        log_id, ts, rfc6962.leaf_index_extension(index), DigitallySigned(sig)
    )
    assert SignedCertificateTimestamp.decode(sct.encode()) == sct
    assert sct.leaf_index() == index
    assert rfc6962.decode_sct_list(rfc6962.encode_sct_list([sct, sct])) == [sct, sct]


def test_exact_byte_layouts() -> None:
    entry = TimestampedEntry(1, LogEntryType.X509_ENTRY, b"\xaa")
    assert entry.encode() == bytes.fromhex("00000000000000010000000001aa0000")
    assert rfc6962.leaf_index_extension(0x0102030405) == bytes.fromhex("0000050102030405")
    assert rfc6962.tree_head_signature_input(2, 3, bytes(32)) == (
        bytes.fromhex("000100000000000000020000000000000003") + bytes(32)
    )
    assert rfc6962.sct_signature_input(2, LogEntryType.X509_ENTRY, b"\x00\x00\x01\xaa", b"") == (
        bytes.fromhex("000000000000000000020000000001aa0000")
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 11, bytes.fromhex("00000000000000010002000001aa0000")],
)
def test_malformed_timestamped_entries_are_rejected(data: bytes) -> None:
    with pytest.raises(MalformedStructure):
        TimestampedEntry.decode(data)


def test_trailing_bytes_and_empty_certificates_are_rejected() -> None:
    good = TimestampedEntry(1, LogEntryType.X509_ENTRY, b"\xaa").encode()
    with pytest.raises(MalformedStructure):
        TimestampedEntry.decode(good + b"\x00")
    with pytest.raises(MalformedStructure):
        TimestampedEntry.decode(bytes.fromhex("000000000000000100000000000000"))
    with pytest.raises(MalformedStructure):
        rfc6962.leaf_index_extension(2**40)


class Pki:
    """A CA and the precertificate / final certificate pair of one issuance."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TrustChain Test CA")])
        start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(name)
            .public_key(leaf_key.public_key())
            .serial_number(0x1234_5678_9ABC_DEF0_1122)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(hours=24))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("host.trustchain.test")]), critical=True
            )
        )
        self.precert = self._finish(x509.PrecertPoison(), critical=True)
        self.issuer_key_hash = rfc6962.issuer_key_hash(self.ca.public_key().public_bytes(DER, SPKI))

    def _finish(self, ext: x509.ExtensionType, critical: bool) -> x509.Certificate:
        return (
            self._builder.add_extension(ext, critical=critical)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )

    def final(self, scts: list[SignedCertificateTimestamp]) -> x509.Certificate:
        value = rfc6962.sct_list_extension_value(scts)
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(rfc6962.SCT_LIST_OID), value)
        return self._finish(ext, critical=False)


def test_precert_sct_verifies_against_the_tbs_rebuilt_from_the_final_certificate(
    open_log, log_key
) -> None:
    pki = Pki()
    log = open_log(now_ms=1_700_000_000_000)
    log.append_batch([LogEntryInput.x509(b"an earlier entry")], 1_700_000_000_001)
    submission = LogEntryInput.precert(
        pki.precert.public_bytes(DER), pki.issuer_key_hash, [pki.ca.public_bytes(DER)]
    )
    [result] = log.append_batch([submission], 1_700_000_000_500)
    sct = result.sct
    assert (result.leaf_index, sct.leaf_index(), sct.timestamp) == (1, 1, 1_700_000_000_500)
    assert sct.log_id == rfc6962.log_id(log_key.public.public_bytes(DER, SPKI))

    final = pki.final([sct])
    final_der = final.public_bytes(DER)
    tbs = rfc6962.precert_tbs_from_certificate(final_der)
    assert tbs == final.tbs_precertificate_bytes == submission.tbs_certificate
    signed_entry = TimestampedEntry(
        0, LogEntryType.PRECERT_ENTRY, tbs, pki.issuer_key_hash
    ).signed_entry()
    rfc6962.verify_sct(sct, log_key.public, LogEntryType.PRECERT_ENTRY, signed_entry)

    # cryptography parses the embedded list and its SCT verifies independently.
    parsed = x509.load_der_x509_certificate(final_der)
    [embedded] = parsed.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    assert embedded.log_id == sct.log_id
    assert embedded.entry_type == CryptoEntryType.PRE_CERTIFICATE
    assert embedded.extension_bytes == rfc6962.leaf_index_extension(1)
    assert int(embedded.timestamp.replace(tzinfo=datetime.UTC).timestamp() * 1000) == sct.timestamp
    assert isinstance(embedded.signature_hash_algorithm, hashes.SHA256)
    log_key.public.verify(
        embedded.signature,
        rfc6962.sct_signature_input(
            sct.timestamp, LogEntryType.PRECERT_ENTRY, signed_entry, embedded.extension_bytes
        ),
        ec.ECDSA(hashes.SHA256()),
    )
    # The Merkle leaf stored by the log is what an auditor rebuilds from the SCT.
    [stored] = log.entries(1, 2)
    assert stored.timestamped_entry == TimestampedEntry(
        sct.timestamp, LogEntryType.PRECERT_ENTRY, tbs, pki.issuer_key_hash, sct.extensions
    )
    assert stored.pre_certificate == pki.precert.public_bytes(DER)


def test_x509_sct_verifies_and_a_wrong_key_or_entry_does_not(open_log, log_key) -> None:
    pki = Pki()
    der = pki.ca.public_bytes(DER)
    log = open_log()
    [result] = log.append_batch([LogEntryInput.x509(der)], 5)
    signed_entry = TimestampedEntry(0, LogEntryType.X509_ENTRY, der).signed_entry()
    rfc6962.verify_sct(result.sct, log_key.public, LogEntryType.X509_ENTRY, signed_entry)
    with pytest.raises(SignatureError):
        rfc6962.verify_sct(
            result.sct, pki.ca_key.public_key(), LogEntryType.X509_ENTRY, signed_entry
        )
    with pytest.raises(SignatureError):
        rfc6962.verify_sct(result.sct, log_key.public, LogEntryType.X509_ENTRY, signed_entry + b"x")


def test_a_precert_submission_without_the_poison_is_refused() -> None:
    pki = Pki()
    with pytest.raises(InvalidLogEntry):
        LogEntryInput.precert(pki.ca.public_bytes(DER), pki.issuer_key_hash)
    with pytest.raises(InvalidLogEntry):
        LogEntryInput.precert(b"\x30\x00", pki.issuer_key_hash)


def test_removing_the_only_extension_drops_the_extensions_field() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    precert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=1))
        .add_extension(x509.PrecertPoison(), critical=True)
        .sign(key, hashes.SHA256())
    )
    tbs = rfc6962.precert_tbs_from_precertificate(precert.public_bytes(DER))
    no_ext = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    assert tbs == no_ext.tbs_certificate_bytes
