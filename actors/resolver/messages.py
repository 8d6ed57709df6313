"""The resolver's vocabulary (``resolver`` in the tree, ResolverActor).

``Query`` is the DNS-over-QUIC server's, in-process: one DNS message in wire
format in, the response's wire format out (a FORMERR, REFUSED or SERVFAIL
response for a bad or unanswerable query, never an error reply). The rest are
the control socket's and the CLI's (`trustchain send resolver resolve --args
'{"name": "hypermesh.trust.example.com"}'`).

Which are queries (answered ahead of the mailbox's queue): ``Zone`` and
``ResolverStatus`` only read. ``Resolve`` is not one: it counts the query,
reads and fills the cache and may start upstream requests, so it takes its turn
like ``Query`` does (and sees every asset refresh queued before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

Wire = Annotated[bytes, Bounds(min_length=0, max_length=65_535)]  # one DNS message
PaddingBlock = Annotated[int, Bounds(min=0, max=65_535)]  # octets; 0: no padding
Name = Annotated[str, Bounds(min_length=1, max_length=1_024)]  # text, escapes allowed
RdType = Annotated[str, Bounds(min_length=1, max_length=16)]  # "AAAA", "A", "TXT", "TYPE65"


@dataclass(frozen=True)
class Query(Message):
    """A DNS query in wire format; answered with the response's wire bytes (its ID
    the query's). With ``padding_block`` > 0 and EDNS in the query, the response is
    padded with the EDNS(0) Padding option to a multiple of that many octets
    (RFC 8467; 468 is the recommended block for responses)."""

    wire: Wire
    padding_block: PaddingBlock = 0


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
