"""The HSM actor: the only thread that talks to the PKCS#11 token.

- ``messages``: its vocabulary (``SignData``, ``SignBatch``, ``EnsureKey``, ...), what
  peers import;
- ``actor``: ``HSMActor``, started only by the composition root;
- ``errors``: the ``HsmError`` family (imports nothing but ``supervisors.errors``);
- ``token``: the PKCS#11 token it owns; ``remote``: that token in a process of its own,
  which is how the actor uses it;
- ``softhsm``: preparing a project-local SoftHSMv2 token.

The messages are imported eagerly; ``HSMActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor and python-pkcs11 with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.hsm.messages import (
    EnsureKey,
    GenerateKey,
    GetPublicKey,
    ListKeys,
    SignBatch,
    SignData,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.hsm.actor import HSMActor


__getattr__, __dir__ = lazy_names(__name__, {"HSMActor": "actor"})


__all__ = [
    "EnsureKey",
    "GenerateKey",
    "GetPublicKey",
    "HSMActor",
    "ListKeys",
    "SignBatch",
    "SignData",
]
