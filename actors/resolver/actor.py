"""ResolverActor: TrustChain's zone with authority, everything else through a quorum of
upstream resolvers, with a cache; the DNS-over-QUIC server sends it every query but
the zone answers it remembers.

Theory of operation. The logic is sans-IO (``core.Resolver`` over ``zone.Zone``,
``upstream.Ballot`` and ``cache.Cache``); this actor adds a mailbox, the clock, the
upstream I/O and the detector:

* ``Query`` (the DoQ server's) and ``Resolve`` (the control socket's) both go through
  ``Resolver.query``. What it answers at once (the zone, the cache, a bad query) is
  answered in the handler; a question for the upstreams is answered later
  (``defer()``): each upstream request runs on the ``UpstreamWorker``'s asyncio
  thread and its outcome comes back to this thread as a ``_UpstreamAnswer`` message
  (the worker tells this actor; this thread never waits on the network). The round's
  deadline is an ``_Expire`` timer on the actor's clock, a backstop behind the
  worker's own timeout. A query never gets an error reply: every outcome, bad input
  included, is a DNS response (FORMERR, REFUSED, SERVFAIL with an EDE...).
* The zone is published (``publish``) whenever it changes, after the swap: a listener
  keeps the zone answers (AA) it was given with the zone published when it asked, and
  answers a repeated query itself while that zone is still the published one
  (``memo.ZoneMemo``), reporting how many it did by rcode (``ZoneAnswersServed``,
  counted in ``resolver_status`` under the source ``zone_memo``). Going down
  unpublishes it: a listener then asks, and gets the resolver's unavailability as a
  SERVFAIL, as before.
* Disagreeing upstreams are counted (``resolver_status``) and logged as WARNING lines
  whose ``event`` is ``resolver.upstream_disagreed`` (an upstream's answer differs from
  the one the quorum accepted) or ``resolver.no_quorum`` (the answers split). A
  disagreeing upstream is reported to the detector (``UpstreamDisagreed``), which keeps
  it as a fault of that upstream and raises an alert.
* When every upstream fails a question, the fault ``upstreams`` shows in status and
  ``/ready`` until an answer is accepted again; the zone is served throughout.
* Assets: when the tree has a detector, the actor asks it for ``AssetRecords`` (what
  assets published with ``publish_asset_record``, with their trust) every
  ``ASSET_REFRESH_S`` (a ``request``; the answer rebuilds the zone, its SOA serial
  moving on when the content changed). No detector means no asset records; a detector
  that fails to answer (restarting) leaves the last records in place.

* ACME dns-01 TXT records (``AddChallengeTxt``, ``RemoveChallengeTxt``,
  ``ListChallengeTxt``): ``dns01.Dns01Records``, durable in ``resolver.challenge_db``,
  each in the zone for an hour at most.

Not durable: the cache and the counters start empty after a restart (the challenge
records are reloaded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import outcome
import pykka
from loguru import logger

from trustchain.actors.detector.messages import AssetRecords, UpstreamDisagreed
from trustchain.actors.resolver.core import Disagreement, NoQuorum, Resolver, Step
from trustchain.actors.resolver.dns01 import Dns01Records
from trustchain.actors.resolver.messages import (
    Query,
    Resolve,
    ResolverStatus,
    Zone,
    ZoneAnswersServed,
)
from trustchain.actors.resolver.upstream import Upstream
from trustchain.actors.resolver.wire import OUR_PAYLOAD, Rendered, describe, render
from trustchain.actors.resolver.worker import GRACE_S, UpstreamWorker
from trustchain.actors.resolver.zone import AssetRecord, ipv6_address, parse_asset_records
from trustchain.actors.resolver.zone import Zone as ZoneData
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import (
    ActorContext,
    InvalidRequest,
    Message,
    TrustChainError,
    UnknownActor,
    UnknownMessage,
    handles,
    to_jsonable,
)
from trustchain.supervisors.registry import Envelope, Reply

ASSET_REFRESH_S = 10.0


@dataclass(frozen=True)
class _UpstreamAnswer(Message):
    """From the worker: one upstream's response (a ``dns.message.Message``) or why not."""

    round: int
    upstream: str
    result: object


@dataclass(frozen=True)
class _Expire(Message):
    round: int


@dataclass(frozen=True)
class _RefreshAssets(Message):
    """Time to ask the detector for its assets' records (the actor's own timer)."""


@dataclass(frozen=True)
class _Waiter:
    """Who waits for a response, and in which form: wire (``Query``) or JSON (``Resolve``)."""

    reply: Reply
    padding_block: int = 0
    as_json: bool = False
    rendered: Callable[[dns.message.Message, bytes], None] | None = None  # keeps zone answers

    def answer(self, response: dns.message.Message) -> None:
        if self.as_json:
            self.reply(outcome.Value(describe(response)))
            return
        wire = render(response, self.padding_block)
        if self.rendered is not None:
            self.rendered(response, wire)
        self.reply(outcome.Value(wire))


def nameserver_of(config: ResolverConfig) -> str | None:
    """The zone's NS: the first name (not an address) the DoQ certificate covers."""
    for name in config.names:
        try:
            ipv6_address(name)
        except ValueError:
            return name if name.endswith(".") else name + "."
    return None


class ResolverActor(Dns01Records):
    def __init__(
        self,
        context: ActorContext,
        config: ResolverConfig,
        detector: str | None = None,
        *,
        doq_verify: bool | str = True,
    ) -> None:
        super().__init__(context)
        self.config = config
        self.detector = detector
        self.doq_verify = doq_verify
        self.worker: UpstreamWorker | None = None
        self.rendered = Rendered()
        self.assets: list[AssetRecord] = []
        self.asset_problems: list[str] = []
        self.asset_source = "none"
        self.assets_refreshed_at: float | None = None
        self.asset_refresh_failures = 0
        self._refreshing = False
        self.upstream_reports_failed = 0
        self.challenges = {}  # loaded in setup (dns01)

    # Start and stop -----------------------------------------------------------------------

    def setup(self) -> None:
        c = self.config
        try:
            upstreams = [Upstream.parse(u) for u in c.upstreams]
            zone = self._zone([], serial=int(self.clock.time()))
            self.core: Resolver[_Waiter] = Resolver(
                zone, upstreams, c.upstream_quorum, c.cache_entries
            )
        except ValueError as exc:  # ZoneError too: the config cannot be served
            raise TrustChainError(f"[resolver] cannot be served: {exc}") from None
        self.publish(zone)  # the listeners answer repeated zone queries under it (memo)
        self._start_challenges()
        if upstreams:
            self.worker = UpstreamWorker(
                c.upstream_timeout_s, self._from_worker(), doq_verify=self.doq_verify
            )
            self.worker.start()
        if self.detector is not None:
            self.asset_source = "detector"
            self.actor_ref.tell(Envelope(_RefreshAssets(), None))
            self.every(ASSET_REFRESH_S, _RefreshAssets())

    def cleanup(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if hasattr(self, "challenge_store"):
            self.challenge_store.close()

    def _zone(self, assets: list[AssetRecord], serial: int) -> ZoneData:
        return zone_of(self.config, assets, self.challenges_by_name(), serial)

    def _rebuild_zone(self) -> None:
        """The zone again from config, assets and challenges; its serial moves on when
        its content changed."""
        old = self.core.zone
        zone = self._zone(self.assets, serial=old.serial)
        if zone.content() != old.content():
            zone = self._zone(self.assets, serial=max(old.serial + 1, int(self.clock.time())))
        self.core.zone = zone
        self.publish(zone)  # after the swap: what a listener keeps under it is this zone's

    def _from_worker(self) -> Any:
        ref = self.actor_ref

        def deliver(round_id: int, upstream: str, result: dns.message.Message | str) -> None:
            if isinstance(result, str):
                result = result[:1_000]
            try:
                ref.tell(Envelope(_UpstreamAnswer(round_id, upstream, result), None))
            except pykka.ActorDeadError:
                pass  # stopping: our waiters were answered then

        return deliver

    # Queries -------------------------------------------------------------------------------

    @handles(Query)
    def query(self, msg: Query) -> bytes | None:
        zone = self.core.zone
        known = self.rendered.get(zone, msg.wire, msg.padding_block)
        if known is not None:  # the same query of the same zone: the same answer
            wire, rcode = known
            self.core.count(rcode, "zone")
            return wire

        def keep(response: dns.message.Message, wire: bytes) -> None:
            self.rendered.put(zone, msg.wire, msg.padding_block, response, wire)

        waiter = _Waiter(self.defer(), msg.padding_block, rendered=keep)
        self._run(self.core.query(msg.wire, waiter, self.clock.monotonic()))
        return None

    @handles(ZoneAnswersServed)
    def zone_answers_served(self, msg: ZoneAnswersServed) -> None:
        for rcode, n in msg.counts.items():
            self.core.count(rcode, "zone_memo", n)

    @handles(Resolve)
    def resolve(self, msg: Resolve) -> None:
        try:
            qname = dns.name.from_text(msg.name)
            rdtype = dns.rdatatype.from_text(msg.rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            raise InvalidRequest(f"resolve: {exc}") from None
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=OUR_PAYLOAD)
        waiter = _Waiter(self.defer(), as_json=True)
        self._run(self.core.query(query.to_wire(), waiter, self.clock.monotonic()))

    @handles(_UpstreamAnswer)
    def upstream_answer(self, msg: _UpstreamAnswer) -> None:
        result = msg.result
        if not isinstance(result, dns.message.Message | str):
            result = f"not a DNS message: {type(result).__name__}"
        self._run(self.core.answered(msg.round, msg.upstream, result, self.clock.monotonic()))

    @handles(_Expire)
    def expire(self, msg: _Expire) -> None:
        self._run(self.core.expire(msg.round, self.clock.monotonic()))

    def _run(self, step: Step[_Waiter]) -> None:
        for waiter, response in step.replies:
            waiter.answer(response)
        rounds = {send.round for send in step.sends}
        for send in step.sends:
            assert self.worker is not None  # sends only come with upstreams
            self.worker.submit(send)
        for round_id in rounds:
            self.after(self.config.upstream_timeout_s + 2 * GRACE_S, _Expire(round_id))
        for event in step.events:
            self._log(event)
        self._upstream_health()

    def _log(self, event: Disagreement | NoQuorum) -> None:
        if isinstance(event, Disagreement):
            logger.bind(event="resolver.upstream_disagreed", upstream=event.upstream,
                        question=event.question).warning(
                "resolver: upstream {} disagrees on {}: it said {}, the quorum {}",
                event.upstream, event.question, event.theirs, event.accepted,
            )  # fmt: skip
            self._report(event)
        else:
            logger.bind(event="resolver.no_quorum", question=event.question).warning(
                "resolver: no quorum on {}: {}", event.question, event.text
            )

    def _report(self, event: Disagreement) -> None:
        """Tell the detector (when the tree has one): a fault of that upstream."""
        if self.detector is None:
            return
        report = UpstreamDisagreed(event.upstream[:4096], event.question[:4096],
                                   event.theirs[:4096], event.accepted[:4096])  # fmt: skip
        self.request(self.detector, report, self._reported)

    def _reported(self, result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):  # no detector (trust off), or its disk: logged
            self.upstream_reports_failed += 1
            logger.debug("resolver: the detector did not take an upstream's fault: {}",
                         result.error)  # fmt: skip

    def _upstream_health(self) -> None:
        down = self.core.upstreams_down
        if down is not None and self.fault("upstreams") is None:
            self.report_fault("upstreams", down)
        elif down is None and self.fault("upstreams") is not None:
            self.clear_fault("upstreams")

    # Assets --------------------------------------------------------------------------------

    @handles(_RefreshAssets)
    def refresh_assets(self, msg: _RefreshAssets) -> None:
        if self._refreshing or self.detector is None:
            return
        self._refreshing = True
        self.request(self.detector, AssetRecords(), self._assets_answered)

    def _assets_answered(self, result: outcome.Outcome) -> None:
        self._refreshing = False
        try:
            value = result.unwrap()
        except (UnknownActor, UnknownMessage):
            value = []  # no detector here (trust.enabled = false)
        except TrustChainError as exc:  # restarting, say: keep what we had
            self.asset_refresh_failures += 1
            logger.debug("resolver: asset records not refreshed: {}", exc)
            return
        records, problems = parse_asset_records(to_jsonable(value))  # dataclasses -> dicts
        self._set_assets(records, problems)

    def _set_assets(self, records: list[AssetRecord], problems: list[str]) -> None:
        self.assets = records
        self._rebuild_zone()
        self.asset_problems = problems + self.core.zone.skipped
        self.assets_refreshed_at = self.clock.time()

    # Reading -------------------------------------------------------------------------------

    @handles(Zone)
    def zone(self, msg: Zone) -> list[str]:
        return self.core.zone.to_text()

    @handles(ResolverStatus)
    def resolver_status(self, msg: ResolverStatus) -> dict[str, Any]:
        zone = self.core.zone
        return {
            **self.core.status(),
            "zone": {"origin": zone.origin.to_text(), "serial": zone.serial,
                     "names": zone.names()},
            "assets": {
                "source": self.asset_source,
                "records": len(self.assets),
                "left_out": dict(zone.left_out),
                "problems": self.asset_problems[:20],
                "refreshed_at": self.assets_refreshed_at,
                "refresh_failures": self.asset_refresh_failures,
            },
            "challenges": self._challenge_status(),
        }  # fmt: skip


def zone_of(
    config: ResolverConfig,
    assets: list[AssetRecord],
    challenges: dict[dns.name.Name, list[str]],
    serial: int,
) -> ZoneData:
    """The zone from config, the assets' records and the dns-01 TXT records
    (``ZoneError``, a ``ValueError``, for a config that cannot be served)."""
    c = config
    return ZoneData(
        c.origin, c.ttl_s, c.records, c.cnames,
        assets=assets, min_asset_trust=c.min_asset_trust, challenges=challenges,
        nameserver=nameserver_of(c), nameserver_address=_unicast(c.host), serial=serial,
    )  # fmt: skip


def check_config(config: ResolverConfig) -> None:
    """What ``setup`` could not serve, refused before anything starts (``ValueError``
    saying which upstream, record, CNAME or name): the upstreams' URLs and the zone the
    config gives."""
    for url in config.upstreams:
        Upstream.parse(url)
    zone_of(config, [], {}, serial=1)


def _unicast(host: str) -> str | None:
    """The listening address, when it is one a client can reach (not ``::``)."""
    try:
        address = ipv6_address(host)
    except ValueError:
        return None
    return None if address == "::" else address
