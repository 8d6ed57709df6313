"""Just enough DER (X.690) to rebuild an RFC 6962 precertificate TBS.

RFC 6962 §3.2 signs the TBSCertificate of the precertificate *without* the
poison extension (1.3.6.1.4.1.11129.2.4.3); a verifier rebuilds the same bytes
from the final certificate by removing the embedded-SCT-list extension
(1.3.6.1.4.1.11129.2.4.2). Both are "drop one Extension from the [3] list and
re-encode the enclosing lengths"; every other byte is kept verbatim, so the
result is byte-identical to what the issuer signed. If the removed extension
was the only one, the whole optional ``[3] extensions`` field is omitted (an
empty SEQUENCE SIZE (1..MAX) is not valid), as certificate-transparency-go does.
Only low-tag-number, definite-length DER is accepted (X.509 uses nothing else).
"""

from __future__ import annotations

from .errors import MalformedStructure

SEQUENCE = 0x30
OCTET_STRING = 0x04
EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT, constructed


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def encode_oid(dotted: str) -> bytes:
    """DER of an OBJECT IDENTIFIER, tag and length included."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, value_start, value_end) of the element starting at ``pos``."""
    if pos + 2 > len(data):
        raise MalformedStructure("DER truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedStructure("DER high-tag-number form is not used in X.509")
    first = data[pos + 1]
    start = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise MalformedStructure("DER length is indefinite or too long")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise MalformedStructure("DER element runs past the end of its container")
    return tag, start, end


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The (tag, element_start, element_end) of each element in data[start:end]."""
    out = []
    pos = start
    while pos < end:
        tag, _, value_end = read_tlv(data, pos)
        if value_end > end:
            raise MalformedStructure("DER element runs past the end of its container")
        out.append((tag, pos, value_end))
        pos = value_end
    return out


def certificate_tbs(cert_der: bytes) -> bytes:
    """The TBSCertificate element (tag and length included) of a Certificate."""
    tag, start, end = read_tlv(cert_der, 0)
    if tag != SEQUENCE or end != len(cert_der):
        raise MalformedStructure("a certificate is one DER SEQUENCE")
    parts = children(cert_der, start, end)
    if len(parts) != 3 or parts[0][0] != SEQUENCE:
        raise MalformedStructure("a certificate is SEQUENCE {tbs, algorithm, signature}")
    return cert_der[parts[0][1] : parts[0][2]]


def tbs_without_extension(tbs: bytes, oid_dotted: str) -> bytes:
    """``tbs`` re-encoded without the extension ``oid_dotted``; error if absent."""
    oid = encode_oid(oid_dotted)
    tag, start, end = read_tlv(tbs, 0)
    if tag != SEQUENCE or end != len(tbs):
        raise MalformedStructure("a TBSCertificate is one DER SEQUENCE")
    out = bytearray()
    found = False
    for el_tag, el_start, el_end in children(tbs, start, end):
        if el_tag != EXTENSIONS_TAG:
            out += tbs[el_start:el_end]
            continue
        _, seq_start, seq_end = read_tlv(tbs, el_start)
        seq_tag, list_start, list_end = read_tlv(tbs, seq_start)
        if seq_tag != SEQUENCE or seq_end != el_end:
            raise MalformedStructure("[3] extensions must wrap one SEQUENCE")
        kept = bytearray()
        for ext_tag, ext_start, ext_end in children(tbs, list_start, list_end):
            _, body_start, _ = read_tlv(tbs, ext_start)
            if ext_tag == SEQUENCE and tbs.startswith(oid, body_start):
                if found:
                    raise MalformedStructure(f"extension {oid_dotted} appears twice")
                found = True
            else:
                kept += tbs[ext_start:ext_end]
        if kept:
            out += tlv(EXTENSIONS_TAG, tlv(SEQUENCE, bytes(kept)))
    if not found:
        raise MalformedStructure(f"the certificate has no extension {oid_dotted}")
    return tlv(SEQUENCE, bytes(out))
