"""HSMActor under a supervisor, against a real SoftHSM token."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from loguru import logger

from trustchain.actors.ca import SignatureInvalid
from trustchain.actors.hsm import (
    GenerateKey,
    GetPublicKey,
    HSMActor,
    ListKeys,
    SignBatch,
    SignData,
)
from trustchain.actors.hsm.errors import HsmUnavailable, InvalidPublicKey, KeyExists, UnknownKey
from trustchain.config import HsmConfig
from trustchain.supervisors import (
    ActorState,
    Backoff,
    ChildSpec,
    ChildStartFailed,
    Message,
    Registry,
    handles,
    start_root,
)

from ..conftest import own_token, wait_until


@dataclass(frozen=True)
class DropSession(Message):
    """Test only: the session vanishes under the actor, as when a token is pulled."""


@dataclass(frozen=True)
class KillTokenProcess(Message):
    """Test only: the process holding the token dies (kill -9)."""


@dataclass(frozen=True)
class TokenPid(Message):
    """Test only: the process holding the token now (None while none is open)."""


class FlakyHSMActor(HSMActor):
    @handles(DropSession)
    def drop_session(self, msg: DropSession) -> None:
        assert self.token is not None
        self.token.call("close")  # in the token's process: session closed, module finalised

    @handles(KillTokenProcess)
    def kill_token_process(self, msg: KillTokenProcess) -> int:
        assert self.token is not None and self.token.pid is not None
        os.kill(self.token.pid, signal.SIGKILL)
        return self.token.pid

    @handles(TokenPid)
    def token_pid(self, msg: TokenPid) -> int | None:
        return None if self.token is None else self.token.pid


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


def test_a_batch_is_checked_with_the_key_the_caller_expects(hsm: Registry, key_label: str) -> None:
    """SignBatch.verify_with: checked in the token's process; a wrong key fails the batch."""
    ours = hsm.ask("hsm", GetPublicKey(key_label)).public_key_der
    data = [b"one", b"two"]
    signatures = hsm.ask("hsm", SignBatch(key_label, data, verify_with=ours))
    for item, signature in zip(data, signatures, strict=True):
        verify(hsm, key_label, item, signature)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    theirs = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(SignatureInvalid, match="does not verify with the expected public key"):
        hsm.ask("hsm", SignBatch(key_label, data, verify_with=theirs))
    with pytest.raises(InvalidPublicKey):
        hsm.ask("hsm", SignBatch(key_label, data, verify_with=b"\x30\x03garbage"))
    assert hsm.cell("hsm").restarts == 0


def test_errors_go_back_typed_and_the_actor_lives_on(hsm: Registry, key_label: str) -> None:
    with pytest.raises(UnknownKey):
        hsm.ask("hsm", SignData("nope", b"x"))
    with pytest.raises(KeyExists):
        hsm.ask("hsm", GenerateKey(key_label))
    assert hsm.cell("hsm").restarts == 0
    hsm.ask("hsm", SignData(key_label, b"x"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_session_is_reopened_in_place_without_a_restart(
    hsm: Registry, key_label: str
) -> None:
    before = hsm.cell("hsm").incarnation
    hsm.ask("hsm", DropSession())
    signature = hsm.ask("hsm", SignData(key_label, b"after the session went away"))
    verify(hsm, key_label, b"after the session went away", signature)
    cell = hsm.cell("hsm")
    assert (cell.incarnation, cell.restarts, cell.faults) == (before, 0, {})


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_token_process_that_dies_is_replaced_in_place_without_a_restart(
    hsm: Registry, key_label: str
) -> None:
    before = hsm.cell("hsm").incarnation
    dead = hsm.ask("hsm", KillTokenProcess())
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        signature = hsm.ask("hsm", SignData(key_label, b"after the token process died"))
    finally:
        logger.remove(sink)
    assert any("stopped answering (TokenHostLost" in w and "reopened" in w for w in warnings)
    verify(hsm, key_label, b"after the token process died", signature)
    cell = hsm.cell("hsm")
    assert (cell.incarnation, cell.restarts, cell.faults) == (before, 0, {})
    wait_until(lambda: not Path(f"/proc/{dead}").exists(), what="the dead host reaped")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_token_process_that_dies_while_idle_is_replaced_before_any_request_needs_it(
    hsm: Registry, key_label: str
) -> None:
    before = hsm.cell("hsm").incarnation
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        dead = hsm.ask("hsm", KillTokenProcess())
        wait_until(lambda: hsm.ask("hsm", TokenPid()) not in (None, dead),
                   what="a new token process, with no request made")  # fmt: skip
    finally:
        logger.remove(sink)
    assert any("stopped answering (TokenHostLost" in w and "before any request" in w
               for w in warnings)  # fmt: skip
    cell = hsm.cell("hsm")
    assert (cell.incarnation, cell.restarts, cell.faults) == (before, 0, {})
    signature = hsm.ask("hsm", SignData(key_label, b"after the idle token process died"))
    verify(hsm, key_label, b"after the idle token process died", signature)


def test_a_token_taken_away_is_refused_fast_shown_and_picked_up_again_when_back(
    tmp_path: Path, key_label: str
) -> None:
    """The token directory is moved away under a running HSMActor, then back."""
    config = dataclasses.replace(own_token(tmp_path, "tc-unplug"), keys={key_label: "ec-p256"})
    registry = Registry()
    spec = ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, config), start_timeout_s=30)
    root = start_root(registry, "root", [spec], max_restarts=1, period_s=60,
                      backoff=Backoff(min_s=0.02, max_s=0.2))  # fmt: skip
    tokens, away = tmp_path / "tokens", tmp_path / "tokens-away"
    try:
        registry.ask("hsm", SignData(key_label, b"before"))
        tokens.rename(away)
        for _ in range(3):  # every request gets the typed error; none crashes the actor
            with pytest.raises(HsmUnavailable, match="tc-unplug"):
                registry.ask("hsm", SignData(key_label, b"while away"))
        cell = registry.cell("hsm")
        assert cell.state is ActorState.RUNNING and cell.restarts == 0
        (fault,) = cell.health()["faults"]
        assert fault["resource"] == "hsm" and fault["since"].endswith("+00:00")
        time.sleep(0.3)  # a few backed-off retries fail meanwhile
        assert cell.faults["hsm"].retries >= 1
        away.rename(tokens)
        back = time.monotonic()
        deadline = back + 10
        while True:
            try:
                signature = registry.ask("hsm", SignData(key_label, b"back"))
                break
            except HsmUnavailable:
                assert time.monotonic() < deadline, "the token was never picked up again"
                time.sleep(0.005)
        print(
            f"signing resumed {1000 * (time.monotonic() - back):.0f} ms after the token came back"
        )
        verify(registry, key_label, b"back", signature)
        assert cell.faults == {} and cell.restarts == 0 and cell.state is ActorState.RUNNING
    finally:
        if away.exists():
            away.rename(tokens)
        root.stop(block=True, timeout=10)


def test_a_wrong_pin_stops_the_start_with_a_clear_reason(
    softhsm: HsmConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TC_WRONG_PIN", "not-the-pin")
    config = dataclasses.replace(softhsm, pin_env="TC_WRONG_PIN")
    with pytest.raises(ChildStartFailed, match="HsmLoginFailed: the PIN for token"):
        start_hsm(config)
