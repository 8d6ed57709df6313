"""The CT monitor's vocabulary: the messages it accepts.

Peers (the HTTP edge, the CLI, tests) import these, never the actor
(``actors/monitor/actor.py``); only the composition root starts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.supervisors import Message


@dataclass(frozen=True)
class GetMonitorStatus(Message):
    """The monitor's last check of the log: tree head seen, alerts raised."""
