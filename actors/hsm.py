"""HSMActor: the only thread that talks to the PKCS#11 token.

Every PKCS#11 call happens on this actor's thread (SoftHSM is not thread-safe
under python-pkcs11), so concurrency comes from queueing, never from locks.
A caller with many signatures to make (the issuer under load) sends them as
one ``sign_batch``: the per-message cost of the mailbox and the reply is paid
once per batch instead of once per signature (see bench/actors.py).
``setup()`` opens the module, logs in and creates the configured keys when
the token lacks them; ``cleanup()`` closes the session and finalises the
module; a crash and the supervisor's restart therefore reopen everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trustchain.actors.token import KeyInfo, Token, read_pin
from trustchain.config import HsmConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles


@dataclass(frozen=True)
class GenerateKey(Message):
    type: ClassVar[str] = "generate_key"
    label: str
    key_type: str = "ec-p256"


@dataclass(frozen=True)
class EnsureKey(Message):
    """The key labelled ``label``, generated first if the token lacks it."""

    type: ClassVar[str] = "ensure_key"
    label: str
    key_type: str = "ec-p256"


@dataclass(frozen=True)
class GetPublicKey(Message):
    type: ClassVar[str] = "public_key"
    label: str


@dataclass(frozen=True)
class SignData(Message):
    type: ClassVar[str] = "sign"
    label: str
    data: bytes
    hash: str = "sha256"


@dataclass(frozen=True)
class SignBatch(Message):
    """Many signatures with one key in one message: the per-message cost is paid once."""

    type: ClassVar[str] = "sign_batch"
    label: str
    data: list[bytes]
    hash: str = "sha256"


@dataclass(frozen=True)
class ListKeys(Message):
    type: ClassVar[str] = "list_keys"


class HSMActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: HsmConfig) -> None:
        super().__init__(context)
        self.config = config
        self.token: Token | None = None

    def setup(self) -> None:
        pin = read_pin(self.config.pin_env, self.config.pin_file)
        self.token = Token.open(
            self.config.module, self.config.token_label, pin, self.config.softhsm2_conf or None
        )
        for label, key_type in self.config.keys.items():
            self.token.ensure_key(label, key_type)

    def cleanup(self) -> None:
        if self.token is not None:
            token, self.token = self.token, None
            token.close()

    @property
    def _token(self) -> Token:
        assert self.token is not None, "HSMActor used before setup()"
        return self.token

    @handles(GenerateKey)
    def generate_key(self, msg: GenerateKey) -> KeyInfo:
        return self._token.generate_key(msg.label, msg.key_type)

    @handles(EnsureKey)
    def ensure_key(self, msg: EnsureKey) -> KeyInfo:
        return self._token.ensure_key(msg.label, msg.key_type)

    @handles(GetPublicKey)
    def public_key(self, msg: GetPublicKey) -> KeyInfo:
        return self._token.key_info(msg.label)

    @handles(SignData)
    def sign(self, msg: SignData) -> bytes:
        return self._token.sign(msg.label, msg.data, msg.hash)

    @handles(SignBatch)
    def sign_batch(self, msg: SignBatch) -> list[bytes]:
        return [self._token.sign(msg.label, item, msg.hash) for item in msg.data]

    @handles(ListKeys)
    def list_keys(self, msg: ListKeys) -> list[dict[str, Any]]:
        return [
            {**k.to_json(), **self._token.private_key_attributes(k.label)}
            for k in self._token.list_keys()
        ]
