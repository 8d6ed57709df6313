"""The log's journal: each batch made durable by one append, not by rewriting tiles.

A batch that does not complete a tile changes only the edge: the partial data tile,
which holds every entry since the tile began (up to 256 of them, ~250 KB), the partial
hash tiles above it, and the checkpoint. Rewriting them as objects, each fsynced and
renamed, cost ~6 fsyncs and a dozen file-system calls per batch, and a partial data
tile's bytes again and again (41 KB written per entry with one submitter). With a
journal the commit point of a batch is one record appended to one open file and
fdatasync'd: the batch's new entries and its signed checkpoint. Full tiles and new
issuers are still written as objects, durably, before the record (they are rare: one
data tile per 256 entries). The edge's partial tiles and the checkpoint object are
written from memory later (``TileLog`` materializes them at most ``materialize_ms``
after a commit, and when the journal passes ``JOURNAL_MAX_BYTES``), then the journal
is emptied; on open, records past the checkpoint object are replayed.

Record (big-endian): tree size before the batch (8 octets), entry count (4), each
entry's encoded ``TileLeaf`` (4-octet length, bytes), the signed checkpoint note
(4-octet length, bytes). ``FileJournal`` frames each record with its length and a
CRC-32, so a record torn by a crash is recognised and dropped: its batch was never
acknowledged (the append had not returned).

This module encodes, decodes and replays records, and writes the edge to the storage
it is handed (``write_edge``); the journal's file is the storage's (``FileJournal``).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import merkle
from ._tree import TileReader, TreeState
from .checkpoint import SignedTreeHead
from .entries import TileLeaf
from .errors import CheckpointError, LogCorrupted, MalformedStructure
from .storage import TileStorage
from .tiles import DATA_LEVEL, MAX_LEVEL, Tile

JOURNAL_MAX_BYTES = 8 << 20  # past this the edge is materialized at the next commit
_HEAD = struct.Struct(">QI")
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One committed batch: the tree size before it, its new entries, its checkpoint."""

    size_before: int
    leaves: tuple[bytes, ...]  # encoded TileLeaf, in index order
    checkpoint: bytes

    @property
    def size_after(self) -> int:
        return self.size_before + len(self.leaves)

    def encode(self) -> bytes:
        parts = [_HEAD.pack(self.size_before, len(self.leaves))]
        for leaf in self.leaves:
            parts += (_LEN.pack(len(leaf)), leaf)
        parts += (_LEN.pack(len(self.checkpoint)), self.checkpoint)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> JournalRecord:
        try:
            size, count = _HEAD.unpack_from(data, 0)
            pos, leaves = _HEAD.size, []
            for _ in range(count + 1):
                (length,) = _LEN.unpack_from(data, pos)
                pos += _LEN.size
                if pos + length > len(data):
                    raise MalformedStructure("a journal record ends inside a field")
                leaves.append(data[pos : pos + length])
                pos += length
        except struct.error:
            raise MalformedStructure("a journal record ends inside a field") from None
        if pos != len(data):
            raise MalformedStructure("a journal record has bytes after its checkpoint")
        *entries, checkpoint = leaves
        return cls(size, tuple(entries), checkpoint)


@dataclass
class Replayed:
    """The tree after the journal's records, and what materializing it must write."""

    state: TreeState
    sth: SignedTreeHead | None = None  # the last record's tree head (None: no record applied)
    checkpoint: bytes | None = None
    full: dict[Tile, bytes] = field(default_factory=dict)  # tiles the records completed


def replay(
    records: Iterable[bytes],
    state: TreeState,
    reader: TileReader,
    parse: Callable[[bytes], SignedTreeHead],
) -> Replayed:
    """Apply, in order, the records that continue ``state`` (the checkpoint object's
    tree); records it already covers are skipped (a crash between writing the
    checkpoint object and emptying the journal). Each record's checkpoint must verify
    (``parse``) and sign the tree its entries make, or the log is ``LogCorrupted``."""
    out = Replayed(state)
    for raw in records:
        try:
            record = JournalRecord.decode(raw)
            leaves = [TileLeaf.decode(leaf) for leaf in record.leaves]
        except MalformedStructure as exc:
            raise LogCorrupted(f"a journal record does not parse: {exc}") from None
        if record.size_after <= out.state.size:
            continue
        if record.size_before != out.state.size:
            raise LogCorrupted(
                f"the journal's record for {record.size_before}..{record.size_after} does not "
                f"continue the tree of size {out.state.size}"
            )
        hashes = [leaf.leaf_hash() for leaf in leaves]
        out.state, changed = out.state.extend(hashes, list(record.leaves))
        out.full.update({t: d for t, d in changed.items() if not t.is_partial})
        node = functools.partial(
            reader.node, out.state, pending={t: d for t, d in out.full.items() if t.level >= 0}
        )
        root = merkle.range_hash(node, 0, out.state.size)
        try:
            sth = parse(record.checkpoint)
        except CheckpointError as exc:
            raise LogCorrupted(f"a journaled checkpoint is not valid: {exc.message}") from None
        if sth.tree_size != out.state.size or sth.root_hash != root:
            raise LogCorrupted(
                f"the journal's checkpoint for size {sth.tree_size} does not sign the tree its "
                "entries make: restore the storage from a backup"
            )
        out.sth, out.checkpoint = sth, record.checkpoint
    return out


def write_edge(storage: TileStorage, state: TreeState, then: Mapping[str, bytes]) -> None:
    """Write the edge's partial tiles of ``state`` durably, then ``then`` (the checkpoint
    object, the commit point): the storage then holds that tree whole (its full tiles
    are written at commit)."""
    objects = {}
    for level in (DATA_LEVEL, *range(MAX_LEVEL + 1)):
        edge = state.edge_tile(level)
        if edge is not None:
            data = b"".join(state.data_edge) if level == DATA_LEVEL else state.edges[level]
            objects[edge.path] = data
    if objects:
        storage.write_many(objects)
    storage.write_many(then)
