"""Shared fixtures: one real SoftHSM token for the whole test run.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, once per process
at a time, so the suite shares one token directory (under pytest's tmp dir)
and tests use distinct key labels.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from trustchain.actors.hsm.softhsm import prepare_softhsm_token
from trustchain.config import HsmConfig


def own_token(directory: Path, label: str) -> HsmConfig:
    """A SoftHSM token of its own under ``directory`` (its token files in
    ``directory/tokens``), for a test that takes the token away."""
    conf = directory / "softhsm2.conf"
    pin_file = directory / "user.pin"
    prepare_softhsm_token(conf, label, pin_file)
    return HsmConfig(
        module="softhsm2",
        token_label=label,
        pin_file=pin_file,
        pin_env="TRUSTCHAIN_TEST_NO_SUCH_VAR",
        softhsm2_conf=str(conf),
        keys={},
    )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> HsmConfig:
    return own_token(tmp_path_factory.mktemp("softhsm"), "trustchain-test")


@pytest.fixture
def key_label() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def pin_of(config: HsmConfig) -> str:
    return Path(config.pin_file).read_text().strip()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> float:
    """Poll ``condition`` until it holds (for what another thread or process does);
    returns the seconds it took, fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)
    return time.monotonic() - start
