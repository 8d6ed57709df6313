"""Superseded partial tiles, deleted after a grace period (``TileLog``'s janitor).

Every time the storage's tree grows below a tile boundary, a new ``.p/<W>`` version
of the edge tile of each level it changed is written, each holding all entries (or
hashes) so far: by every batch without a journal, by every catch-up with one. A
version that a newer checkpoint has grown past is deleted ``grace_ms`` after that
checkpoint (default 5 s): a tlog-tiles client fetches the checkpoint, then its tiles,
and a checkpoint may be cached for "a few seconds", so a reader of the previous
checkpoint can still read its partial tiles from a static copy of this storage (the
log's own ``tile()`` slices them from memory or the full tile, and needs no copy).
Partial versions of a tile that has become full are deleted as soon as the full tile
is committed, as tlog-tiles allows (a client that misses one reads the full tile), a
few per cleanup, so what waits is at most one edge tile's versions per level.
Cleanups run inside the log's commits and refreshes with the ``now_ms`` they are
given, never touch a tile the current checkpoint needs, and need no fsync: a delete
that a crash undoes, or never ran, is found again after the next open
(``recovery.stale_partials``, ``recovery.swept_tiles``).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator

from ._tree import TreeState
from .recovery import stale_partials
from .storage import TileStorage
from .tiles import Tile, partial_tiles

SWEEP_PER_CLEANUP = 64  # tiles whose leftover partial versions one cleanup deletes
# Versions of full tiles one cleanup deletes. A tile fills after up to 256 batches, each
# of which wrote a version of it: deleting them all in the commit that completed it
# stalled appends for 50-80 ms every 256 entries (the p99 of issuance at low rates).
DELETES_PER_CLEANUP = 32


class PartialTileCleanup:
    def __init__(self, storage: TileStorage, grace_ms: int, now_ms: int) -> None:
        self._storage, self._grace = storage, grace_ms
        self._wall = self._clock = now_ms  # _clock: wall time's forward steps only
        self._retiring: dict[Tile, int] = {}  # superseded partial tile -> when to delete it
        self._due: list[tuple[int, Tile]] = []  # heap over _retiring (stale rows skipped)
        self.sweep: Iterator[Tile] = iter(())  # tiles a crash may have left versions of
        self._emptying: deque[str] = deque()  # ".p" prefixes of full tiles, emptied gradually

    @property
    def retiring(self) -> int:
        """Superseded partial tiles waiting out their grace period."""
        return len(self._retiring)

    def tick(self, now_ms: int) -> None:
        """Advance the deletion clock; a wall clock stepped back stalls nothing."""
        self._clock += max(0, now_ms - self._wall)
        self._wall = now_ms

    def retire(self, old_size: int, new_size: int, full: Iterable[Tile]) -> None:
        """``new_size`` is now stored: schedule the partial tiles of ``old_size`` it grew
        past, and the partial versions of the tiles it completed for deletion (a few
        per cleanup, ``DELETES_PER_CLEANUP``)."""
        current = partial_tiles(new_size)
        for tile in current:  # needed again (a width rewritten after a crash)
            self._retiring.pop(tile, None)
        completed = {(t.level, t.index) for t in full}
        for level, index in completed:  # a full tile never gets versions again
            self._emptying.append(Tile(level, index).path + ".p")
        if completed:
            for tile in [t for t in self._retiring if (t.level, t.index) in completed]:
                del self._retiring[tile]
        grown = [t for t in partial_tiles(old_size) if t not in current]
        self.retire_later(t for t in grown if (t.level, t.index) not in completed)

    def retire_later(self, tiles: Iterable[Tile]) -> None:
        due = self._clock + self._grace
        for tile in tiles:
            self._retiring[tile] = due
            heapq.heappush(self._due, (due, tile))

    def run(self, state: TreeState) -> None:
        """One cleanup, the log's tree being ``state``."""
        for tile in itertools.islice(self.sweep, SWEEP_PER_CLEANUP):
            edge = state.edge_tile(tile.level)
            if edge is not None and edge.index == tile.index:  # the log has grown into it
                self.retire_later(stale_partials(self._storage, state.size, [edge]))
            else:  # full by now, or still past the edge: no checkpoint needs its versions
                self._storage.delete_prefix(tile.path + ".p")
        doomed = []
        while self._due and self._due[0][0] <= self._clock:
            due, tile = heapq.heappop(self._due)
            if self._retiring.get(tile) == due:
                del self._retiring[tile]
                doomed.append(tile.path)
        if doomed:
            self._storage.delete_many(doomed)
        budget = DELETES_PER_CLEANUP
        while budget and self._emptying:
            prefix = self._emptying[0]
            versions = self._storage.list_prefix(prefix)[:budget]
            self._storage.delete_many(versions)
            budget -= len(versions)
            if budget:  # that was the last of them
                self._storage.delete_prefix(prefix)
                self._emptying.popleft()
