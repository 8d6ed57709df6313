"""The CA's durable records in SQLite: its certificates, what it issued, CRL numbers.

Serials are the uniqueness the whole CA rests on (RFC 5280 §4.1.2.2: unique per
issuer), so the database enforces it: ``issued.serial`` is the PRIMARY KEY, as
lower-case hex without leading zeros (``serial_hex``). Every public method is
one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any
error), so a failed call changes nothing. Files use WAL with synchronous=FULL:
a record the caller saw committed survives a crash. Times are stored as
ISO 8601 UTC text to the second, which sorts as time. A caller's request id (an ACME
order's) is kept with the certificate issued for it (``requests``), in the same
transaction, so that a retry finds that certificate (``issued_for``) instead of getting a
second one.

The connection belongs to the thread that opened it (sqlite3's default): open
the store in the owning actor's ``on_start``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..sqlite import open_database, transaction
from .crl import RevokedEntry, parse_reason
from .errors import AlreadyRevoked, DuplicateSerial, UnknownSerial

Role = Literal["root", "intermediate"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ca_certificates (
    fingerprint TEXT PRIMARY KEY,           -- SHA-256 of the DER, hex
    role        TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
    key_label   TEXT NOT NULL,
    pem         TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1))
);
CREATE TABLE IF NOT EXISTS issued (
    serial           TEXT PRIMARY KEY,      -- lower-case hex, no leading zeros
    names            TEXT NOT NULL,         -- JSON list of DNS names and IP addresses
    not_before       TEXT NOT NULL,
    not_after        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('issued', 'revoked')),
    revoked_at       TEXT,
    reason           TEXT,
    cert_der         BLOB NOT NULL,
    issuer_key_label TEXT NOT NULL          -- the issuing CA's key label: ca_label
);
CREATE INDEX IF NOT EXISTS issued_revoked ON issued (issuer_key_label, status);
CREATE TABLE IF NOT EXISTS decisions (      -- the consensus's approval of an issuance
    serial   TEXT PRIMARY KEY REFERENCES issued (serial),
    decision TEXT NOT NULL                  -- JSON: trust.votes.Decision, its signed votes
);
CREATE TABLE IF NOT EXISTS requests (        -- the caller's request id of an issuance
    request_id TEXT PRIMARY KEY,
    serial     TEXT NOT NULL REFERENCES issued (serial)
);
CREATE TABLE IF NOT EXISTS final_log (       -- a final certificate's own entry in the CT log
    serial     TEXT PRIMARY KEY REFERENCES issued (serial),
    leaf_index INTEGER                      -- NULL until the log has taken it
);
CREATE INDEX IF NOT EXISTS final_log_pending ON final_log (leaf_index) WHERE leaf_index IS NULL;
CREATE TABLE IF NOT EXISTS probe (           -- one row, rewritten to see the disk take writes
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS crl_numbers (
    issuer_key_label TEXT PRIMARY KEY,
    last_number      INTEGER NOT NULL
);
"""


def serial_hex(serial: int) -> str:
    """The canonical text of a serial: lower-case hex, no leading zeros."""
    if serial <= 0:
        raise ValueError("serial numbers are positive")
    return format(serial, "x")


def parse_serial(text: str) -> int:
    """A serial from hex text (any case, optional colons or 0x); UnknownSerial if not hex."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise UnknownSerial(f"{text!r} is not a hexadecimal serial number") from None
    if value <= 0:
        raise UnknownSerial(f"{text!r} is not a serial number this CA issues")
    return value


def _key(serial: int) -> str:
    if serial <= 0:
        raise UnknownSerial(f"{serial} is not a serial number this CA issues")
    return serial_hex(serial)


def _time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in san if isinstance(name, x509.DNSName | x509.IPAddress)]


@dataclass(frozen=True)
class CACertificateRecord:
    fingerprint: str
    role: Role
    key_label: str
    certificate: x509.Certificate
    not_after: datetime
    active: bool


@dataclass(frozen=True)
class IssuanceRecord:
    serial: int
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    status: Literal["issued", "revoked"]
    revoked_at: datetime | None
    reason: str | None
    cert_der: bytes
    ca_label: str  # the key label of the CA that issued it
    decision: dict[str, Any] | None = None  # the validators' approval (trust.enabled)
    final_leaf_index: int | None = None  # the final certificate's entry in the CT log, once in

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)


class CAStore:
    """The CA's records in one SQLite database (a path, or ":memory:")."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._db = open_database(path, _SCHEMA, foreign_keys=True)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def probe(self, now: datetime) -> None:
        """A small durable write: succeeds once the disk takes writes again."""
        with self._transaction() as db:
            db.execute("DELETE FROM probe")
            db.execute("INSERT INTO probe (at) VALUES (?)", (_time(now),))

    # -- CA certificates ----------------------------------------------------

    def add_ca_certificate(
        self, role: Role, key_label: str, cert: x509.Certificate, *, active: bool = True
    ) -> CACertificateRecord:
        """Record a CA certificate; adding the same certificate again updates nothing."""
        record = CACertificateRecord(
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            role=role,
            key_label=key_label,
            certificate=cert,
            not_after=cert.not_valid_after_utc,
            active=active,
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO ca_certificates VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.fingerprint, role, key_label, pem, _time(cert.not_valid_before_utc),
                 _time(record.not_after), int(active)),
            )  # fmt: skip
        return record

    def set_ca_active(self, fingerprint: str, active: bool) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE ca_certificates SET active = ? WHERE fingerprint = ?",
                (int(active), fingerprint),
            )

    def list_ca_certificates(self, role: Role | None = None) -> list[CACertificateRecord]:
        """CA certificates, oldest first, optionally of one role."""
        query = "SELECT fingerprint, role, key_label, pem, not_after, active FROM ca_certificates"
        rows = (
            self._db.execute(query + " WHERE role = ? ORDER BY not_before, rowid", (role,))
            if role
            else self._db.execute(query + " ORDER BY not_before, rowid")
        )
        return [
            CACertificateRecord(
                fingerprint=row[0],
                role=row[1],
                key_label=row[2],
                certificate=x509.load_pem_x509_certificate(row[3].encode("ascii")),
                not_after=_parse_time(row[4]),
                active=bool(row[5]),
            )
            for row in rows
        ]

    def current_intermediate(self, now: datetime) -> CACertificateRecord | None:
        """The active intermediate valid at ``now`` that was issued last, if any."""
        valid = [
            r
            for r in self.list_ca_certificates("intermediate")
            if r.active and r.certificate.not_valid_before_utc <= now <= r.not_after
        ]
        return valid[-1] if valid else None

    # -- issued certificates ------------------------------------------------

    def record_issued(self, cert: x509.Certificate, ca_label: str) -> IssuanceRecord:
        """Record an issued certificate; ``DuplicateSerial`` if its serial exists."""
        serial = serial_hex(cert.serial_number)
        names = _cert_names(cert)
        der = cert.public_bytes(serialization.Encoding.DER)
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO issued VALUES (?, ?, ?, ?, 'issued', NULL, NULL, ?, ?)",
                    (serial, json.dumps(names), _time(cert.not_valid_before_utc),
                     _time(cert.not_valid_after_utc), der, ca_label),
                )  # fmt: skip
        except sqlite3.IntegrityError:
            raise DuplicateSerial(
                f"serial {serial} was already issued; draw a new serial and build again",
                serial=serial,
            ) from None
        return self.get(cert.serial_number)

    def record_issued_batch(
        self,
        certs: Sequence[tuple[x509.Certificate, str, Sequence[str], dict[str, Any] | None]],
        request_ids: Sequence[str | None] | None = None,
        *,
        log_finals: bool = False,
    ) -> list[DuplicateSerial | None]:
        """Record many certificates in one transaction (one fsync: group commit).

        Each is ``(certificate, CA label, names, decision)``, the names in SAN order
        (the issuer knows them; parsing them back out of the certificate costs more than
        the insert), the decision the consensus's approval as JSON (or None). Returns,
        per certificate, ``None`` when recorded or the ``DuplicateSerial`` that refused
        it; the others are recorded all the same. ``request_ids`` (one per certificate, or
        None) are the callers' names for the requests: ``issued_for`` finds them (the first
        certificate recorded for an id keeps it). With ``log_finals``, each certificate
        recorded is also owed to the CT log (``finals_to_log``), in the same transaction.
        """
        outcomes: list[DuplicateSerial | None] = []
        ids = list(request_ids) if request_ids is not None else [None] * len(certs)
        with self._transaction() as db:
            for (cert, ca_label, names, decision), request_id in zip(certs, ids, strict=True):
                serial = serial_hex(cert.serial_number)
                inserted = db.execute(
                    "INSERT OR IGNORE INTO issued VALUES (?, ?, ?, ?, 'issued', NULL, NULL, ?, ?)",
                    (serial, json.dumps(list(names)), _time(cert.not_valid_before_utc),
                     _time(cert.not_valid_after_utc),
                     cert.public_bytes(serialization.Encoding.DER), ca_label),
                ).rowcount  # fmt: skip
                if inserted and decision is not None:
                    db.execute(
                        "INSERT INTO decisions VALUES (?, ?)", (serial, json.dumps(decision))
                    )
                if inserted and request_id is not None:
                    db.execute("INSERT OR IGNORE INTO requests VALUES (?, ?)",
                               (request_id, serial))  # fmt: skip
                if inserted and log_finals:
                    db.execute("INSERT INTO final_log VALUES (?, NULL)", (serial,))
                outcomes.append(
                    None
                    if inserted
                    else DuplicateSerial(f"serial {serial} was already issued", serial=serial)
                )
        return outcomes

    def finals_to_log(self, limit: int) -> list[tuple[int, bytes, str]]:
        """Up to ``limit`` certificates the CT log has not taken yet, oldest first:
        (serial, DER, the issuing CA's key label)."""
        rows = self._db.execute(
            "SELECT f.serial, i.cert_der, i.issuer_key_label FROM final_log f"
            " JOIN issued i USING (serial) WHERE f.leaf_index IS NULL ORDER BY f.rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(serial, 16), bytes(der), label) for serial, der, label in rows]

    def finals_logged(self, logged: Sequence[tuple[int, int]]) -> None:
        """Record where the log put each final certificate: (serial, leaf index)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE final_log SET leaf_index = ? WHERE serial = ?",
                [(index, serial_hex(serial)) for serial, index in logged],
            )

    def count_finals_to_log(self) -> int:
        """How many final certificates the CT log has not taken yet."""
        row = self._db.execute("SELECT count(*) FROM final_log WHERE leaf_index IS NULL").fetchone()
        return int(row[0])

    def issued_for(self, request_id: str) -> IssuanceRecord | None:
        """The certificate recorded for the caller's ``request_id``, if any."""
        row = self._db.execute(
            "SELECT serial FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else self.get(int(row[0], 16))

    def get(self, serial: int) -> IssuanceRecord:
        row = self._db.execute(
            "SELECT i.serial, names, not_before, not_after, status, revoked_at, reason, cert_der,"
            " issuer_key_label, d.decision, f.leaf_index FROM issued i"
            " LEFT JOIN decisions d USING (serial) LEFT JOIN final_log f USING (serial)"
            " WHERE i.serial = ?",
            (_key(serial),),
        ).fetchone()
        if row is None:
            raise UnknownSerial(f"no certificate with serial {serial:x} was issued here")
        return IssuanceRecord(
            serial=int(row[0], 16),
            names=tuple(json.loads(row[1])),
            not_before=_parse_time(row[2]),
            not_after=_parse_time(row[3]),
            status=row[4],
            revoked_at=_parse_time(row[5]) if row[5] else None,
            reason=row[6],
            cert_der=bytes(row[7]),
            ca_label=row[8],
            decision=json.loads(row[9]) if row[9] else None,
            final_leaf_index=row[10],
        )

    def revoke(self, serial: int, reason: str, now: datetime) -> IssuanceRecord:
        """Mark a certificate revoked at ``now`` (``UnknownSerial``, ``AlreadyRevoked``)."""
        canonical = parse_reason(reason)
        key = _key(serial)
        with self._transaction() as db:
            row = db.execute("SELECT status FROM issued WHERE serial = ?", (key,)).fetchone()
            if row is None:
                raise UnknownSerial(f"no certificate with serial {key} was issued here")
            if row[0] == "revoked":
                raise AlreadyRevoked(f"certificate {key} is already revoked", serial=key)
            db.execute(
                "UPDATE issued SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ?",
                (_time(now), canonical, key),
            )
        return self.get(serial)

    def revoked_entries(
        self, ca_label: str, *, expired_before: datetime | None = None
    ) -> list[RevokedEntry]:
        """Revoked certificates of one CA, by serial, for its CRL.

        With ``expired_before``, certificates that expired before that instant are
        left out (RFC 5280 §3.3 lets a CRL drop them once one CRL issued after
        their expiry listed them).
        """
        query = (
            "SELECT serial, revoked_at, reason FROM issued "
            "WHERE issuer_key_label = ? AND status = 'revoked'"
        )
        params: tuple[str, ...] = (ca_label,)
        if expired_before is not None:
            query += " AND not_after >= ?"
            params += (_time(expired_before),)
        rows = self._db.execute(query, params).fetchall()
        entries = [RevokedEntry(int(s, 16), _parse_time(at), reason) for s, at, reason in rows]
        return sorted(entries, key=lambda e: e.serial)

    def next_crl_number(self, ca_label: str) -> int:
        """The next CRL number for this CA: 1, 2, 3, ... durable and never reused."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO crl_numbers VALUES (?, 1) ON CONFLICT (issuer_key_label) "
                "DO UPDATE SET last_number = last_number + 1",
                (ca_label,),
            )
            row = db.execute(
                "SELECT last_number FROM crl_numbers WHERE issuer_key_label = ?",
                (ca_label,),
            ).fetchone()
        return int(row[0])
