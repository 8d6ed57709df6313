"""Just enough DER (ITU-T X.690 §8.1, §10) to wrap a signed structure and to
rebuild a CT precertificate's TBS; shared by the CA and the CT log.

Certificates (RFC 5280 §4.1) and CRLs (RFC 5280 §5.1) share one shape::

    SEQUENCE { tbs, signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }

and the tbs carries a copy of the AlgorithmIdentifier as its first SEQUENCE
child. This module reads and writes single TLVs with low tag numbers and
definite, minimally encoded lengths — nothing else. Anything outside that
(BER indefinite lengths, high tag numbers, non-minimal lengths, trailing or
missing bytes) is a ``DerError``. For the CA the inputs come from its own
builders, so a failure means a bug; the CT log also strips extensions from
submitted certificates (RFC 6962 §3.2: poison or SCT list removed, every
other byte verbatim, an emptied ``[3]`` omitted) and turns a ``DerError`` into
its typed ``MalformedStructure``.
"""

from __future__ import annotations

from typing import NamedTuple

SEQUENCE = 0x30
BIT_STRING = 0x03
OCTET_STRING = 0x04


class DerError(ValueError):
    """The bytes are not the DER this module handles."""


class Tlv(NamedTuple):
    """One element: its tag, where its value starts and where it ends."""

    tag: int
    start: int  # first byte of the header
    value_start: int
    end: int  # one past the last value byte


def encode_length(length: int) -> bytes:
    """X.690 §8.1.3 definite form, short if < 128, else the minimal long form."""
    if length < 0:
        raise DerError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 0x7E:
        raise DerError("length too large")
    return bytes([0x80 | len(body)]) + body


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One element with a single-octet tag."""
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise DerError(f"tag {tag:#x} is not a low-number tag")
    return bytes([tag]) + encode_length(len(value)) + value


def sequence(*elements: bytes) -> bytes:
    return encode_tlv(SEQUENCE, b"".join(elements))


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole octets: the unused-bits octet is 0 (X.690 §8.6.2)."""
    return encode_tlv(BIT_STRING, b"\x00" + data)


def octet_string(data: bytes) -> bytes:
    return encode_tlv(OCTET_STRING, data)


def read_tlv(data: bytes, offset: int = 0, limit: int | None = None) -> Tlv:
    """Read the element at ``offset``; it must end at or before ``limit``."""
    end_limit = len(data) if limit is None else limit
    if offset + 2 > end_limit:
        raise DerError("truncated header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length is not DER")
    else:
        count = first & 0x7F
        if pos + count > end_limit:
            raise DerError("truncated length")
        raw = data[pos : pos + count]
        if raw[0] == 0:
            raise DerError("length has a leading zero octet")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise DerError("long form used for a short length")
        pos += count
    if pos + length > end_limit:
        raise DerError("value runs past the end")
    return Tlv(tag, offset, pos, pos + length)


def children(data: bytes, parent: Tlv) -> list[Tlv]:
    """The elements inside a constructed element, which must fill it exactly."""
    items = []
    pos = parent.value_start
    while pos < parent.end:
        item = read_tlv(data, pos, parent.end)
        items.append(item)
        pos = item.end
    return items


def read_single(data: bytes, tag: int) -> Tlv:
    """The whole of ``data`` must be one element with this tag."""
    item = read_tlv(data)
    if item.tag != tag:
        raise DerError(f"expected tag {tag:#x}, found {item.tag:#x}")
    if item.end != len(data):
        raise DerError("trailing bytes after the element")
    return item


def replace_signature_algorithm(tbs: bytes, placeholder: bytes, algorithm: bytes) -> bytes:
    """``tbs`` with its signature AlgorithmIdentifier swapped, lengths re-encoded.

    The field is the first SEQUENCE child of a TBSCertificate (after the
    [0] version and the serial, RFC 5280 §4.1.2.3) and of a TBSCertList (after
    the optional version, §5.1.2.2). It must be exactly ``placeholder``.
    """
    outer = read_single(tbs, SEQUENCE)
    items = children(tbs, outer)
    field = next((item for item in items[:3] if item.tag == SEQUENCE), None)
    if field is None or tbs[field.start : field.end] != placeholder:
        raise DerError("the tbs does not carry the expected placeholder algorithm")
    body = tbs[outer.value_start : field.start] + algorithm + tbs[field.end : outer.end]
    return encode_tlv(SEQUENCE, body)


def signature_algorithm_of(tbs: bytes) -> bytes:
    """The signature AlgorithmIdentifier bytes inside a TBSCertificate or TBSCertList."""
    outer = read_single(tbs, SEQUENCE)
    field = next((i for i in children(tbs, outer)[:3] if i.tag == SEQUENCE), None)
    if field is None:
        raise DerError("no AlgorithmIdentifier in the tbs")
    return tbs[field.start : field.end]


def signed(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, algorithm, BIT STRING signature } (RFC 5280 §4.1, §5.1)."""
    if signature_algorithm_of(tbs) != algorithm:
        raise DerError("the outer algorithm must equal the one inside the tbs (§4.1.1.2)")
    return sequence(tbs, algorithm, bit_string(signature))


def encode_oid(dotted: str) -> bytes:
    """DER of an OBJECT IDENTIFIER, tag and length included (X.690 §8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode_tlv(0x06, bytes(body))


def certificate_tbs(cert: bytes) -> bytes:
    """The TBSCertificate element (tag and length included) of a Certificate."""
    outer = read_single(cert, SEQUENCE)
    parts = children(cert, outer)
    if len(parts) != 3 or parts[0].tag != SEQUENCE:
        raise DerError("a certificate is SEQUENCE {tbs, algorithm, signature}")
    return cert[parts[0].start : parts[0].end]


def extension(oid: bytes, value: bytes, *, critical: bool = False) -> bytes:
    """An Extension (RFC 5280 §4.1): SEQUENCE { OID, critical BOOLEAN DEFAULT FALSE,
    extnValue OCTET STRING }; ``oid`` is DER (tag and length), ``value`` what the
    OCTET STRING holds."""
    flag = b"\x01\x01\xff" if critical else b""  # DER omits a DEFAULT (X.690 §11.5)
    return sequence(oid, flag, octet_string(value))


def append_extension(tbs: bytes, extension_der: bytes) -> bytes:
    """A TBSCertificate with ``extension_der`` added after its last extension.

    The [3] EXPLICIT extensions field is the last of a TBSCertificate (RFC 5280
    §4.1); every other byte is kept verbatim and the lengths re-encoded. The CA adds
    the CT poison or the SCT list this way to the one TBS it built (RFC 6962 §3.2:
    the two must be equal but for those), instead of building the certificate twice.
    """
    outer = read_single(tbs, SEQUENCE)
    items = children(tbs, outer)
    wrapper = items[-1] if items else None
    if wrapper is None or wrapper.tag != 0xA3:
        raise DerError("the tbs does not end with its extensions")
    extensions = read_tlv(tbs, wrapper.value_start, wrapper.end)
    if extensions.tag != SEQUENCE or extensions.end != wrapper.end:
        raise DerError("the extensions field is not one SEQUENCE")
    grown = encode_tlv(SEQUENCE, tbs[extensions.value_start : extensions.end] + extension_der)
    return encode_tlv(SEQUENCE, tbs[outer.value_start : wrapper.start] + encode_tlv(0xA3, grown))


def strip_extension(tbs: bytes, extension_oid: bytes) -> bytes:
    """A TBSCertificate without the extension whose DER OID is ``extension_oid``.

    Extensions are the [3] EXPLICIT SEQUENCE OF Extension (RFC 5280 §4.1);
    each Extension starts with its OID. Used to turn a precertificate's TBS into
    the one a CT log signs (RFC 6962 §3.2: the poison removed).
    """
    outer = read_single(tbs, SEQUENCE)
    items = children(tbs, outer)
    wrapper = next((item for item in items if item.tag == 0xA3), None)
    if wrapper is None:
        raise DerError("the tbs has no extensions")
    extensions = read_tlv(tbs, wrapper.value_start, wrapper.end)
    kept = []
    for extension in children(tbs, extensions):
        oid = read_tlv(tbs, extension.value_start, extension.end)
        if tbs[oid.start : oid.end] != extension_oid:
            kept.append(tbs[extension.start : extension.end])
    if len(kept) == len(children(tbs, extensions)):
        raise DerError("the extension is not in the tbs")
    replacement = encode_tlv(0xA3, sequence(*kept)) if kept else b""
    body = tbs[outer.value_start : wrapper.start] + replacement + tbs[wrapper.end : outer.end]
    return encode_tlv(SEQUENCE, body)
