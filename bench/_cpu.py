"""Where a benchmark's CPU went: a process tree's, and each named thread's of this process.

``tree_cpu_s(pid)`` sums utime + stime of ``pid`` and its live descendants (the
validators' and the token's processes run under the one that starts them).
``ThreadCpu()`` remembers each live thread's CPU when made; ``.since()`` gives the
CPU each thread (by its ``threading`` name, digits dropped so that an actor's
incarnations add up) used since then, read from /proc/self/task.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu_s(path: str) -> float | None:
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and every live descendant, in seconds."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def _threads() -> dict[str, float]:
    by_name: dict[str, float] = {}
    for thread in threading.enumerate():
        cpu = _stat_cpu_s(f"/proc/self/task/{thread.native_id}/stat")
        if cpu is not None:
            name = re.sub(r"-\d+$", "", thread.name)
            by_name[name] = by_name.get(name, 0.0) + cpu
    return by_name


class ThreadCpu:
    """Each named thread's CPU since this was made (threads started later count whole)."""

    def __init__(self) -> None:
        self.start = _threads()

    def since(self) -> dict[str, float]:
        return {name: cpu - self.start.get(name, 0.0) for name, cpu in _threads().items()}
