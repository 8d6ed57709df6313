"""The resolver's vocabulary (``resolver`` in the tree, ResolverActor).

``Query`` is the DNS-over-QUIC server's, in-process: one DNS message in wire
format in, the response's wire format out (a FORMERR, REFUSED or SERVFAIL
response for a bad or unanswerable query, never an error reply). The actor
publishes its zone, so that a listener answers a repeated zone query from memory
(``memo.ZoneMemo``) and reports how many it did (``ZoneAnswersServed``). The rest are
the control socket's and the CLI's (`trustchain send resolver resolve --args
'{"name": "hypermesh.trust.example.com"}'`).

``AddChallengeTxt``, ``RemoveChallengeTxt`` and ``ListChallengeTxt`` are ACME
dns-01's (RFC 8555 §8.4): a TXT record at ``_acme-challenge.<name under the zone>``,
published and removed by the client that owns the name (`trustchain dns txt add|del`,
certbot's manual hooks); an addition is answered once it is on disk. No further
authorization: the control socket is the operator's (mode 0600, same uid). Their
errors: ``ChallengeTxtInvalid``, ``ChallengeTxtLimit`` (the caller's) and
``ChallengeStoreUnavailable`` (the disk's: retried, shown as the ``challenge_db``
fault).

Which are queries (answered ahead of the mailbox's queue): ``Zone``,
``ListChallengeTxt`` and ``ResolverStatus`` only read. ``Resolve`` is not one: it counts the query,
reads and fills the cache and may start upstream requests, so it takes its turn
like ``Query`` does (and sees every asset refresh queued before it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from trustchain.supervisors import Message
from trustchain.supervisors.errors import TrustChainError
from trustchain.supervisors.messages import Bounds

Wire = Annotated[bytes, Bounds(min_length=0, max_length=65_535)]  # one DNS message
PaddingBlock = Annotated[int, Bounds(min=0, max=65_535)]  # octets; 0: no padding
Name = Annotated[str, Bounds(min_length=1, max_length=1_024)]  # text, escapes allowed
RdType = Annotated[str, Bounds(min_length=1, max_length=16)]  # "AAAA", "A", "TXT", "TYPE65"
# checked by the actor, which says what is wrong (ChallengeTxtInvalid) past these bounds
TxtValue = Annotated[str, Bounds(min_length=0, max_length=1_024)]


class ChallengeTxtInvalid(TrustChainError):
    """Not a challenge TXT the zone can hold: the name is not ``_acme-challenge.`` and a
    name in the zone (or is a CNAME there), or the value is not 1 to 255 printable
    ASCII octets."""

    code = "challenge_txt_invalid"


class ChallengeTxtLimit(TrustChainError):
    """Too many challenge TXT values at that name, or in all; remove some (or let them
    expire, an hour after their addition)."""

    code = "challenge_txt_limit"


class ChallengeStoreUnavailable(TrustChainError):
    """The challenge database (``resolver.challenge_db``) cannot be written (a full
    disk, an I/O error): nothing was changed; retried, and shown in status and /ready
    as the ``challenge_db`` fault until it works again."""

    code = "challenge_store_unavailable"


@dataclass(frozen=True)
class Query(Message):
    """A DNS query in wire format; answered with the response's wire bytes (its ID
    the query's). With ``padding_block`` > 0 and EDNS in the query, the response is
    padded with the EDNS(0) Padding option to a multiple of that many octets
    (RFC 8467; 468 is the recommended block for responses)."""

    wire: Wire
    padding_block: PaddingBlock = 0


@dataclass(frozen=True)
class ZoneAnswersServed(Message):
    """A listener answered these zone queries from its memory of the published zone
    (``memo.ZoneMemo``), by rcode: counted with the actor's own answers (the source
    ``zone_memo``).
    In-process only (JSON cannot carry a ``Counter``): the listeners' own report."""

    counts: Counter[str]


@dataclass(frozen=True)
class Resolve(Message):
    """Resolve ``name`` (absolute or not: a name without a final dot is taken as
    written, not relative to the origin) for ``rdtype``; answered with
    ``{"name", "type", "rcode", "answer": [rr text], "authority": [rr text]}`` and
    ``"ede": {"code", "text"}`` when the answer carries an Extended DNS Error.

    The field is ``rdtype`` because ``type`` is every message's wire type."""

    name: Name
    rdtype: RdType = "AAAA"


@dataclass(frozen=True)
class Zone(Message):
    """The zone's records now (config and registered assets), one rr per line of
    text in master-file form, sorted by name."""

    query = True


@dataclass(frozen=True)
class ResolverStatus(Message):
    """Queries answered by rcode, cache hits and misses, upstream disagreements
    (per upstream), asset records and when they were last refreshed."""

    query = True


@dataclass(frozen=True)
class AddChallengeTxt(Message):
    """Publish ``value`` in a TXT record at ``name`` (``_acme-challenge.`` and the origin
    or a name under it; absolute, the final dot optional) for an hour; answered
    ``{"name", "value", "expires_at"}`` once it is on disk. Adding it again renews it."""

    name: Name
    value: TxtValue


@dataclass(frozen=True)
class RemoveChallengeTxt(Message):
    """Remove ``value`` from the TXT record at ``name``; answered ``{"name", "value",
    "removed"}`` once on disk (``removed`` false when it was not there)."""

    name: Name
    value: TxtValue


@dataclass(frozen=True)
class ListChallengeTxt(Message):
    """Every challenge TXT value in the zone now: ``[{"name", "value", "expires_at"}]``."""

    query = True
