"""The benchmarks stay runnable: each parses its arguments and imports what it drives.

They print figures and assert nothing, and are not run here (``make bench``); a
module that moved under them failed only when someone next ran them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


# _*.py are the benchmarks' shared helpers, not benchmarks
@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("[!_]*.py")))
def test_benchmark_starts(script):
    run = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout
