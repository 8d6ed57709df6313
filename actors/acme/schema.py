"""The ACME database's tables (``store.AcmeStore`` reads and writes them).

One row per record of ``records``; JSON for the lists and objects a record holds.
Orders name their authorizations in ``order_authorizations`` (an authorization reused
by several orders of an account is one row), certificates their names in
``certificate_names`` (the per-name rate limit counts them). Times are seconds since
1970. ``CREATE ... IF NOT EXISTS``: opening a database made by this version again
changes nothing.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id            TEXT PRIMARY KEY,
    jwk           TEXT NOT NULL,             -- JSON (RFC 7517)
    thumbprint    TEXT NOT NULL UNIQUE,      -- RFC 7638: one account per key
    contact       TEXT NOT NULL,             -- JSON list of URLs
    status        TEXT NOT NULL,
    created       REAL NOT NULL,             -- seconds since 1970
    terms_agreed  INTEGER NOT NULL,
    eab_kid       TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    id            TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    status        TEXT NOT NULL,
    identifiers   TEXT NOT NULL,             -- JSON [[type, value], ...]
    profile       TEXT NOT NULL,
    created       REAL NOT NULL,
    expires       REAL NOT NULL,
    error         TEXT,                      -- JSON problem document
    csr           TEXT,                      -- PEM, once finalized
    certificate   TEXT,
    replaces      TEXT
);
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account, created);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE TABLE IF NOT EXISTS order_proofs (      -- a consensus profile's finalize: the proofs
    order_id      TEXT PRIMARY KEY,
    proofs        TEXT NOT NULL              -- JSON (trust.requests.RequestProofs)
);
CREATE TABLE IF NOT EXISTS order_authorizations (
    order_id      TEXT NOT NULL,
    position      INTEGER NOT NULL,
    authz         TEXT NOT NULL,
    PRIMARY KEY (order_id, position)
);
CREATE INDEX IF NOT EXISTS order_authorizations_by_authz ON order_authorizations (authz);
CREATE TABLE IF NOT EXISTS authorizations (
    id            TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    type          TEXT NOT NULL,
    value         TEXT NOT NULL,
    wildcard      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    created       REAL NOT NULL,
    expires       REAL NOT NULL,
    validated     REAL,
    evidence      TEXT                       -- JSON: the validators' votes
);
CREATE INDEX IF NOT EXISTS authorizations_by_identifier
    ON authorizations (account, type, value, wildcard, status);
CREATE TABLE IF NOT EXISTS challenges (
    id            TEXT PRIMARY KEY,
    authz         TEXT NOT NULL,
    type          TEXT NOT NULL,
    token         TEXT NOT NULL,
    status        TEXT NOT NULL,
    validated     REAL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS challenges_by_authz ON challenges (authz);
CREATE INDEX IF NOT EXISTS challenges_by_status ON challenges (status);
CREATE TABLE IF NOT EXISTS certificates (
    id            TEXT PRIMARY KEY,
    serial        TEXT NOT NULL UNIQUE,
    cert_id       TEXT NOT NULL UNIQUE,      -- RFC 9773
    account       TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    chain         TEXT NOT NULL,             -- PEM, leaf first
    names         TEXT NOT NULL,             -- JSON list
    issued        REAL NOT NULL,
    not_before    REAL NOT NULL,
    not_after     REAL NOT NULL,
    revoked       REAL,
    reason        TEXT
);
CREATE TABLE IF NOT EXISTS certificate_names (
    name          TEXT NOT NULL,
    issued        REAL NOT NULL,
    certificate   TEXT NOT NULL,
    PRIMARY KEY (name, certificate)
);
CREATE INDEX IF NOT EXISTS certificate_names_by_time ON certificate_names (name, issued);
CREATE TABLE IF NOT EXISTS probe (             -- a durable write that says the disk takes writes
    id            INTEGER PRIMARY KEY CHECK (id = 0),
    at            REAL NOT NULL
);
"""

# Each table's columns, in order: a record is written whole by an upsert, which keeps the
# row's rowid (the order records were first written in, which listings follow).
COLUMNS = {
    "accounts": "id jwk thumbprint contact status created terms_agreed eab_kid",
    "orders": "id account status identifiers profile created expires error csr certificate "
    "replaces",
    "authorizations": "id account type value wildcard status created expires validated evidence",
    "challenges": "id authz type token status validated error",
    "certificates": "id serial cert_id account order_id chain names issued not_before "
    "not_after revoked reason",
}


def upsert(table: str) -> str:
    columns = COLUMNS[table].split()
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}"
