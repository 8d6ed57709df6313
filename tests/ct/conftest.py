"""Shared fixtures: an in-memory P-256 log key and a log factory on tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import LocalDirectoryStorage, LogEntryInput, TileLog

ORIGIN = "ct.trustchain.test/log"


class LogKey:
    def __init__(self, seed: int = 1) -> None:
        self.private = ec.derive_private_key(seed + 10**6, ec.SECP256R1())
        self.public = self.private.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))


@pytest.fixture(scope="session")
def log_key() -> LogKey:
    return LogKey()


OpenLog = Callable[..., TileLog]


@pytest.fixture
def open_log(tmp_path: Path, log_key: LogKey) -> OpenLog:
    """open_log(storage=None) -> TileLog over tmp_path (reopens the same log)."""

    def _open(storage: object = None, **kwargs: object) -> TileLog:
        store = storage if storage is not None else LocalDirectoryStorage(tmp_path / "tiles")
        return TileLog.open(
            store,  # type: ignore[arg-type]
            log_key.sign,
            log_key.public,
            ORIGIN,
            tmp_path / "index.db",
            **kwargs,  # type: ignore[arg-type]
        )

    return _open


def fake_entries(start: int, count: int, tag: str = "cert") -> list[LogEntryInput]:
    """Distinct x509 entries; the log treats a certificate as opaque DER bytes."""
    return [
        LogEntryInput.x509(f"{tag}-{i}".encode() * 3, [b"issuer-der-bytes"])
        for i in range(start, start + count)
    ]
