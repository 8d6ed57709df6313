"""ACME is in TrustChain's tree, and on the HTTPS edge, exactly when its domain control
can be corroborated (the validators' quorum) and it can be reached (the HTTP edge)."""

from __future__ import annotations

from dataclasses import replace

from trustchain.actors.composition import trustchain_children
from trustchain.actors.locks import acme_runs
from trustchain.config import Config


def test_acme_runs_by_default_last_in_the_tree() -> None:
    config = Config()
    assert acme_runs(config)
    names = [c.name for c in trustchain_children(config)]
    assert names[-1] == "acme" and names.index("issuer") < names.index("acme")


def test_acme_does_not_run_without_the_quorum_the_http_edge_or_its_own_switch() -> None:
    on = Config()
    for off in (
        replace(on, acme=replace(on.acme, enabled=False)),
        replace(on, trust=replace(on.trust, enabled=False)),  # no one to check domain control
        replace(on, http=replace(on.http, enabled=False)),  # no one could reach it
    ):
        assert not acme_runs(off)
        assert "acme" not in [c.name for c in trustchain_children(off)]
