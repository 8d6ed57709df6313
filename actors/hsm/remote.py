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

The child (the "token host") is forked from a forkserver (a clean, single-threaded
parent with python-pkcs11 already imported), opens the token with ``Token.open`` and
runs ``Token`` methods by name, one at a time, answering each with its result or its
exception: typed ``HsmError``s as they are, PKCS#11 errors as their own class. One
host per ``RemoteToken.open``; ``close`` ends it. The HSMActor is still the only
caller, one request at a time, so SoftHSM is never called concurrently.

A host that dies, or does not answer within ``CALL_TIMEOUT_S``, raises
``TokenHostLost``, a ``pkcs11.PKCS11Error``: the HSMActor treats it like a token that
went away (close, reopen, ``hsm_unavailable`` with backoff if that fails), and the
reopening starts a new host.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import pkcs11

from trustchain.actors.hsm.token import KeyInfo, Token

CALL_TIMEOUT_S = 30.0  # a PKCS#11 call that takes longer is a hung device
OPEN_TIMEOUT_S = 60.0  # starting the host (the forkserver's first start imports a lot)
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["trustchain.actors.hsm.token"])


class TokenHostLost(pkcs11.PKCS11Error):
    """The token's process died or hung; the token is treated as gone."""


class RemoteToken:
    """A ``Token`` opened in a child process; the same methods, one pipe round trip each."""

    def __init__(self, process: Any, connection: Connection, label: str) -> None:
        self._process = process
        self._connection = connection
        self.label = label

    @classmethod
    def open(
        cls, module: str, token_label: str, pin: str, softhsm2_conf: str | None = None
    ) -> RemoteToken:
        """Start a host and open the token in it; the errors of ``Token.open``."""
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_serve, args=(theirs, module, token_label, pin, softhsm2_conf),
            name=f"trustchain-token-{token_label}", daemon=True,
        )  # fmt: skip
        process.start()
        theirs.close()
        remote = cls(process, ours, token_label)
        try:
            remote._receive(OPEN_TIMEOUT_S)  # the outcome of Token.open in the host
        except BaseException:
            remote._end()
            raise
        return remote

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def close(self) -> None:
        """Close the session, finalise the module and end the host. Never raises."""
        try:
            self._connection.send(("close", ()))
            self._connection.poll(CALL_TIMEOUT_S)
        except (OSError, EOFError, ValueError):
            pass
        self._end()

    def call(self, method: str, *args: Any) -> Any:
        """Run ``Token.<method>(*args)`` in the host; its result or its exception."""
        try:
            self._connection.send((method, args))
        except (OSError, ValueError) as exc:
            self._end()
            raise TokenHostLost(f"the token process is gone ({exc})") from None
        return self._receive(CALL_TIMEOUT_S)

    def _receive(self, timeout_s: float) -> Any:
        try:
            if not self._connection.poll(timeout_s):
                self._end()
                raise TokenHostLost(f"the token process did not answer in {timeout_s:g} s")
            ok, value = self._connection.recv()
        except (OSError, EOFError) as exc:
            self._end()
            raise TokenHostLost(
                f"the token process is gone (exit code {self._process.exitcode}): {exc!r}"
            ) from None
        if ok:
            return value
        raise value

    def _end(self) -> None:
        self._connection.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=2)

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


def _serve(
    connection: Connection, module: str, token_label: str, pin: str, softhsm2_conf: str | None
) -> None:
    """The host: open the token, then run what the parent asks until told to close or
    until the parent is gone (its end of the pipe closed, even by ``kill -9``)."""
    try:
        token = Token.open(module, token_label, pin, softhsm2_conf)
    except BaseException as exc:
        _answer(connection, False, exc)
        return
    _answer(connection, True, None)
    try:
        while True:
            try:
                method, args = connection.recv()
            except (EOFError, OSError):
                return
            if method == "close":
                break
            try:
                result = getattr(token, method)(*args)
            except BaseException as exc:
                _answer(connection, False, exc)
            else:
                _answer(connection, True, result)
    finally:
        token.close()
        _answer(connection, True, None)
        os._exit(0)  # nothing of the forkserver's state to tear down


def _answer(connection: Connection, ok: bool, value: Any) -> None:
    try:
        connection.send((ok, value))
    except (OSError, ValueError):
        pass  # the parent is gone
    except Exception as exc:  # an exception that does not pickle: say what it was
        connection.send((False, RuntimeError(f"{type(value).__name__}: {value} ({exc})")))
