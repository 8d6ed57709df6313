"""The renewal actor's vocabulary: the messages it accepts and the bounds of their arguments.

Peers (the HTTPS edge, the CLI, tests) import these, never the actor
(``actors/renewal/actor.py``); only the composition root starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self

from trustchain.actors.renewal.bundle import Bundle
from trustchain.supervisors import InvalidRequest, Message
from trustchain.supervisors.messages import Bounds

MAX_NAMES = 1_000  # as the CA's largest ca.max_sans
CertificateName = Annotated[str, Bounds(min_length=1, max_length=64)]  # see _valid_name too
Names = Annotated[list[str], Bounds(min_length=1, max_length=MAX_NAMES,
                                    items=Bounds(min_length=1, max_length=254))]  # fmt: skip


@dataclass(frozen=True)
class RegisterCertificate(Message):
    name: CertificateName
    names: Names


@dataclass(frozen=True)
class Subscribe(Message):
    """In-process only. ``callback(bundle)`` runs on the renewal actor's thread: be quick."""

    name: CertificateName
    callback: Callable[[Bundle], None]

    @classmethod
    def from_args(cls, args: Any) -> Self:
        raise InvalidRequest(
            "'subscribe' is in-process only: it takes a Python callable, which JSON cannot "
            "carry; over the control socket use 'get_bundle' or 'get_renewal_status'"
        )


@dataclass(frozen=True)
class Unsubscribe(Message):
    subscription: int  # what Subscribe returned


@dataclass(frozen=True)
class GetBundle(Message):
    name: CertificateName


@dataclass(frozen=True)
class GetRenewalStatus(Message):
    """Every managed certificate: names, expiry, next renewal, last error."""


@dataclass(frozen=True)
class RenewNow(Message):
    name: CertificateName
