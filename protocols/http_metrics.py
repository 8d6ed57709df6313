"""The HTTP edge's Prometheus metrics: request metrics and the per-scrape snapshot.

``HealthSnapshot`` is a collector over what one scrape read afresh: every
actor's restarts, handled messages, mailbox and state (from the registry's
health), the CT log's size, tree-head age and pool, and the CT monitor's
alerts and largest verified tree head, the detector's alerts and decisions, and
ACME's orders, authorizations, challenges and certificates. Nothing is cached between
scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trustchain.actors.ct.audit import AlertKind
from trustchain.supervisors import ActorState

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
"""Request-duration histogram buckets, in seconds."""


class HealthSnapshot(Collector):
    """The actors' health and the log's size, as read for this one scrape."""

    def __init__(
        self,
        health: list[dict[str, Any]],
        log_info: dict[str, Any] | None,
        monitor: dict[str, Any] | None = None,
        trust: dict[str, Any] | None = None,
        acme: dict[str, Any] | None = None,
        issuance: dict[str, Any] | None = None,
    ) -> None:
        self.health, self.log_info, self.monitor = health, log_info, monitor
        self.trust, self.acme, self.issuance = trust, acme, issuance

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily("trustchain_actor_restarts", "Restarts by the supervisor",
                                       labels=["actor"])  # fmt: skip
        handled = CounterMetricFamily("trustchain_actor_handled", "Messages handled",
                                      labels=["actor"])  # fmt: skip
        mailbox = GaugeMetricFamily("trustchain_actor_mailbox", "Messages waiting",
                                    labels=["actor"])  # fmt: skip
        state = GaugeMetricFamily("trustchain_actor_state", "1 for the state the actor is in",
                                  labels=["actor", "state"])  # fmt: skip
        for actor in self.health:
            name = actor["name"]
            restarts.add_metric([name], actor["restarts"])
            handled.add_metric([name], actor["handled"])
            mailbox.add_metric([name], actor["mailbox"])
            for s in ActorState:
                state.add_metric([name, s.value], 1.0 if actor["state"] == s.value else 0.0)
        yield from (restarts, handled, mailbox, state)
        if self.log_info is not None:
            info = self.log_info
            yield GaugeMetricFamily("trustchain_ct_tree_size", "Entries in the CT log",
                                    value=info["tree_size"])  # fmt: skip
            yield GaugeMetricFamily("trustchain_ct_sth_age_seconds", "Age of the signed tree head",
                                    value=info["sth_age_s"])  # fmt: skip
            yield GaugeMetricFamily("trustchain_ct_pool", "Submissions waiting to be sequenced",
                                    value=info["pool"])  # fmt: skip
        if self.issuance is not None:
            yield GaugeMetricFamily("trustchain_ct_finals_owed",
                                    "Final certificates issued and not yet in the CT log",
                                    value=self.issuance["finals_owed"])  # fmt: skip
        if self.monitor is not None:
            alerts = CounterMetricFamily("trustchain_ct_monitor_alerts",
                                         "Misbehaviour the CT monitor saw, by kind",
                                         labels=["kind"])  # fmt: skip
            for kind in AlertKind:
                alerts.add_metric([kind.value], self.monitor["alerts"].get(kind.value, 0))
            yield alerts
            verified = (self.monitor.get("verified") or {}).get("tree_size", 0)
            yield GaugeMetricFamily(
                "trustchain_ct_monitor_verified_tree_size",
                "Largest tree head the monitor verified",
                value=verified,
            )
        if self.trust is not None:
            alerts = CounterMetricFamily("trustchain_trust_alerts",
                                         "Misbehaviour the Byzantine detector caught, by kind",
                                         labels=["kind"])  # fmt: skip
            for kind, count in sorted(self.trust["alerts"].items()):
                alerts.add_metric([kind], count)
            yield alerts
            decisions = CounterMetricFamily("trustchain_trust_decisions",
                                            "The validators' decisions, by outcome",
                                            labels=["outcome"])  # fmt: skip
            for outcome, count in sorted(self.trust["decisions"].items()):
                decisions.add_metric([outcome], count)
            yield decisions
            yield GaugeMetricFamily("trustchain_trust_quarantined_validators",
                                    "Validators caught equivocating",
                                    value=len(self.trust["quarantined"]))  # fmt: skip
        if self.acme is not None:
            yield from _acme_metrics(self.acme)


def _acme_metrics(acme: dict[str, Any]) -> Iterator[Metric]:
    """ACME's records now (``get_acme_status``): orders and authorizations by status,
    challenges by result, accounts and certificates."""
    for what in ("orders", "authorizations"):
        family = GaugeMetricFamily(f"trustchain_acme_{what}", f"ACME {what} by status",
                                   labels=["status"])  # fmt: skip
        for status, count in sorted(acme[what].items()):
            family.add_metric([status], count)
        yield family
    challenges = GaugeMetricFamily("trustchain_acme_challenges", "ACME challenges by result",
                                   labels=["result"])  # fmt: skip
    for result, count in sorted(acme["challenges"].items()):
        challenges.add_metric([result], count)
    yield challenges
    yield GaugeMetricFamily("trustchain_acme_accounts", "ACME accounts", value=acme["accounts"])
    yield GaugeMetricFamily("trustchain_acme_certificates", "Certificates issued over ACME",
                            value=acme["certificates"])  # fmt: skip
