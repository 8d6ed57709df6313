"""The forwarder's cache (sans-IO): accepted answers and failures, with their TTLs.

Theory (RFC 1035 §7.4, RFC 2308, RFC 9520). An accepted answer is kept for its
``Answer.ttl()``: the least TTL of its RRsets for a positive answer, and for NXDOMAIN
and NODATA the SOA's TTL or MINIMUM, whichever is less (RFC 2308 §5); a negative
answer without SOA is not cached, nor is a TTL of 0. Served from the cache, every
TTL is what is left of it, so no client keeps a record longer than its upstreams
allowed. A failure (no quorum) is kept ``FAILURE_TTL_S`` (RFC 9520 §3.2: at least
1 s, at most 5 min), so a name whose upstreams fail is not asked again for every
query in a flood of them.

At most ``capacity`` entries; the least recently used goes first (0: no cache).
Time is the caller's ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import dns.name

from trustchain.actors.resolver.upstream import Answer, Failed

FAILURE_TTL_S = 5.0

Key = tuple[dns.name.Name, int]  # (question name, type); class is always IN


def key_of(qname: dns.name.Name, rdtype: int) -> Key:
    return qname.canonicalize(), rdtype


@dataclass(frozen=True)
class Entry:
    value: Answer | Failed
    expires: float


class Cache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, now: float) -> Answer | Failed | None:
        """The live entry for ``key`` (an answer with its TTLs aged), or ``None``."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        if isinstance(entry.value, Answer):
            return entry.value.aged(int(entry.expires - now))
        return entry.value

    def put(self, key: Key, value: Answer | Failed, now: float) -> bool:
        """Keep ``value`` for its TTL; ``False`` when it is not to be cached."""
        ttl = value.ttl() if isinstance(value, Answer) else FAILURE_TTL_S
        if not ttl or self.capacity <= 0:
            return False
        self._entries[key] = Entry(value, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evicted += 1
        return True
