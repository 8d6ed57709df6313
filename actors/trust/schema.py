"""The consensus's SQLite tables (``store.TrustStore`` reads and writes them; what each
holds is said in its module's docstring), with the ACME domain control records'
(``domain_control.SCHEMA``). ``CREATE ... IF NOT EXISTS``: opening a database made by
this version again changes nothing.
"""

from __future__ import annotations

from .domain_control import SCHEMA as DOMAIN_CONTROL_SCHEMA

_TABLES = """
CREATE TABLE IF NOT EXISTS registrations (
    asset_key        BLOB NOT NULL,             -- raw 32-octet Ed25519 public key
    epoch            INTEGER NOT NULL,
    stake            TEXT NOT NULL,             -- JSON, as the stake module writes it
    space_commitment BLOB NOT NULL,
    registered_at    REAL NOT NULL,             -- seconds since 1970
    PRIMARY KEY (asset_key, epoch)
);
CREATE TABLE IF NOT EXISTS validator_scores (
    validator        TEXT PRIMARY KEY,
    score            REAL NOT NULL CHECK (score BETWEEN 0 AND 1),
    quarantined      INTEGER NOT NULL CHECK (quarantined IN (0, 1)),
    agreed           INTEGER NOT NULL,
    dissented        INTEGER NOT NULL,
    quarantined_at   REAL
);
CREATE TABLE IF NOT EXISTS asset_histories (
    asset            TEXT PRIMARY KEY,          -- the asset key in hex (formats.asset_id)
    as_of            REAL NOT NULL,
    counts           TEXT NOT NULL,             -- JSON: factor -> decayed count as of as_of
    totals           TEXT NOT NULL              -- JSON: factor -> count ever
);
CREATE TABLE IF NOT EXISTS equivocations (
    validator        TEXT NOT NULL,
    digest           BLOB NOT NULL,
    first_vote       BLOB NOT NULL,             -- Vote.to_bytes: signed, self-contained
    second_vote      BLOB NOT NULL,
    found_at         REAL NOT NULL,
    PRIMARY KEY (validator, digest)
);
CREATE TABLE IF NOT EXISTS decisions (
    digest           BLOB PRIMARY KEY,
    outcome          TEXT NOT NULL CHECK (outcome IN ('approve', 'reject')),
    decision         TEXT NOT NULL,             -- Decision.to_json
    decided_at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS space_challenges (
    given            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order they were given in
    asset_key        BLOB NOT NULL,
    epoch            INTEGER NOT NULL,
    challenge        BLOB NOT NULL,
    commitment       BLOB NOT NULL,             -- the plot committed to before the challenge
    n                INTEGER NOT NULL,          -- its blocks
    UNIQUE (asset_key, epoch)
);
CREATE INDEX IF NOT EXISTS space_challenges_by_epoch ON space_challenges (epoch);
CREATE TABLE IF NOT EXISTS asset_records (
    asset_key        BLOB NOT NULL,
    epoch            INTEGER NOT NULL,
    name             TEXT NOT NULL,             -- one DNS label under the zone's assets
    addresses        TEXT NOT NULL,             -- JSON list of compressed IPv6 text
    signature        BLOB NOT NULL,             -- the asset's, records.record_tbs
    PRIMARY KEY (asset_key, epoch),
    UNIQUE (epoch, name)
);
CREATE TABLE IF NOT EXISTS proof_fingerprints (
    fingerprint      BLOB PRIMARY KEY,          -- scores.proof_fingerprint
    digest           BLOB NOT NULL,             -- where it was first seen
    asset            TEXT NOT NULL,
    epoch            INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS proof_fingerprints_by_epoch ON proof_fingerprints (epoch);
CREATE TABLE IF NOT EXISTS replay_epoch (      -- the newest epoch the guard has seen
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    newest           INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS upstream_faults (     -- the resolver's upstreams that disagreed
    upstream         TEXT PRIMARY KEY,
    disagreements    INTEGER NOT NULL,
    last_at          REAL NOT NULL,
    last_question    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (             -- a durable write that says the disk takes writes
    id               INTEGER PRIMARY KEY CHECK (id = 0),
    at               REAL NOT NULL
);
"""

SCHEMA = _TABLES + DOMAIN_CONTROL_SCHEMA
