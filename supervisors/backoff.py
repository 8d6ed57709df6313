"""Exponential backoff with jitter, as Akka's BackoffSupervisor and systemd's ``RestartSec``.

Used twice: a supervisor waits before restarting a crashed child, and an actor
whose resource failed (a full disk, a missing HSM token) waits before trying
it again. ``attempt`` counts the failures so far in a row, from 0; the delay
doubles with each, from ``min_s`` up to ``max_s``, and is stretched by up to
``jitter`` (a fraction) at random so that many retries do not fall in step.
Pure: the caller passes the random draw, so tests pick it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    min_s: float = 0.0
    max_s: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_s <= self.max_s or not 0 <= self.jitter <= 1:
            raise ValueError(f"need 0 <= min_s <= max_s and 0 <= jitter <= 1, got {self}")

    def delay(self, attempt: int, draw: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``draw`` in [0, 1))."""
        if self.max_s == 0:
            return 0.0
        base = min(self.max_s, self.min_s * 2.0 ** min(max(attempt, 0), 64))
        draw = random.random() if draw is None else draw
        return base * (1.0 + self.jitter * draw)


NO_BACKOFF = Backoff()
