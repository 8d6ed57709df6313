"""/metrics shows ACME's records when ACME runs (from get_acme_status), and nothing of
it when it does not; `trustchain status` sums them up in one line."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from trustchain.protocols.cli import acme_line
from trustchain.protocols.http_metrics import HealthSnapshot

ACME = {
    "accounts": 3,
    "orders": {"valid": 7, "pending": 1},
    "authorizations": {"valid": 8},
    "challenges": {"validated": 8, "failed": 2, "processing": 0, "pending": 4},
    "certificates": 7,
    "store_fault": None,
}


def scrape(acme: dict | None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthSnapshot([], None, None, None, acme))
    return generate_latest(registry).decode()


def test_acmes_records_are_exported() -> None:
    text = scrape(ACME)
    assert 'trustchain_acme_orders{status="valid"} 7.0' in text
    assert 'trustchain_acme_authorizations{status="valid"} 8.0' in text
    assert 'trustchain_acme_challenges{result="failed"} 2.0' in text
    assert "trustchain_acme_accounts 3.0" in text
    assert "trustchain_acme_certificates 7.0" in text


def test_without_acme_there_are_no_acme_metrics() -> None:
    assert "trustchain_acme" not in scrape(None)


def test_status_shows_acme_in_one_line() -> None:
    assert acme_line(ACME) == (
        "acme: 3 accounts; orders: 1 pending, 7 valid; challenges: 8 validated, 2 failed; "
        "certificates: 7"
    )
    down = {**ACME, "store_fault": "acme_store: disk full"}
    assert acme_line(down).endswith("; store: acme_store: disk full")
