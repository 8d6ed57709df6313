"""The CT log actor's vocabulary: the messages it accepts and the bounds of their arguments.

Peers (the issuer, the monitor, the HTTP and CLI edges, benchmarks and tests) import
these, never the actor (``actors/ctlog/actor.py``); only the composition root starts it.
The log itself (tiles, Merkle proofs, chain checks) is the domain package
``trustchain.actors.ct``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from trustchain.actors.ct import LogEntryInput
from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

# Bounds of the messages' arguments (see supervisors.messages). A certificate with
# many long SANs passes 64 KiB; why a chain is refused (too long, not DER) is said
# by the handlers, as ``invalid_chain``.
Chain = Annotated[list[bytes], Bounds(items=Bounds(max_length=1_048_576))]  # DER each
Size = Annotated[int, Bounds(min=0)]  # a tree size or leaf index


@dataclass(frozen=True)
class AddChain(Message):
    chain: Chain  # the certificate, then its issuers


@dataclass(frozen=True)
class AddPreChain(Message):
    chain: Chain  # the precertificate, then its issuer(s)


@dataclass(frozen=True)
class LogIssued(Message):
    """In-process only: the issuer's own precertificates or certificates, whose chains
    it built and signed itself, logged without checking the chains again. JSON cannot
    carry ``entries``, so the control socket and HTTP refuse this message.

    Answered with one outcome per entry, in order: the SCT reply of ``add_chain`` or
    the error that refused that entry. With ``scts`` false no SCT is signed (the
    reply has the leaf index and timestamp): for final certificates, whose SCT
    nobody would use; the tree head covers them all the same.
    """

    entries: tuple[LogEntryInput, ...]
    scts: bool = True


@dataclass(frozen=True)
class GetSTH(Message):
    """The latest signed tree head (RFC 6962 get-sth)."""


@dataclass(frozen=True)
class GetSTHConsistency(Message):
    first: Size
    second: Size


@dataclass(frozen=True)
class GetProofByHash(Message):
    hash: Annotated[bytes, Bounds(min_length=32, max_length=32)]  # SHA-256 Merkle leaf hash
    tree_size: Size


@dataclass(frozen=True)
class GetEntries(Message):
    start: Size
    end: Size  # inclusive, as in RFC 6962


@dataclass(frozen=True)
class GetRoots(Message):
    """The roots the log accepts (RFC 6962 get-roots)."""


@dataclass(frozen=True)
class GetEntryAndProof(Message):
    leaf_index: Size
    tree_size: Size


@dataclass(frozen=True)
class GetCheckpoint(Message):
    """The latest checkpoint (tlog-tiles), signed note text."""


@dataclass(frozen=True)
class GetTile(Message):
    # "tile/0/x001/234", "tile/data/000.p/5", ...: an index of 2^63 takes 30 characters
    path: Annotated[str, Bounds(max_length=256)]


@dataclass(frozen=True)
class GetIssuerCertificate(Message):
    # the hex SHA-256 of the issuer certificate
    fingerprint: Annotated[str, Bounds(pattern="[0-9a-fA-F]{64}", what="64 hex digits")]


@dataclass(frozen=True)
class GetLogInfo(Message):
    """What a client needs to check the log: its public key and log ID."""


@dataclass(frozen=True)
class AcceptRoots(Message):
    certificates: Chain
