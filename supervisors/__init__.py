"""The generic actor runtime: supervised pykka actors, OTP supervisors, a registry,
health, and a bridge that lets trio await an actor. Knows nothing of certificates.

The names below are loaded on first use (PEP 562), so that importing one light
module of the package -- ``trustchain.supervisors.errors``, the error vocabulary
every layer shares -- does not load pykka, trio, outcome or loguru with it:
domain code imports its errors from there and stays free of the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.supervisors.actor import ActorContext, SupervisedActor, handles
    from trustchain.supervisors.backoff import Backoff
    from trustchain.supervisors.bridge import ask
    from trustchain.supervisors.clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock
    from trustchain.supervisors.errors import (
        ActorCrashed,
        ActorUnavailable,
        InvalidRequest,
        RequestTimeout,
        TrustChainError,
        UnknownActor,
        UnknownMessage,
    )
    from trustchain.supervisors.messages import Message, to_jsonable
    from trustchain.supervisors.registry import ActorState, Fault, Registry
    from trustchain.supervisors.supervisor import (
        ChildSpec,
        ChildStartFailed,
        Restart,
        RestartChild,
        Strategy,
        Supervisor,
        start_root,
        supervisor_spec,
    )

# public name -> the module of this package that defines it
_HOMES = {
    "ActorContext": "actor",
    "SupervisedActor": "actor",
    "handles": "actor",
    "Backoff": "backoff",
    "ask": "bridge",
    "SYSTEM_CLOCK": "clock",
    "Clock": "clock",
    "FakeClock": "clock",
    "SystemClock": "clock",
    "ActorCrashed": "errors",
    "ActorUnavailable": "errors",
    "InvalidRequest": "errors",
    "RequestTimeout": "errors",
    "TrustChainError": "errors",
    "UnknownActor": "errors",
    "UnknownMessage": "errors",
    "Message": "messages",
    "to_jsonable": "messages",
    "ActorState": "registry",
    "Fault": "registry",
    "Registry": "registry",
    "ChildSpec": "supervisor",
    "ChildStartFailed": "supervisor",
    "Restart": "supervisor",
    "RestartChild": "supervisor",
    "Strategy": "supervisor",
    "Supervisor": "supervisor",
    "start_root": "supervisor",
    "supervisor_spec": "supervisor",
}


__getattr__, __dir__ = lazy_names(__name__, _HOMES)


__all__ = [
    "SYSTEM_CLOCK",
    "ActorContext",
    "ActorCrashed",
    "ActorState",
    "ActorUnavailable",
    "Backoff",
    "ChildSpec",
    "ChildStartFailed",
    "Clock",
    "FakeClock",
    "Fault",
    "InvalidRequest",
    "Message",
    "Registry",
    "RequestTimeout",
    "Restart",
    "RestartChild",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SystemClock",
    "TrustChainError",
    "UnknownActor",
    "UnknownMessage",
    "ask",
    "handles",
    "start_root",
    "supervisor_spec",
    "to_jsonable",
]
