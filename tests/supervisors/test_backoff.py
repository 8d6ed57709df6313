"""Backoff delays: exponential from min to max, jitter only ever stretches."""

from __future__ import annotations

import pytest

from trustchain.supervisors import Backoff


def test_delay_doubles_from_min_and_stops_at_max() -> None:
    backoff = Backoff(min_s=0.1, max_s=1.0, jitter=0.0)
    assert [backoff.delay(n, 0.0) for n in range(6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )


def test_jitter_stretches_by_at_most_its_fraction() -> None:
    backoff = Backoff(min_s=1.0, max_s=1.0, jitter=0.25)
    assert backoff.delay(0, 0.0) == 1.0
    assert backoff.delay(0, 0.999999) == pytest.approx(1.25)
    assert all(1.0 <= backoff.delay(0) < 1.25 for _ in range(1000))


def test_no_backoff_is_immediate_and_huge_attempts_do_not_overflow() -> None:
    assert Backoff().delay(10**9) == 0.0
    assert Backoff(0.5, 30.0).delay(10**9, 0.0) == 30.0


@pytest.mark.parametrize("args", [(-1.0, 1.0, 0.0), (2.0, 1.0, 0.0), (0.1, 1.0, 1.5)])
def test_nonsense_is_refused(args: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(*args)
