"""PoStake: a stake record for an asset, signed by the stake authority.

    stake record = (asset key, amount, expires_at)
    signature    = ECDSA P-256 over SHA-256 of STAKE_RECORD || frame(asset key, amount,
                   expires_at), DER ECDSA-Sig-Value (what the HSM's ``sign`` returns)

The authority's key lives in the HSM; this module never signs. It builds the record
(``new_stake_record``, for ``trustchain stake grant``), gives the bytes to be signed
(``StakeRecord.tbs``), and checks a signed record against the authority's public key,
the asset presenting it, a moment and a minimum amount (``check_stake``).

Invariants: a ``StakeRecord`` always holds a 32-octet asset key and integers in
[0, 2^64) (what ``frame`` encodes), whoever built it; ``from_json`` takes untrusted
JSON and raises ``StakeInvalid`` on anything but exactly the fields ``to_json`` writes.
A record is valid strictly before ``expires_at``: at ``now_s == expires_at`` it has
expired. What the stake is worth (how amounts are earned or slashed) is not decided
here: the record says only that the authority vouched for ``amount`` until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import fields, formats
from .errors import StakeExpired, StakeInvalid

MAX_UINT64 = 2**64 - 1  # what ``formats.frame`` can encode
MAX_SIGNATURE_BYTES = 144  # a DER ECDSA-Sig-Value up to P-521 is at most 139 octets
DAY_S = 86_400
MAX_REMEMBERED = 4096  # stake signatures a StakeAuthority remembers having verified


@dataclass(frozen=True)
class StakeRecord:
    """What the stake authority vouches for: ``asset_key`` holds ``amount`` until
    ``expires_at`` (epoch seconds, exclusive)."""

    asset_key: bytes
    amount: int
    expires_at: int

    def __post_init__(self) -> None:
        if not isinstance(self.asset_key, bytes) or len(self.asset_key) != formats.ASSET_KEY_BYTES:
            raise StakeInvalid("a stake's asset key is a raw 32-octet Ed25519 public key")
        fields.uint(self.amount, "a stake's amount", 0, MAX_UINT64, StakeInvalid)
        fields.uint(self.expires_at, "a stake's expires_at", 0, MAX_UINT64, StakeInvalid)

    def tbs(self) -> bytes:
        """The bytes the stake authority signs."""
        return formats.STAKE_RECORD + formats.frame(self.asset_key, self.amount, self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "asset_key": self.asset_key.hex(),
            "amount": self.amount,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, obj: object) -> StakeRecord:
        got = fields.fields(
            obj, "a stake record", ("asset_key", "amount", "expires_at"), StakeInvalid
        )
        asset_key = fields.hex_bytes(
            got["asset_key"], "a stake's asset_key", formats.ASSET_KEY_BYTES, StakeInvalid
        )
        return cls(asset_key, got["amount"], got["expires_at"])  # ints checked there


@dataclass(frozen=True)
class SignedStake:
    """A stake record and the authority's DER ECDSA signature over ``record.tbs()``."""

    record: StakeRecord
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.record, StakeRecord):
            raise StakeInvalid("a signed stake holds a StakeRecord")
        if not isinstance(self.signature, bytes) or not 0 < len(self.signature) <= (
            MAX_SIGNATURE_BYTES
        ):
            raise StakeInvalid(
                f"a stake signature is a DER ECDSA signature of 1 to {MAX_SIGNATURE_BYTES} octets"
            )

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record.to_json(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj: object) -> SignedStake:
        got = fields.fields(obj, "a signed stake", ("record", "signature"), StakeInvalid)
        record = StakeRecord.from_json(got["record"])
        return cls(
            record,
            fields.hex_bytes(
                got["signature"],
                "a stake's signature",
                MAX_SIGNATURE_BYTES,
                StakeInvalid,
                exact=False,
            ),
        )


def new_stake_record(asset_key: bytes, amount: int, now_s: int, days: int) -> StakeRecord:
    """The record ``trustchain stake grant ASSET AMOUNT --days N`` asks the HSM to sign:
    valid from ``now_s`` for ``days`` days."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise StakeInvalid(f"a stake lasts at least one day, not {days!r}")
    fields.uint(now_s, "now_s", 0, MAX_UINT64, StakeInvalid)
    return StakeRecord(asset_key, amount, now_s + days * DAY_S)


class StakeAuthority:
    """The stake authority's public key, remembering the signatures it verified.

    A registration's stake is checked again with each of its asset's requests, by
    every validator: its ECDSA verification was 0.09-0.15 ms of a 1.2-1.8 ms request
    check. A signature over the same record that verified once verifies again, so it
    is kept (record bytes and signature, exactly; at most ``MAX_REMEMBERED``, the
    memory emptied when full) and not verified twice. What the record says (its
    asset, amount and expiry) is still checked each time by ``check_stake``.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self.public_key = public_key
        self._verified: set[tuple[bytes, bytes]] = set()

    def signed(self, tbs: bytes, signature: bytes) -> bool:
        """Whether the authority's key signed ``tbs`` with ``signature``."""
        if (tbs, signature) in self._verified:
            return True
        try:
            self.public_key.verify(signature, tbs, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()
        self._verified.add((tbs, signature))
        return True


def check_stake(
    signed: SignedStake,
    authority: ec.EllipticCurvePublicKey | StakeAuthority,
    asset_key: bytes,
    now_s: int,
    min_amount: int,
) -> None:
    """Raise unless the stake authority signed ``signed.record``, for ``asset_key``, of at
    least ``min_amount``, and it has not expired at ``now_s``.

    ``StakeInvalid`` for a bad signature, another asset or too small an amount;
    ``StakeExpired`` once ``now_s >= expires_at``. The signature is checked first: the
    fields of a record nobody signed mean nothing. ``authority`` is the authority's
    public key, or a ``StakeAuthority`` (which verifies each signature once)."""
    record = signed.record
    if not isinstance(authority, StakeAuthority):
        authority = StakeAuthority(authority)
    if not authority.signed(record.tbs(), signed.signature):
        raise StakeInvalid(
            "the stake record is not signed by the stake authority; ask it to grant the "
            "stake again (trustchain stake grant)"
        )
    if record.asset_key != asset_key:
        raise StakeInvalid(
            f"the stake record is for asset {formats.asset_id(record.asset_key)}, "
            f"not {formats.asset_id(asset_key)}",
            asset=formats.asset_id(asset_key),
        )
    if record.amount < min_amount:
        raise StakeInvalid(
            f"the stake of {record.amount} is below the minimum of {min_amount}",
            amount=record.amount,
            min_amount=min_amount,
        )
    if now_s >= record.expires_at:
        raise StakeExpired(
            f"the stake expired at {record.expires_at} (epoch seconds; now {now_s}); "
            "ask the stake authority for a new one",
            expires_at=record.expires_at,
            now_s=now_s,
        )


def authority_key_from_spki(spki_der: bytes) -> ec.EllipticCurvePublicKey:
    """The stake authority's public key from its DER SubjectPublicKeyInfo (what the HSM
    gives for its key); ``StakeInvalid`` if that is not an ECDSA public key."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError):
        raise StakeInvalid("the stake authority's key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise StakeInvalid(f"the stake authority's key is a {type(key).__name__}, not ECDSA")
    return key
