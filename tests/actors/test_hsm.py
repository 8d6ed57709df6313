"""HSMActor under a supervisor, against a real SoftHSM token."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.hsm import GenerateKey, GetPublicKey, HSMActor, ListKeys, SignData
from trustchain.actors.token import KeyExists, UnknownKey
from trustchain.config import HsmConfig
from trustchain.supervisors import (
    ActorCrashed,
    ActorState,
    ChildSpec,
    ChildStartFailed,
    Message,
    Registry,
    handles,
    start_root,
)


@dataclass(frozen=True)
class DropSession(Message):
    """Test only: the session vanishes under the actor, as when a token is pulled."""

    type: ClassVar[str] = "drop_session"


class FlakyHSMActor(HSMActor):
    @handles(DropSession)
    def drop_session(self, msg: DropSession) -> None:
        assert self.token is not None
        self.token._session.close()  # on the actor's own thread, like every PKCS#11 call


def start_hsm(config: HsmConfig, cls: type[HSMActor] = HSMActor) -> tuple[Registry, Any]:
    registry = Registry()
    spec = ChildSpec("hsm", lambda ctx: cls.start(ctx, config), start_timeout_s=30)
    return registry, start_root(registry, "root", [spec], max_restarts=5, period_s=60)


@pytest.fixture
def hsm(softhsm: HsmConfig, key_label: str) -> Iterator[Registry]:
    config = dataclasses.replace(softhsm, keys={key_label: "ec-p256"})
    registry, root = start_hsm(config, FlakyHSMActor)
    yield registry
    root.stop(block=True, timeout=10)


def verify(registry: Registry, label: str, data: bytes, signature: bytes) -> None:
    info = registry.ask("hsm", GetPublicKey(label))
    public = serialization.load_der_public_key(info.public_key_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def test_configured_keys_exist_at_start_and_sign(hsm: Registry, key_label: str) -> None:
    keys = {k["label"]: k for k in hsm.ask("hsm", ListKeys())}
    assert keys[key_label]["extractable"] is False
    assert keys[key_label]["sensitive"] is True
    assert keys[key_label]["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    verify(hsm, key_label, b"hello", hsm.ask("hsm", SignData(key_label, b"hello")))


def test_errors_go_back_typed_and_the_actor_lives_on(hsm: Registry, key_label: str) -> None:
    with pytest.raises(UnknownKey):
        hsm.ask("hsm", SignData("nope", b"x"))
    with pytest.raises(KeyExists):
        hsm.ask("hsm", GenerateKey(key_label))
    assert hsm.cell("hsm").restarts == 0
    hsm.ask("hsm", SignData(key_label, b"x"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_session_crashes_the_actor_and_its_restart_reopens_it(
    hsm: Registry, key_label: str
) -> None:
    before = hsm.cell("hsm").incarnation
    hsm.ask("hsm", DropSession())
    with pytest.raises(ActorCrashed):
        hsm.ask("hsm", SignData(key_label, b"after the token went away"))
    deadline = time.monotonic() + 10
    cell = hsm.cell("hsm")
    while not (cell.incarnation > before and cell.state is ActorState.RUNNING):
        assert time.monotonic() < deadline, "hsm was not restarted"
        time.sleep(0.01)
    signature = hsm.ask("hsm", SignData(key_label, b"back"))
    verify(hsm, key_label, b"back", signature)
    assert cell.restarts == 1


def test_a_wrong_pin_stops_the_start_with_a_clear_reason(
    softhsm: HsmConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TC_WRONG_PIN", "not-the-pin")
    config = dataclasses.replace(softhsm, pin_env="TC_WRONG_PIN")
    with pytest.raises(ChildStartFailed, match="HsmLoginFailed: the PIN for token"):
        start_hsm(config)
