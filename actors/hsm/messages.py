"""The HSM actor's vocabulary: the messages it accepts and the bounds of their arguments.

Peers (the issuer, the CT log, the CLI, the HTTP edge, benchmarks and tests) import these,
never the actor (``actors/hsm/actor.py``); only the composition root starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

# Bounds of the arguments (see supervisors.messages). A CRL's TBS grows with its
# revocations, hence the large ``sign`` data; a batch is at most the CT log's largest
# ``ctlog.max_batch`` of SCT inputs, or the issuer's TBSs (1,000 long SANs: ~260 kB).
Label = Annotated[str, Bounds(min_length=1, max_length=128)]  # a PKCS#11 CKA_LABEL
Choice = Annotated[str, Bounds(max_length=32)]  # a key type or hash name; the token checks it
ToSign = Annotated[bytes, Bounds(max_length=16 * 1_048_576)]
PublicKeyDer = Annotated[bytes, Bounds(max_length=4096)]  # an RSA-4096 SPKI is 550 bytes
Batch = Annotated[list[bytes], Bounds(max_length=65_536, items=Bounds(max_length=1_048_576))]


@dataclass(frozen=True)
class GenerateKey(Message):
    label: Label
    key_type: Choice = "ec-p256"


@dataclass(frozen=True)
class EnsureKey(Message):
    """The key labelled ``label``, generated first if the token lacks it."""

    label: Label
    key_type: Choice = "ec-p256"


@dataclass(frozen=True)
class GetPublicKey(Message):
    label: Label


@dataclass(frozen=True)
class SignData(Message):
    label: Label
    data: ToSign
    hash: Choice = "sha256"


@dataclass(frozen=True)
class SignBatch(Message):
    """Many signatures with one key in one message: the per-message cost is paid once.

    With ``verify_with`` (a SubjectPublicKeyInfo, DER: the key the caller expects
    ``label`` to be), every signature is checked with it before any is returned, in
    the token's process, off the caller's thread; one that does not verify (a fault,
    the wrong key) fails the batch with ``signature_invalid``.
    """

    label: Label
    data: Batch
    hash: Choice = "sha256"
    verify_with: PublicKeyDer = b""


@dataclass(frozen=True)
class ListKeys(Message):
    """Every key on the token: label, key type, public key."""
