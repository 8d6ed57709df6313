"""The token in a process of its own, so that signing does not queue for the GIL.

Why: python-pkcs11 lets go of the GIL around every PKCS#11 call and must take it
back when the call returns. In the process where the issuer and the log run Python
flat out, each return waits for the GIL. Measured on this machine (2 cores, SoftHSM,
EC P-256): one thread signs 12,000 times a second alone and 70 times a second beside
one thread running Python (switch interval 5 ms); under issuance load the HSMActor
spent 90 % of its time inside ``sign`` while making a quarter of its ceiling.

A child process has a GIL of its own. The HSMActor's thread sends a whole request
(a batch of 64 signatures, say) down a pipe and takes its GIL back once per request,
not once per signature; the child calls SoftHSM with nobody to wait for.

The child (the "token host") is a ``trustchain.actors.child.Child``: forked from the
forkserver (python-pkcs11 already imported there), it opens the token with
``Token.open`` and runs ``Token`` methods by name, one at a time, answering each with
its result or its exception: typed ``HsmError``s as they are, PKCS#11 errors as their
own class. One host per ``RemoteToken.open``; ``close`` ends it. The HSMActor is still the only
caller, one request at a time, so SoftHSM is never called concurrently.

A host that dies, or does not answer within ``CALL_TIMEOUT_S``, raises
``TokenHostLost``, a ``pkcs11.PKCS11Error``: the HSMActor treats it like a token that
went away (close, reopen, ``hsm_unavailable`` with backoff if that fails), and the
reopening starts a new host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pkcs11

from trustchain.actors import child
from trustchain.actors.hsm.token import KeyInfo, Token

CALL_TIMEOUT_S = 30.0  # a PKCS#11 call that takes longer is a hung device
OPEN_TIMEOUT_S = 60.0  # starting the host (the forkserver's first start imports a lot)
child.preload("trustchain.actors.hsm.token")


class TokenHostLost(pkcs11.PKCS11Error):
    """The token's process died or hung; the token is treated as gone."""


class RemoteToken:
    """A ``Token`` opened in a child process; the same methods, one pipe round trip each."""

    def __init__(self, host: child.Child, label: str) -> None:
        self._host = host
        self.label = label

    @classmethod
    def open(
        cls,
        module: str,
        token_label: str,
        pin: str,
        softhsm2_conf: str | None = None,
        on_lost: Callable[[Exception], None] | None = None,
    ) -> RemoteToken:
        """Start a host and open the token in it; the errors of ``Token.open``.
        ``on_lost``: called (on another thread) with ``TokenHostLost`` if the host dies
        while this token is open (``child.Child.start``)."""
        host = child.Child.start(
            f"trustchain-token-{token_label}", Token.open, module, token_label, pin,
            softhsm2_conf, lost=TokenHostLost, timeout_s=OPEN_TIMEOUT_S, on_lost=on_lost,
        )  # fmt: skip
        return cls(host, token_label)

    @property
    def pid(self) -> int | None:
        return self._host.pid

    def close(self) -> None:
        """Close the session, finalise the module and end the host. Never raises."""
        self._host.close(CALL_TIMEOUT_S)

    def call(self, method: str, *args: Any) -> Any:
        """Run ``Token.<method>(*args)`` in the host; its result or its exception."""
        return self._host.call(method, *args, timeout_s=CALL_TIMEOUT_S)

    # The Token methods the HSMActor uses -----------------------------------------------

    def generate_key(self, label: str, key_type: str) -> KeyInfo:
        result: KeyInfo = self.call("generate_key", label, key_type)
        return result

    def ensure_key(self, label: str, key_type: str) -> KeyInfo:
        result: KeyInfo = self.call("ensure_key", label, key_type)
        return result

    def key_info(self, label: str) -> KeyInfo:
        result: KeyInfo = self.call("key_info", label)
        return result

    def private_key_attributes(self, label: str) -> dict[str, bool]:
        result: dict[str, bool] = self.call("private_key_attributes", label)
        return result

    def list_keys(self) -> list[KeyInfo]:
        result: list[KeyInfo] = self.call("list_keys")
        return result

    def sign(self, label: str, data: bytes, hash_name: str = "sha256") -> bytes:
        result: bytes = self.call("sign", label, data, hash_name)
        return result

    def sign_many(
        self,
        label: str,
        items: Sequence[bytes],
        hash_name: str = "sha256",
        verify_with: bytes = b"",
    ) -> list[bytes]:
        result: list[bytes] = self.call("sign_many", label, list(items), hash_name, verify_with)
        return result
