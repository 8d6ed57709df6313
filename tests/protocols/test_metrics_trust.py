"""/metrics shows the Byzantine detector's alerts, decisions and quarantines when the
consensus runs (from get_trust_status), and nothing of it when it does not."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from trustchain.protocols.http_metrics import HealthSnapshot

TRUST = {
    "alerts": {"equivocation": 2, "proof_replayed": 1},
    "decisions": {"approve": 40, "reject": 3},
    "quarantined": ["validator-3"],
}


def scrape(trust: dict | None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthSnapshot([], None, None, trust))
    return generate_latest(registry).decode()


def test_the_detectors_counters_are_exported() -> None:
    text = scrape(TRUST)
    assert 'trustchain_trust_alerts_total{kind="equivocation"} 2.0' in text
    assert 'trustchain_trust_alerts_total{kind="proof_replayed"} 1.0' in text
    assert 'trustchain_trust_decisions_total{outcome="approve"} 40.0' in text
    assert "trustchain_trust_quarantined_validators 1.0" in text


def test_without_the_consensus_there_are_no_trust_metrics() -> None:
    assert "trustchain_trust" not in scrape(None)


def test_status_shows_the_consensus_in_one_line() -> None:
    from trustchain.protocols.cli import trust_line

    line = trust_line({**TRUST, "validators": 4, "f": 1})
    assert line == (
        "trust: N=4 f=1; decisions: 40 approve, 3 reject; alerts: 2 equivocation, "
        "1 proof_replayed; quarantined: validator-3"
    )
    quiet = {"alerts": {"equivocation": 0}, "decisions": {}, "quarantined": []}
    assert trust_line({**quiet, "validators": 4, "f": 1}).endswith("decisions: none; alerts: none")
