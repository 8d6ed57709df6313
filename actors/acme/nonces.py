"""ACME's anti-replay nonces (RFC 8555 §6.5): issued by the server, each good once.

Theory of operation: ``new`` draws 128 bits from ``secrets`` and remembers the nonce;
``use`` forgets it and says whether it was outstanding, so a nonce is accepted at most
once. The store is bounded: past ``capacity`` outstanding nonces the oldest are
forgotten (an ``OrderedDict`` in issue order makes both steps O(1)). A forgotten,
unknown or used nonce is simply ``False``; the caller answers ``badNonce`` with a fresh
``Replay-Nonce``, which every client retries (§6.5).

What it does not do: persist. The store lives in memory in the actor that owns it, so a
restart turns old nonces into ``badNonce`` (and retries), never into accepted replays.
It takes no locks: its owner (one actor) is its only user.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict

NONCE_BYTES = 16  # 128 bits


class NonceStore:
    """The outstanding nonces, at most ``capacity`` of them, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a nonce store needs room for at least one nonce, not {capacity}")
        self.capacity = capacity
        self._outstanding: OrderedDict[str, None] = OrderedDict()

    def new(self) -> str:
        """A fresh nonce (base64url, no padding) for a ``Replay-Nonce`` header."""
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode()
        self._outstanding[nonce] = None
        while len(self._outstanding) > self.capacity:
            self._outstanding.popitem(last=False)
        return nonce

    def use(self, nonce: str) -> bool:
        """True once for a nonce this store issued and still holds; False otherwise."""
        return self._outstanding.pop(nonce, False) is None

    def __len__(self) -> int:
        return len(self._outstanding)

    def __repr__(self) -> str:
        return f"NonceStore({len(self)}/{self.capacity} outstanding)"
