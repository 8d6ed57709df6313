"""The composition root: the TrustChain tree, built from config (what runs under the root
supervisor). The only module that imports the actors themselves (``actors/<name>/actor.py``);
every peer and edge imports an actor's vocabulary (``<name>.messages``) instead, which
tests/test_boundaries.py checks."""

from __future__ import annotations

from typing import Any

from trustchain.actors.acme.actor import AcmeActor
from trustchain.actors.ctlog.actor import CTLogActor
from trustchain.actors.detector.actor import ByzantineDetectorActor
from trustchain.actors.hsm.actor import HSMActor
from trustchain.actors.issuer.actor import IssuerActor
from trustchain.actors.locks import acme_runs
from trustchain.actors.monitor.actor import CTMonitorActor
from trustchain.actors.renewal.actor import RenewalActor
from trustchain.actors.resolver.actor import ResolverActor
from trustchain.actors.resolver.actor import check_config as check_resolver_config
from trustchain.actors.trust.params import vdf_modulus
from trustchain.actors.validator.actor import ValidatorActor
from trustchain.config import Config, ConfigError, TrustConfig
from trustchain.supervisors import ActorContext, Backoff, ChildSpec, Strategy, supervisor_spec


def check_config(config: Config) -> None:
    """What the actors would refuse at their start, refused before anything starts
    (``ConfigError``): the checks that need an actor's own code (the resolver's zone and
    upstreams, read with dnspython), which the config loader does not import."""
    if config.resolver.enabled:
        try:
            check_resolver_config(config.resolver)
        except ValueError as exc:
            raise ConfigError(f"[resolver] cannot be served: {exc}") from None


def backoff_of(config: Config) -> Backoff:
    """How long restarts and retries of a failed resource wait (``[supervision]``)."""
    s = config.supervision
    return Backoff(s.backoff_min_s, s.backoff_max_s, s.backoff_jitter)


def validator_names(config: TrustConfig) -> list[str]:
    """``validator-1`` ... ``validator-N``: each validator's name in the tree and its id."""
    return [f"validator-{i}" for i in range(1, config.validators + 1)]


def trust_children(config: TrustConfig, hsm: str = "hsm") -> list[ChildSpec]:
    """The ``trust`` supervisor's children: the validators, then the detector (which
    asks each for its key at start)."""
    names = validator_names(config)

    def validator(name: str) -> ChildSpec:
        return ChildSpec(name, lambda ctx: ValidatorActor.start(ctx, config, name))

    detector = ChildSpec(
        "detector",
        lambda ctx: ByzantineDetectorActor.start(ctx, config, names, hsm),
        start_timeout_s=60,
    )
    return [*(validator(name) for name in names), detector]


def trustchain_children(config: Config) -> list[ChildSpec]:
    """Children of the root, in start order (stopped in reverse)."""
    trust = []
    detector = None  # without the consensus the issuer issues without its approval
    if config.trust.enabled:  # one_for_one: a crashed validator restarts alone
        s = config.supervision
        children = trust_children(config.trust)
        trust = [supervisor_spec("trust", children, Strategy.ONE_FOR_ONE, s.max_restarts,
                                 s.period_s, backoff=backoff_of(config))]  # fmt: skip
        detector = "detector"
    modulus = vdf_modulus(config.trust)

    def issuer(ctx: ActorContext) -> Any:
        return IssuerActor.start(ctx, config.ca, detector=detector, vdf_modulus=modulus)

    def renewal(ctx: ActorContext) -> Any:
        return RenewalActor.start(ctx, config.renewal, detector=detector)

    def resolver(ctx: ActorContext) -> Any:  # needs neither the detector nor the issuer to start
        return ResolverActor.start(ctx, config.resolver, detector=detector)

    resolvers = [ChildSpec("resolver", resolver)] if config.resolver.enabled else []

    def acme(ctx: ActorContext) -> Any:  # its requests to the detector and issuer wait for them
        return AcmeActor.start(ctx, config.acme, config.ca)

    # ACME's domain control is the validators' quorum: served with [trust] and the HTTP edge
    acmes = [ChildSpec("acme", acme)] if acme_runs(config) else []

    return [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, config.hsm), start_timeout_s=60),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, config.ctlog), start_timeout_s=120),
        *trust,
        ChildSpec("issuer", issuer, start_timeout_s=120),
        ChildSpec("monitor", lambda ctx: CTMonitorActor.start(ctx, config.monitor)),
        ChildSpec("renewal", renewal),
        *resolvers,
        *acmes,
    ]
