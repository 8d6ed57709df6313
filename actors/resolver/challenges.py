"""ACME dns-01 challenge TXT records in the zone: which may be published, and the small
SQLite file that keeps them across restarts.

Theory (RFC 8555 §8.4). A client proves control of a name under the zone by putting
the key authorization's digest in a TXT record at ``_acme-challenge.<name>`` and
removing it afterwards (certbot's manual hooks: ``trustchain dns txt add|del``). Here:

* a challenge name is ``_acme-challenge.`` followed by the origin or a name under it
  (``challenge_name``); a value is 1 to ``MAX_VALUE_OCTETS`` printable ASCII octets
  (one TXT string: a base64url digest is 43), ``challenge_value``; anything else is
  ``ChallengeTxtInvalid``;
* at most ``MAX_VALUES_PER_NAME`` values at one name (an order for a name and its
  wildcard needs two) and ``MAX_CHALLENGES`` in all, else ``ChallengeTxtLimit``;
* each lives ``CHALLENGE_LIFETIME_S`` from its (last) addition, so one a client forgot
  to remove goes by itself; adding a value again renews it; removing one that is not
  there (removed already, expired) is not an error.

``ChallengeStore`` is the file: a change returns only once SQLite has committed it
with ``synchronous=FULL`` (on disk), and the file is created on the first addition, so
a TrustChain that never publishes a challenge writes nothing. Every ``sqlite3`` or
``OSError`` is the caller's to map to a fault of the environment (a full disk); the
store itself stays usable after one (a failed commit is rolled back).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name

from trustchain.actors.resolver.messages import ChallengeTxtInvalid

CHALLENGE_LABEL = "_acme-challenge"
CHALLENGE_LIFETIME_S = 3_600
MAX_VALUE_OCTETS = 255  # one character-string of a TXT record
MAX_VALUES_PER_NAME = 4
MAX_CHALLENGES = 1_000
STORE_FAULTS = (OSError, sqlite3.Error)  # a full disk, an I/O error, a read-only file


@dataclass(frozen=True)
class ChallengeTxt:
    name: dns.name.Name  # absolute
    value: str
    expires_at: float  # seconds since the epoch

    def to_json(self) -> dict[str, object]:
        return {"name": self.name.to_text(), "value": self.value, "expires_at": self.expires_at}


def challenge_name(text: str, origin: dns.name.Name) -> dns.name.Name:
    """``text`` (absolute; the final dot may be left out) as a challenge name of the zone
    at ``origin``; ``ChallengeTxtInvalid`` saying what is wrong."""
    try:
        name = dns.name.from_text(text)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ChallengeTxtInvalid(f"{text!r} is not a DNS name: {exc}") from None
    first = name.labels[0].decode("ascii", "replace").lower() if name.labels else ""
    if len(name.labels) < 2 or first != CHALLENGE_LABEL:
        raise ChallengeTxtInvalid(
            f"{name} does not start with {CHALLENGE_LABEL}.: a dns-01 TXT record lives at "
            f"{CHALLENGE_LABEL}.<the name being validated> (RFC 8555 §8.4)"
        )
    if not name.parent().is_subdomain(origin):
        raise ChallengeTxtInvalid(
            f"{name} is not in the zone {origin}: give the full name, "
            f"{CHALLENGE_LABEL}.<a name under {origin}>"
        )
    return name.canonicalize()


def challenge_value(text: str) -> str:
    """``text`` as a TXT value: printable ASCII, 1 to 255 octets."""
    if not text:
        raise ChallengeTxtInvalid("the TXT value is empty")
    if len(text) > MAX_VALUE_OCTETS:
        raise ChallengeTxtInvalid(
            f"the TXT value is {len(text)} characters; at most {MAX_VALUE_OCTETS}"
        )
    if not all(" " <= c <= "~" for c in text):
        raise ChallengeTxtInvalid("the TXT value must be printable ASCII (a base64url digest)")
    return text


class ChallengeStore:
    """The challenges on disk (one table; a row per name and value)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def load(self, now: float) -> list[ChallengeTxt]:
        """Those not expired at ``now``; none without a file."""
        if self._db is None and not self.path.exists():
            return []
        rows = self._open().execute(
            "SELECT name, value, expires_at FROM challenges WHERE expires_at > ? ORDER BY rowid",
            (now,),
        )
        return [ChallengeTxt(dns.name.from_text(n), v, e) for n, v, e in rows]

    def add(self, challenge: ChallengeTxt) -> None:
        with self._open() as db:  # commits (or rolls back) before returning
            db.execute(
                "INSERT OR REPLACE INTO challenges (name, value, expires_at) VALUES (?, ?, ?)",
                (challenge.name.to_text(), challenge.value, challenge.expires_at),
            )

    def remove(self, name: dns.name.Name, value: str) -> None:
        if self._db is None and not self.path.exists():
            return
        with self._open() as db:
            db.execute(
                "DELETE FROM challenges WHERE name = ? AND value = ?", (name.to_text(), value)
            )

    def purge(self, now: float) -> None:
        """Delete those expired at ``now``."""
        if self._db is None and not self.path.exists():
            return
        with self._open() as db:
            db.execute("DELETE FROM challenges WHERE expires_at <= ?", (now,))

    def probe(self) -> None:
        """A durable write, to tell whether the file can be written again."""
        with self._open() as db:
            db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, julianday('now'))")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA synchronous = FULL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS challenges (name TEXT NOT NULL, "
                    "value TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (name, value))"
                )
                db.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL)")
            except BaseException:
                db.close()
                raise
            db.isolation_level = "DEFERRED"  # each change its own transaction (``with``)
            self._db = db
        return self._db
