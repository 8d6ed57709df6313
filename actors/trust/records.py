"""An asset's record in the TrustChain zone: its name and IPv6 addresses, signed by the
asset's own key, for one epoch.

An asset registered for the epoch publishes ``(name, addresses)`` with an Ed25519
signature over ``ASSET_RECORD || frame(name, epoch, frame_all(addresses))``
(``formats``): only the asset itself can say where it is, and a record is good for the
epoch it names (the next epoch needs a new registration and a new record, so a
record cannot outlive the asset's stake). The name is one DNS label (LDH, lowercase,
1-63 octets, no leading or trailing hyphen, no A-label), put under the zone's
``assets`` label by the resolver; the addresses are 1-8 distinct IPv6 unicast
addresses, in compressed form (no IPv4-mapped address, no multicast, nothing
unspecified): the zone is IPv6 only.

``check_record`` raises ``AssetRecordInvalid`` saying what is wrong; who holds a name
first in an epoch is the store's business (``NameTaken``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import formats
from .errors import AssetRecordInvalid

MAX_ADDRESSES = 8
SIGNATURE_BYTES = 64
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class AssetRecord:
    asset_key: bytes
    epoch: int
    name: str
    addresses: tuple[str, ...]  # compressed IPv6 text, in the order given
    signature: bytes

    @property
    def asset(self) -> str:
        return formats.asset_id(self.asset_key)


def normal_name(name: str) -> str:
    """The name as one lowercase LDH label, or ``AssetRecordInvalid``."""
    if not isinstance(name, str) or not _LABEL.fullmatch(name.lower()):
        raise AssetRecordInvalid(
            f"an asset's name is one DNS label (letters, digits, inner hyphens; 1-63), not {name!r}"
        )
    if name.lower().startswith("xn--"):
        raise AssetRecordInvalid(f"an asset's name is an LDH label, not an A-label ({name!r})")
    return name.lower()


def normal_addresses(addresses: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The addresses as compressed IPv6 text, or ``AssetRecordInvalid``."""
    if not 1 <= len(addresses) <= MAX_ADDRESSES:
        raise AssetRecordInvalid(f"an asset record has 1-{MAX_ADDRESSES} IPv6 addresses")
    out: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.IPv6Address(text)
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise AssetRecordInvalid(
                f"{text!r} is not an IPv6 address (the zone is IPv6 only)"
            ) from None
        if address.ipv4_mapped is not None or address.is_multicast or address.is_unspecified:
            raise AssetRecordInvalid(f"{text} is not an IPv6 unicast address for the zone")
        if address.compressed in out:
            raise AssetRecordInvalid(f"{text} is given twice")
        out.append(address.compressed)
    return tuple(out)


def record_tbs(name: str, epoch: int, addresses: tuple[str, ...]) -> bytes:
    return formats.ASSET_RECORD + formats.frame(name, epoch, formats.frame_all(addresses))


def sign_record(
    private_key: ed25519.Ed25519PrivateKey, epoch: int, name: str, addresses: list[str]
) -> AssetRecord:
    """The asset's side (``trustchain trust publish``)."""
    name, normal = normal_name(name), normal_addresses(addresses)
    signature = private_key.sign(record_tbs(name, epoch, normal))
    asset_key = private_key.public_key().public_bytes_raw()
    return AssetRecord(asset_key, epoch, name, normal, signature)


def check_record(
    asset_key: bytes, epoch: int, name: str, addresses: list[str], signature: bytes
) -> AssetRecord:
    """The record, checked: well formed and signed by ``asset_key`` for ``epoch``."""
    name, normal = normal_name(name), normal_addresses(addresses)
    if len(signature) != SIGNATURE_BYTES:
        raise AssetRecordInvalid(f"an asset record's signature is {SIGNATURE_BYTES} octets")
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(asset_key)
        key.verify(signature, record_tbs(name, epoch, normal))
    except (InvalidSignature, ValueError):
        raise AssetRecordInvalid(
            f"the record is not signed by asset {formats.asset_id(asset_key)} for epoch {epoch}"
        ) from None
    return AssetRecord(asset_key, epoch, name, normal, signature)
