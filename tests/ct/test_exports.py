"""The package face: every advertised name is importable from trustchain.actors.ct."""

from __future__ import annotations

import trustchain.actors.ct as ct
from trustchain.supervisors.errors import TrustChainError


def test_every_exported_name_exists() -> None:
    missing = [name for name in ct.__all__ if not hasattr(ct, name)]
    assert missing == []


def test_errors_are_trustchain_errors_with_distinct_snake_case_codes() -> None:
    errors = [getattr(ct, n) for n in ct.__all__ if n.endswith(("Error", "Range", "Found"))]
    errors += [ct.LogCorrupted, ct.LogUnavailable, ct.InvalidLogEntry, ct.MalformedStructure]
    errors += [ct.LogBusy, ct.InvalidChain]
    codes = {e.code for e in errors}
    assert all(issubclass(e, TrustChainError) for e in errors)
    assert len(codes) == len(set(errors))
    assert all(c.replace("_", "").isalpha() and c.islower() for c in codes)
