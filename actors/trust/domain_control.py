"""Domain control corroborated by the validators' quorum: the records ACME issuance needs.

An ACME challenge (RFC 8555 §8) is put to every validator; each checks it from its own
perspective and signs a vote over ``challenge_digest``. When 2f+1 approve, the detector
records that ``account`` controls the identifier (a DNS name or an IPv6 address), with
the decision -- the signed votes -- as evidence, until ``expires``
(``acme.authorization_reuse_s``, the life of the ACME authorization it made valid).

At issuance the issuer's gate asks for every name of the certificate
(``ConfirmDomainControl``): a DNS name needs a record for itself, a ``*.`` wildcard a
record for its base name made with ``dns-01`` (RFC 8555 §7.1.3: wildcards are proved
through DNS only), an IPv6 address a record of type ``ip``. One name without a live
record refuses the whole certificate.

The evidence is the ``Decision`` itself (``votes.Decision.to_json``): anyone holding the
validators' public keys can check it again (``votes.check_decision``).

``identifiers_of`` and ``DomainControlRecord`` are pure; ``StoredDomainControl`` keeps
the records in the trust store's database, its writes joining the store's batch under way
(the decision that made them), as ``StoredFingerprints`` does.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .votes import Decision

if TYPE_CHECKING:
    from .store import TrustStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS domain_control (      -- ACME challenges the quorum corroborated
    account          TEXT NOT NULL,
    identifier_type  TEXT NOT NULL CHECK (identifier_type IN ('dns', 'ip')),
    identifier       TEXT NOT NULL,
    kind             TEXT NOT NULL,             -- http-01, dns-01, tls-alpn-01
    digest           BLOB NOT NULL,             -- challenge_digest: what the votes sign
    decision         TEXT NOT NULL,             -- Decision.to_json: the signed votes
    validated_at     REAL NOT NULL,
    expires          REAL NOT NULL,
    PRIMARY KEY (account, identifier_type, identifier, kind)
);
CREATE INDEX IF NOT EXISTS domain_control_by_expiry ON domain_control (expires);
"""


@dataclass(frozen=True)
class Wanted:
    """What one certificate name needs a record of."""

    name: str  # as the certificate has it
    identifier_type: str
    identifier: str
    dns01_only: bool  # a wildcard: proved through DNS only


def identifiers_of(names: list[str]) -> list[Wanted]:
    """Each certificate name and the identifier whose control it needs."""
    wanted = []
    for name in names:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            text = name.lower().rstrip(".")
            if text.startswith("*."):
                wanted.append(Wanted(name, "dns", text[2:], True))
            else:
                wanted.append(Wanted(name, "dns", text, False))
            continue
        wanted.append(Wanted(name, "ip", address.compressed, False))
    return wanted


@dataclass(frozen=True)
class DomainControlRecord:
    account: str
    identifier_type: str
    identifier: str
    kind: str
    decision: Decision
    validated_at: float
    expires: float

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "type": self.identifier_type,
            "identifier": self.identifier,
            "kind": self.kind,
            "validated_at": self.validated_at,
            "expires": self.expires,
            "decision": self.decision.to_json(),
        }


class StoredDomainControl:
    """The records in the trust store (its ``domain_control`` table)."""

    def __init__(self, store: TrustStore) -> None:
        self._store = store

    def add(self, record: DomainControlRecord) -> None:
        """Keep ``record`` (replacing an older one of the same account, identifier and
        kind), and drop records expired by its time."""
        with self._store._transaction() as db:
            db.execute("DELETE FROM domain_control WHERE expires <= ?", (record.validated_at,))
            db.execute(
                "INSERT OR REPLACE INTO domain_control VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record.account, record.identifier_type, record.identifier, record.kind,
                 record.decision.digest, json.dumps(record.decision.to_json()),
                 record.validated_at, record.expires),
            )  # fmt: skip

    def find(self, account: str, wanted: Wanted, now: float) -> DomainControlRecord | None:
        """The newest live record that proves ``wanted`` for ``account``, if any."""
        query = (
            "SELECT kind, decision, validated_at, expires FROM domain_control WHERE account = ?"
            " AND identifier_type = ? AND identifier = ? AND expires > ?"
        )
        args: tuple[Any, ...] = (account, wanted.identifier_type, wanted.identifier, now)
        if wanted.dns01_only:
            query += " AND kind = 'dns-01'"
        row = self._store._db.execute(query + " ORDER BY validated_at DESC", args).fetchone()
        if row is None:
            return None
        kind, decision, validated_at, expires = row
        return DomainControlRecord(account, wanted.identifier_type, wanted.identifier, kind,
                                   Decision.from_json(json.loads(decision)), validated_at,
                                   expires)  # fmt: skip

    def count(self, now: float) -> int:
        (live,) = self._store._db.execute(
            "SELECT COUNT(*) FROM domain_control WHERE expires > ?", (now,)
        ).fetchone()
        return int(live)
