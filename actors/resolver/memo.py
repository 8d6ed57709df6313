"""What a DNS listener may answer without asking the ResolverActor: the zone's answers.

A zone answer (AA set) is a function of the query's octets, the padding block and
the zone alone (``wire.Rendered`` rests on the same fact inside the actor). The
actor publishes its current zone (``SupervisedActor.publish``; a new ``Zone`` each
time the content changes: config, assets, challenge TXT records), so a listener
keeps the zone answers it was given, each with the zone that was published when it
asked, and answers a repeat itself while that zone is still the one published: the
way Knot DNS's query threads read a zone that its updates replace whole (RCU), with
no lock and no message. Anything else (another zone, a name forwarded upstream, a
resolver that is down and so publishes nothing) goes to the actor as before. Every
DoQ query has ID 0, so a question asked again is the same octets again.

The answers given from memory are counted here, by rcode, and handed to the actor
in batches (``take_counts`` -> ``ZoneAnswersServed``), so that ``resolver_status``
counts every answer. Bounded like ``Rendered``: at most ``capacity`` answers, to
queries of at most ``MAX_KEY`` octets; forgotten when the zone changes. One per
listener, used from its one thread.
"""

from __future__ import annotations

from collections import Counter

import dns.flags
import dns.message
import dns.rcode


class ZoneMemo:
    MAX_KEY = 512

    def __init__(self, capacity: int = 4_096) -> None:
        self.capacity = capacity
        self._zone: object = None
        self._answers: dict[bytes, tuple[bytes, str]] = {}  # query -> (response, rcode)
        self._counts: Counter[str] = Counter()

    def get(self, zone: object, wire: bytes) -> bytes | None:
        """The response to ``wire`` if it was given under ``zone`` (the zone published
        now; None when nothing is), counted as answered."""
        if zone is None or zone is not self._zone:
            return None
        found = self._answers.get(wire)
        if found is None:
            return None
        self._counts[found[1]] += 1
        return found[0]

    def put(self, zone: object, wire: bytes, response: bytes) -> None:
        """Keep ``response`` to ``wire``, asked while ``zone`` was published, if it is a
        zone answer (AA set); a new zone forgets the answers of the old."""
        if zone is None or len(wire) > self.MAX_KEY or self.capacity <= 0:
            return
        try:
            message = dns.message.from_wire(response, keyring=False)
        except Exception:
            return
        if not message.flags & dns.flags.AA:
            return
        if zone is not self._zone:
            self._answers.clear()
            self._zone = zone
        if wire not in self._answers and len(self._answers) >= self.capacity:
            del self._answers[next(iter(self._answers))]  # the oldest
        self._answers[wire] = (response, dns.rcode.to_text(message.rcode()))

    def take_counts(self) -> Counter[str]:
        """The answers given from memory since the last call, by rcode."""
        counts, self._counts = self._counts, Counter()
        return counts

    def give_back(self, counts: Counter[str]) -> None:
        """Counts taken and not delivered: counted again with the next ones."""
        self._counts.update(counts)

    def __len__(self) -> int:
        return len(self._answers)
