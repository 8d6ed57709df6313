"""ResolverActor's ACME dns-01 records (RFC 8555 §8.4): ``AddChallengeTxt``,
``RemoveChallengeTxt`` and ``ListChallengeTxt``, kept in ``resolver.challenge_db``.

Theory of operation. What may be published is ``challenges.py``'s; this mixin holds
the records the zone serves (``self.challenges``, loaded from the file at start: a
restart and a cold boot take the same path) and changes them disk first: a change
is answered only once the file has it, and the zone is rebuilt with it (its SOA
serial moving on). Each record expires ``CHALLENGE_LIFETIME_S`` after its addition:
a ``_SweepChallenges`` timer on the actor's clock, at the earliest expiry, takes the
expired ones out of the zone and (best effort) off the disk.

Faults. A file that cannot be read or written (a full disk, an I/O error) is a fault
of the environment: the change is refused at once with ``ChallengeStoreUnavailable``
(nothing changed, in the zone or on disk), the fault ``challenge_db`` shows in status
and ``/ready``, and a probe write (then a reload, if the start could not load) is
retried with backoff until it works; the zone is served throughout. Only a bug
crashes the actor (the pattern of ``actors/issuer/faults.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdatatype
from loguru import logger

from trustchain.actors.resolver.challenges import (
    CHALLENGE_LIFETIME_S,
    MAX_CHALLENGES,
    MAX_VALUES_PER_NAME,
    STORE_FAULTS,
    ChallengeStore,
    ChallengeTxt,
    challenge_name,
    challenge_value,
)
from trustchain.actors.resolver.core import Resolver
from trustchain.actors.resolver.messages import (
    AddChallengeTxt,
    ChallengeStoreUnavailable,
    ChallengeTxtInvalid,
    ChallengeTxtLimit,
    ListChallengeTxt,
    RemoveChallengeTxt,
)
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import Message, SupervisedActor, handles

STORE = "challenge_db"  # the resource name shown in status and /ready


@dataclass(frozen=True)
class _SweepChallenges(Message):
    """Time to take expired challenge records out (the actor's own timer)."""


@dataclass(frozen=True)
class _RetryChallengeStore(Message):
    """Time to try the challenge database again after a failure."""


class Dns01Records(SupervisedActor):
    config: ResolverConfig
    core: Resolver[Any]
    challenges: dict[tuple[dns.name.Name, str], float]  # (name, value) -> expires_at

    def _start_challenges(self) -> None:
        """In ``setup``: load what the file holds (a fault, not a crash, if it cannot)."""
        self.challenges = {}
        self.challenge_store = ChallengeStore(self.config.challenge_db)
        self._challenges_loaded = False
        self._sweep_at: float | None = None
        try:
            self._load_challenges()
        except STORE_FAULTS as exc:
            self._challenge_store_failed(exc, "the challenges on disk are not served yet")

    def _rebuild_zone(self) -> None:
        raise NotImplementedError  # the actor's: the zone again, with self.challenges

    def challenges_by_name(self) -> dict[dns.name.Name, list[str]]:
        by_name: dict[dns.name.Name, list[str]] = {}
        for name, value in self.challenges:
            by_name.setdefault(name, []).append(value)
        return by_name

    def _load_challenges(self) -> None:
        loaded = self.challenge_store.load(self.clock.time())
        self.challenges = {(c.name, c.value): c.expires_at for c in loaded} | self.challenges
        self._challenges_loaded = True
        if loaded:
            self._rebuild_zone()
            self._schedule_sweep()

    # Requests --------------------------------------------------------------------------

    @handles(AddChallengeTxt)
    def add_challenge_txt(self, msg: AddChallengeTxt) -> dict[str, object]:
        name, value = self._challenge(msg.name, msg.value)
        self._sweep(self.clock.time())
        key = (name, value)
        if key not in self.challenges:
            at_name = sum(1 for n, _ in self.challenges if n == name)
            if at_name >= MAX_VALUES_PER_NAME:
                raise ChallengeTxtLimit(
                    f"{name} has {at_name} TXT values already (at most {MAX_VALUES_PER_NAME}); "
                    "remove one with `trustchain dns txt del`"
                )
            if len(self.challenges) >= MAX_CHALLENGES:
                raise ChallengeTxtLimit(
                    f"the zone holds {MAX_CHALLENGES} challenge TXT values already; remove "
                    f"some, or wait for them to expire ({CHALLENGE_LIFETIME_S} s after each "
                    "was added)"
                )
        challenge = ChallengeTxt(name, value, self.clock.time() + CHALLENGE_LIFETIME_S)
        try:
            if not self._challenges_loaded:
                self._load_challenges()
            self.challenge_store.add(challenge)
        except STORE_FAULTS as exc:
            raise self._challenge_store_failed(exc, "the TXT record was not published") from None
        self._challenge_store_works()
        self.challenges.pop(key, None)  # renewed: last in the order of additions
        self.challenges[key] = challenge.expires_at
        self._rebuild_zone()
        self._schedule_sweep()
        logger.bind(event="resolver.challenge_added", name=name.to_text()).info(
            "resolver: TXT {} published until {:.0f}", name, challenge.expires_at
        )
        return challenge.to_json()

    @handles(RemoveChallengeTxt)
    def remove_challenge_txt(self, msg: RemoveChallengeTxt) -> dict[str, object]:
        name, value = self._challenge(msg.name, msg.value)
        self._sweep(self.clock.time())
        try:
            if not self._challenges_loaded:
                self._load_challenges()
            present = (name, value) in self.challenges
            if present:
                self.challenge_store.remove(name, value)
        except STORE_FAULTS as exc:
            raise self._challenge_store_failed(exc, "the TXT record was not removed") from None
        self._challenge_store_works()
        if present:
            del self.challenges[(name, value)]
            self._rebuild_zone()
        return {"name": name.to_text(), "value": value, "removed": present}

    @handles(ListChallengeTxt)
    def list_challenge_txt(self, msg: ListChallengeTxt) -> list[dict[str, object]]:
        now = self.clock.time()
        return [
            ChallengeTxt(name, value, expires).to_json()
            for (name, value), expires in self.challenges.items()
            if expires > now
        ]

    def _challenge(self, name_text: str, value_text: str) -> tuple[dns.name.Name, str]:
        zone = self.core.zone
        name = challenge_name(name_text, zone.origin)
        value = challenge_value(value_text)
        found = zone.lookup(name, dns.rdatatype.CNAME)
        if found is not None and found.answer:
            target = next(iter(found.answer[0])).target
            raise ChallengeTxtInvalid(
                f"{name} is a CNAME in the zone (to {target}): a CNAME stands alone, so "
                f"the TXT record belongs at {target}"
            )
        return name, value

    # Expiry ------------------------------------------------------------------------------

    def _sweep(self, now: float) -> bool:
        """Forget the expired; ``True`` when some were (the zone is rebuilt then)."""
        expired = [key for key, expires in self.challenges.items() if expires <= now]
        for key in expired:
            del self.challenges[key]
        if expired:
            self._rebuild_zone()
        return bool(expired)

    def _schedule_sweep(self) -> None:
        if not self.challenges:
            return
        earliest = min(self.challenges.values())
        if self._sweep_at is not None and self._sweep_at <= earliest:
            return  # one is on its way, soon enough
        self._sweep_at = earliest
        self.after(max(0.0, earliest - self.clock.time()), _SweepChallenges())

    @handles(_SweepChallenges)
    def sweep_challenges(self, msg: _SweepChallenges) -> None:
        now = self.clock.time()
        self._sweep_at = None
        if self._sweep(now):
            try:
                self.challenge_store.purge(now)
            except STORE_FAULTS as exc:  # they stay on disk, expired: never loaded again
                logger.debug("resolver: expired challenges not purged from disk: {}", exc)
        self._schedule_sweep()

    # Faults ------------------------------------------------------------------------------

    def _challenge_store_failed(self, exc: BaseException, what: str) -> ChallengeStoreUnavailable:
        """Show the fault, schedule a probe (once), and say what happened."""
        self.report_fault_and_probe(STORE, exc, _RetryChallengeStore())
        return ChallengeStoreUnavailable(
            f"the challenge database {self.config.challenge_db} cannot be written "
            f"({type(exc).__name__}: {exc}); {what}; try again shortly",
            retry_after_s=1,
        )

    def _challenge_store_works(self) -> None:
        if self.fault(STORE) is not None:
            self.clear_fault(STORE)

    @handles(_RetryChallengeStore)
    def retry_challenge_store(self, msg: _RetryChallengeStore) -> None:
        self.probe_due(STORE)
        if self.fault(STORE) is None:
            return
        try:
            self.challenge_store.probe()  # a durable write ...
            if not self._challenges_loaded:
                self._load_challenges()  # ... and what a failed start could not read
        except STORE_FAULTS as exc:
            self._challenge_store_failed(exc, "probe")
            return
        self._challenge_store_works()

    def _challenge_status(self) -> dict[str, Any]:
        return {
            "records": len(self.challenges),
            "database": str(self.config.challenge_db),
            "loaded": self._challenges_loaded,
        }
