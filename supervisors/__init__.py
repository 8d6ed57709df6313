"""The generic actor runtime: supervised pykka actors, OTP supervisors, a registry,
health, and a bridge that lets trio await an actor. Knows nothing of certificates."""

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
