"""actors/acme/nonces.py: each nonce good once, the store bounded."""

from __future__ import annotations

import base64

import pytest

from trustchain.actors.acme.nonces import NonceStore


def test_a_nonce_is_accepted_exactly_once() -> None:
    store = NonceStore(capacity=8)
    nonce = store.new()
    assert store.use(nonce)
    assert not store.use(nonce)


def test_unknown_nonce_is_refused() -> None:
    store = NonceStore(capacity=8)
    store.new()
    assert not store.use("AAAAAAAAAAAAAAAAAAAAAA")
    assert not store.use("")


def test_nonces_are_base64url_of_at_least_128_bits_and_distinct() -> None:
    store = NonceStore(capacity=1000)
    nonces = [store.new() for _ in range(1000)]
    assert len(set(nonces)) == 1000
    for nonce in nonces[:20]:
        assert "=" not in nonce
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        assert len(raw) >= 16


def test_past_capacity_the_oldest_nonces_are_forgotten() -> None:
    store = NonceStore(capacity=3)
    first, second, *rest = [store.new() for _ in range(5)]
    assert len(store) == 3
    assert not store.use(first)
    assert not store.use(second)
    assert all(store.use(nonce) for nonce in rest)
    assert len(store) == 0


def test_using_a_nonce_frees_its_place() -> None:
    store = NonceStore(capacity=2)
    a = store.new()
    b = store.new()
    assert store.use(a)
    c = store.new()
    assert len(store) == 2
    assert store.use(b)
    assert store.use(c)


def test_a_store_needs_room() -> None:
    with pytest.raises(ValueError):
        NonceStore(capacity=0)
