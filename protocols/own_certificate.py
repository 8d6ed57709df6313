"""A listener's certificate from TrustChain's own CA (the HTTPS edge's, the DoQ
listener's): its names checked against the CA's zones before it is asked for, then
registered with the renewal actor and followed, each renewal reaching a ``Reloading``
(new handshakes get the new certificate; live connections keep theirs)."""

from __future__ import annotations

import ipaddress
from contextlib import suppress
from typing import Any

import trio

from trustchain.actors.ca.names import zone_of
from trustchain.actors.renewal.messages import RegisterCertificate, Subscribe, Unsubscribe
from trustchain.protocols.tls_reload import Reloading
from trustchain.supervisors import Registry, TrustChainError, ask

FIRST_CERTIFICATE_TIMEOUT_S = 30.0


def outside_zones(names: list[str], zones: list[str]) -> str | None:
    """The first of ``names`` the CA's policy would refuse (neither an IPv6 address nor
    inside one of ``zones``: the CA's own zone rule), or None."""
    suffixes = [z.strip(".").lower() for z in zones]
    for name in names:
        with suppress(ValueError):
            ipaddress.IPv6Address(name)
            continue
        if zone_of(name.strip(".").lower(), suffixes) is None:
            return name
    return None


async def follow(
    registry: Registry,
    reloading: Reloading[Any],
    certificate: str,
    names: list[str],
    timeout_s: float,
    first_within_s: float = FIRST_CERTIFICATE_TIMEOUT_S,
) -> int | None:
    """Register ``certificate`` for ``names`` with the renewal actor and follow its
    renewals into ``reloading``; wait (bounded) for the first. The subscription, or
    None (unsubscribed again) if no certificate came within ``first_within_s``."""
    arrived = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def on_bundle(bundle: Any) -> None:  # on the renewal actor's thread
        reloading(bundle)
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(arrived.set)

    await ask(registry, "renewal", RegisterCertificate(certificate, list(names)), timeout_s)
    subscription: int = await ask(registry, "renewal", Subscribe(certificate, on_bundle), timeout_s)
    with trio.move_on_after(first_within_s):
        await arrived.wait()
    if reloading.bundle is None:
        unfollow(registry, subscription)
        return None
    return subscription


def unfollow(registry: Registry, subscription: int | None) -> None:
    """Stop following (when the listener stops); never raises."""
    if subscription is not None:
        with suppress(TrustChainError):
            registry.tell("renewal", Unsubscribe(subscription))
