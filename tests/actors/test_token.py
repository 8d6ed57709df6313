"""The PKCS#11 token wrapper against a real SoftHSM token."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from trustchain.actors.hsm.errors import (
    HsmLoginFailed,
    HsmModuleNotFound,
    HsmPinMissing,
    HsmTokenNotFound,
    KeyExists,
    UnknownKey,
    UnsupportedHash,
    UnsupportedKeyType,
)
from trustchain.actors.hsm.token import Token, read_pin
from trustchain.config import HsmConfig

from ..conftest import pin_of


@pytest.fixture
def token(softhsm: HsmConfig) -> Iterator[Token]:
    t = Token.open(softhsm.module, softhsm.token_label, pin_of(softhsm), softhsm.softhsm2_conf)
    yield t
    t.close()


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_generated_keys_sign_verifiably_and_never_leave_the_token(
    token: Token, key_label: str, key_type: str
) -> None:
    info = token.generate_key(key_label, key_type)
    assert info.key_type == key_type
    assert token.private_key_attributes(key_label) == {
        "extractable": False,
        "sensitive": True,
        "never_extractable": True,
    }
    public = serialization.load_der_public_key(info.public_key_der)
    for hash_name, algorithm in [("sha256", hashes.SHA256()), ("sha384", hashes.SHA384())]:
        signature = token.sign(key_label, b"to be signed", hash_name)
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, b"to be signed", ec.ECDSA(algorithm))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            public.verify(signature, b"to be signed", padding.PKCS1v15(), algorithm)


def test_the_private_value_cannot_be_read(token: Token, key_label: str) -> None:
    token.generate_key(key_label, "ec-p256")
    private = token._session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=key_label)
    with pytest.raises(pkcs11.AttributeSensitive):
        private[pkcs11.Attribute.VALUE]


def test_ensure_key_creates_once_then_returns_the_same_key(token: Token, key_label: str) -> None:
    first = token.ensure_key(key_label, "ec-p256")
    again = token.ensure_key(key_label, "ec-p384")
    assert again == first
    with pytest.raises(KeyExists):
        token.generate_key(key_label, "ec-p256")
    assert key_label in [k.label for k in token.list_keys()]


def test_bad_requests_are_typed_errors(token: Token, key_label: str) -> None:
    with pytest.raises(UnknownKey, match="no key labelled 'missing"):
        token.sign("missing-" + key_label, b"x")
    with pytest.raises(UnsupportedKeyType, match="ec-p256"):
        token.generate_key(key_label, "dsa-1024")
    token.generate_key(key_label, "ec-p256")
    with pytest.raises(UnsupportedHash):
        token.sign(key_label, b"x", "md5")


def test_wrong_pin_is_refused(softhsm: HsmConfig) -> None:
    with pytest.raises(HsmLoginFailed, match="PIN for token 'trustchain-test' was refused"):
        Token.open(softhsm.module, softhsm.token_label, "0000-wrong", softhsm.softhsm2_conf)


def test_missing_token_names_the_tokens_that_exist(softhsm: HsmConfig) -> None:
    with pytest.raises(HsmTokenNotFound, match="'trustchain-test'"):
        Token.open(softhsm.module, "no-such-token", pin_of(softhsm), softhsm.softhsm2_conf)


def test_missing_module_says_how_to_install(softhsm: HsmConfig) -> None:
    with pytest.raises(HsmModuleNotFound, match="apt-get install softhsm2"):
        Token.open("/nowhere/libpkcs11.so", softhsm.token_label, "1234")


def test_pin_comes_from_the_environment_before_the_file(
    softhsm: HsmConfig, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("TC_TEST_PIN", "from-env")
    assert read_pin("TC_TEST_PIN", softhsm.pin_file) == "from-env"
    assert read_pin("TC_TEST_UNSET_PIN", softhsm.pin_file) == pin_of(softhsm)
    with pytest.raises(HsmPinMissing, match="TC_TEST_UNSET_PIN"):
        read_pin("TC_TEST_UNSET_PIN", tmp_path / "absent.pin")
