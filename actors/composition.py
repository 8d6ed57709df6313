"""The composition root: the TrustChain tree, built from config (what runs under the root
supervisor). The only module that imports the actors themselves (``actors/<name>/actor.py``);
every peer and edge imports an actor's vocabulary (``<name>.messages``) instead, which
tests/test_boundaries.py checks."""

from __future__ import annotations

from trustchain.actors.ctlog.actor import CTLogActor
from trustchain.actors.hsm.actor import HSMActor
from trustchain.actors.issuer.actor import IssuerActor
from trustchain.actors.monitor.actor import CTMonitorActor
from trustchain.actors.renewal.actor import RenewalActor
from trustchain.config import Config
from trustchain.supervisors import Backoff, ChildSpec


def backoff_of(config: Config) -> Backoff:
    """How long restarts and retries of a failed resource wait (``[supervision]``)."""
    s = config.supervision
    return Backoff(s.backoff_min_s, s.backoff_max_s, s.backoff_jitter)


def trustchain_children(config: Config) -> list[ChildSpec]:
    """Children of the root, in start order (stopped in reverse)."""
    return [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, config.hsm), start_timeout_s=60),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, config.ctlog), start_timeout_s=120),
        ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, config.ca), start_timeout_s=120),
        ChildSpec("monitor", lambda ctx: CTMonitorActor.start(ctx, config.monitor)),
        ChildSpec("renewal", lambda ctx: RenewalActor.start(ctx, config.renewal)),
    ]
