"""What every part of the issuer stands on: its configuration, its peers, the CA's store
and hierarchy, and how the parts' handlers join into one actor.

``IssuerActor`` (``actor.py``) is composed of parts, each a subclass of ``IssuerBase``
holding one idea: publishing CRLs (``crls.py``), faults of the CA store
(``faults.py``), the issuance pipeline (``pipeline.py``), revocation and the CRL and
certificate queries (``revocation.py``), the hierarchy's start-up and rotation
(``hierarchy.py``). They share one thread, one mailbox and the state below, so they
are mixins of one actor, not actors of their own.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from trustchain.actors.ca import CAStore, Hierarchy, IssuancePolicy
from trustchain.actors.trust.vdf import RSA_2048
from trustchain.config import CaConfig
from trustchain.supervisors import ActorContext, SupervisedActor

STORE_FAULTS = (OSError, sqlite3.OperationalError)  # disk full, I/O error, read-only


def policy_from_config(ca: CaConfig) -> IssuancePolicy:
    return IssuancePolicy(
        permitted_zones=tuple(ca.permitted_zones),
        allow_wildcards=ca.allow_wildcards,
        allow_ipv6_sans=ca.allow_ipv6_sans,
        allowed_key_types=frozenset(ca.allowed_key_types),
        min_validity=timedelta(seconds=ca.min_validity_s),
        max_validity=timedelta(seconds=ca.max_validity_s),
        default_validity=timedelta(seconds=ca.default_validity_s),
        max_csr_bytes=ca.max_csr_bytes,
        max_sans=ca.max_sans,
        subject_mode=ca.subject,
    )


class IssuerBase(SupervisedActor):
    """The state the issuer's parts share; ``store`` and ``hierarchy`` are opened at
    start-up."""

    store: CAStore | None
    hierarchy: Hierarchy

    def __init__(
        self,
        context: ActorContext,
        config: CaConfig,
        hsm: str = "hsm",
        ctlog: str | None = "ctlog",
        detector: str | None = None,
        vdf_modulus: int = RSA_2048,
    ) -> None:
        super().__init__(context)
        self.config = config
        self.hsm = hsm
        self.ctlog = ctlog  # None: issue without a CT log
        self.detector = detector  # None: issue without the consensus (trust.enabled off)
        self.vdf_modulus = vdf_modulus  # to read the requests' PoTime
        self.policy = policy_from_config(config)
        self.store = None
