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
from typing import Annotated, Any, ClassVar

from trustchain.actors.token import KeyInfo, Token, read_pin
from trustchain.config import HsmConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles
from trustchain.supervisors.messages import Bounds

# Bounds of the arguments (see supervisors.messages). A CRL's TBS grows with its
# revocations, hence the large ``sign`` data; a batch is at most the CT log's largest
# ``ctlog.max_batch`` of SCT inputs, or the issuer's TBSs (1,000 long SANs: ~260 kB).
Label = Annotated[str, Bounds(min_length=1, max_length=128)]  # a PKCS#11 CKA_LABEL
Choice = Annotated[str, Bounds(max_length=32)]  # a key type or hash name; the token checks it
ToSign = Annotated[bytes, Bounds(max_length=16 * 1_048_576)]
Batch = Annotated[list[bytes], Bounds(max_length=65_536, items=Bounds(max_length=1_048_576))]


@dataclass(frozen=True)
class GenerateKey(Message):
    type: ClassVar[str] = "generate_key"
    label: Label
    key_type: Choice = "ec-p256"


@dataclass(frozen=True)
class EnsureKey(Message):
    """The key labelled ``label``, generated first if the token lacks it."""

    type: ClassVar[str] = "ensure_key"
    label: Label
    key_type: Choice = "ec-p256"


@dataclass(frozen=True)
class GetPublicKey(Message):
    type: ClassVar[str] = "public_key"
    label: Label


@dataclass(frozen=True)
class SignData(Message):
    type: ClassVar[str] = "sign"
    label: Label
    data: ToSign
    hash: Choice = "sha256"


@dataclass(frozen=True)
class SignBatch(Message):
    """Many signatures with one key in one message: the per-message cost is paid once."""

    type: ClassVar[str] = "sign_batch"
    label: Label
    data: Batch
    hash: Choice = "sha256"


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
