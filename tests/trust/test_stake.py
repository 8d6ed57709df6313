"""PoStake: a record the stake authority signed, for this asset, of at least the
minimum, before it expires; its JSON form refuses anything malformed with StakeInvalid.

The authority's key is a software P-256 key here: the HSM returns the same DER
ECDSA-Sig-Value over SHA-256 (``actors/hsm/token.py`` ``sign``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.trust import formats, stake
from trustchain.actors.trust.errors import StakeExpired, StakeInvalid
from trustchain.actors.trust.stake import (
    DAY_S,
    SignedStake,
    StakeAuthority,
    StakeRecord,
    check_stake,
    new_stake_record,
)

from .strategies import json_values

AUTHORITY = ec.generate_private_key(ec.SECP256R1())
ASSET = bytes(range(32))
OTHER_ASSET = bytes(range(1, 33))
NOW = 1_700_000_000
EXPIRES = NOW + 30 * DAY_S


def sign(record: StakeRecord, key: ec.EllipticCurvePrivateKey = AUTHORITY) -> SignedStake:
    return SignedStake(record, key.sign(record.tbs(), ec.ECDSA(hashes.SHA256())))


def check(signed: SignedStake, asset: bytes = ASSET, now: int = NOW, minimum: int = 10) -> None:
    check_stake(signed, AUTHORITY.public_key(), asset, now, minimum)


def test_a_stake_the_authority_signed_for_this_asset_passes() -> None:
    check(sign(StakeRecord(ASSET, 10, EXPIRES)))


def test_a_signature_made_the_hsm_way_verifies() -> None:
    """The token hashes, signs the digest raw (r || s, CKM_ECDSA) and DER-encodes it."""
    record = StakeRecord(ASSET, 50, EXPIRES)
    digest = hashlib.sha256(record.tbs()).digest()
    r, s = decode_dss_signature(AUTHORITY.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    check(SignedStake(record, der))


def test_the_signed_bytes_are_the_separator_and_the_framed_fields() -> None:
    record = StakeRecord(ASSET, 7, EXPIRES)
    assert record.tbs() == formats.STAKE_RECORD + formats.frame(ASSET, 7, EXPIRES)


def test_a_stake_signed_by_another_key_is_invalid() -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(StakeInvalid, match="not signed by the stake authority") as e:
        check(sign(StakeRecord(ASSET, 10, EXPIRES), forger))
    assert e.value.code == "stake_invalid"


@pytest.mark.parametrize(
    "changed",
    [
        StakeRecord(ASSET, 10_000, EXPIRES),  # a larger amount
        StakeRecord(ASSET, 10, EXPIRES + DAY_S),  # a later expiry
        StakeRecord(OTHER_ASSET, 10, EXPIRES),  # another asset
    ],
)
def test_a_record_changed_after_signing_is_invalid(changed: StakeRecord) -> None:
    signature = sign(StakeRecord(ASSET, 10, EXPIRES)).signature
    with pytest.raises(StakeInvalid, match="not signed"):
        check(SignedStake(changed, signature), asset=changed.asset_key)


@pytest.mark.parametrize("garbage", [b"\x30", b"\x00" * 70, b"\x30\x06\x02\x01\x00\x02\x01\x00"])
def test_a_signature_that_is_not_der_ecdsa_is_invalid(garbage: bytes) -> None:
    with pytest.raises(StakeInvalid, match="not signed"):
        check(SignedStake(StakeRecord(ASSET, 10, EXPIRES), garbage))


def test_a_stake_for_another_asset_is_invalid() -> None:
    with pytest.raises(StakeInvalid, match=OTHER_ASSET.hex()) as e:
        check(sign(StakeRecord(OTHER_ASSET, 10, EXPIRES)))
    assert e.value.code == "stake_invalid"


def test_an_amount_below_the_minimum_is_invalid_and_says_the_minimum() -> None:
    check(sign(StakeRecord(ASSET, 10, EXPIRES)), minimum=10)
    with pytest.raises(StakeInvalid, match="below the minimum of 11") as e:
        check(sign(StakeRecord(ASSET, 10, EXPIRES)), minimum=11)
    assert e.value.code == "stake_invalid"
    assert e.value.details == {"amount": 10, "min_amount": 11}


def test_a_stake_is_valid_until_the_second_before_it_expires() -> None:
    signed = sign(StakeRecord(ASSET, 10, EXPIRES))
    check(signed, now=EXPIRES - 1)
    with pytest.raises(StakeExpired, match=f"expired at {EXPIRES}") as e:
        check(signed, now=EXPIRES)
    assert e.value.code == "stake_expired"
    with pytest.raises(StakeExpired):
        check(signed, now=EXPIRES + DAY_S)


def test_the_signature_is_checked_before_expiry() -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(StakeInvalid):
        check(sign(StakeRecord(ASSET, 10, NOW - 1), forger))


def test_a_new_record_lasts_the_days_asked_for() -> None:
    record = new_stake_record(ASSET, 25, NOW, 7)
    assert record == StakeRecord(ASSET, 25, NOW + 7 * DAY_S)
    for days in (0, -1):
        with pytest.raises(StakeInvalid, match="at least one day"):
            new_stake_record(ASSET, 25, NOW, days)
    with pytest.raises(StakeInvalid, match="amount"):
        new_stake_record(ASSET, -1, NOW, 7)
    with pytest.raises(StakeInvalid, match="asset key"):
        new_stake_record(b"short", 1, NOW, 7)


records = st.builds(
    StakeRecord,
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)


@given(records, st.binary(min_size=1, max_size=72))
def test_json_round_trips(record: StakeRecord, signature: bytes) -> None:
    signed = SignedStake(record, signature)
    assert SignedStake.from_json(json.loads(json.dumps(signed.to_json()))) == signed
    assert StakeRecord.from_json(record.to_json()) == record


def good() -> dict[str, Any]:
    return sign(StakeRecord(ASSET, 10, EXPIRES)).to_json()


def _with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    obj = good()
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _MISSING:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


_MISSING = object()

MALFORMED = [
    (("record", "asset_key"), _MISSING),
    (("record", "amount"), _MISSING),
    (("record", "expires_at"), _MISSING),
    (("signature",), _MISSING),
    (("record", "asset_key"), ASSET.hex()[:-2]),  # 31 octets
    (("record", "asset_key"), ASSET.hex() + "00"),  # 33 octets
    (("record", "asset_key"), ASSET.hex().upper()),
    (("record", "asset_key"), "zz" * 32),
    (("record", "asset_key"), " " + ASSET.hex()[1:]),
    (("record", "asset_key"), list(ASSET)),
    (("record", "amount"), "10"),
    (("record", "amount"), 10.0),
    (("record", "amount"), True),
    (("record", "amount"), None),
    (("record", "amount"), -1),
    (("record", "amount"), 2**64),
    (("record", "amount"), 10**4000),
    (("record", "expires_at"), 2**200),
    (("record", "expires_at"), -5),
    (("record", "expires_at"), [EXPIRES]),
    (("record",), "not an object"),
    (("record",), None),
    (("record", "extra"), 1),
    (("signature",), ""),
    (("signature",), "0"),
    (("signature",), "ab" * 200),
    (("signature",), 12),
]


@pytest.mark.parametrize(("path", "value"), MALFORMED)
def test_malformed_json_is_refused_with_stake_invalid(path: tuple[str, ...], value: object) -> None:
    with pytest.raises(StakeInvalid) as e:
        SignedStake.from_json(_with(path, value))
    assert e.value.code == "stake_invalid"


@pytest.mark.parametrize("obj", [None, [], "x", 1, {}, {"record": {}, "signature": "00"}])
def test_json_that_is_not_a_signed_stake_is_refused(obj: object) -> None:
    with pytest.raises(StakeInvalid):
        SignedStake.from_json(obj)


@given(json_values)
def test_any_json_is_a_stake_or_stake_invalid(obj: object) -> None:
    try:
        SignedStake.from_json(obj)
    except StakeInvalid:
        pass


@given(
    st.fixed_dictionaries(
        {
            "asset_key": st.one_of(st.text(max_size=70), st.just(ASSET.hex())),
            "amount": st.one_of(st.integers(), st.text(max_size=3), st.none()),
            "expires_at": st.one_of(st.integers(), st.floats(allow_nan=False)),
        }
    )
)
def test_near_miss_records_are_a_record_or_stake_invalid(obj: dict[str, Any]) -> None:
    try:
        record = StakeRecord.from_json(obj)
    except StakeInvalid:
        return
    assert record.to_json() == obj


def test_a_stake_authority_verifies_each_signature_once_and_still_checks_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority = StakeAuthority(AUTHORITY.public_key())
    good = sign(StakeRecord(ASSET, 10, EXPIRES))
    forged = SignedStake(good.record, sign(StakeRecord(ASSET, 11, EXPIRES)).signature)
    other_key = sign(StakeRecord(ASSET, 10, EXPIRES), ec.generate_private_key(ec.SECP256R1()))
    verified: list[bytes] = []
    real_verify = AUTHORITY.public_key().verify

    class Counting:
        def verify(self, signature: bytes, data: bytes, algorithm: Any) -> None:
            verified.append(signature)
            real_verify(signature, data, algorithm)

    authority.public_key = Counting()  # type: ignore[assignment]
    for _ in range(3):
        check_stake(good, authority, ASSET, NOW, 10)
    assert verified == [good.signature]  # remembered after the first
    for bad in (forged, other_key):  # a signature never verified is checked, and refused
        for _ in range(2):
            with pytest.raises(StakeInvalid, match="not signed by the stake authority"):
                check_stake(bad, authority, ASSET, NOW, 10)
    assert verified == [good.signature] + [forged.signature] * 2 + [other_key.signature] * 2
    # What the record says is checked every time, remembered signature or not.
    with pytest.raises(StakeInvalid, match="for asset"):
        check_stake(good, authority, OTHER_ASSET, NOW, 10)
    with pytest.raises(StakeInvalid, match="below the minimum"):
        check_stake(good, authority, ASSET, NOW, 11)
    with pytest.raises(StakeExpired):
        check_stake(good, authority, ASSET, EXPIRES, 10)
    # Bounded: a full memory is emptied, then the signature is verified again.
    monkeypatch.setattr(stake, "MAX_REMEMBERED", 1)
    check_stake(sign(StakeRecord(ASSET, 12, EXPIRES)), authority, ASSET, NOW, 10)
    check_stake(good, authority, ASSET, NOW, 10)
    assert verified.count(good.signature) == 2
