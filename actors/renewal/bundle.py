"""TrustChain's own certificate bundles: what one is, when it is due, how it is kept.

Pure decisions take ``now`` as an argument; the disk functions implement the
layout that ``actors/renewal/actor.py`` describes (immutable versions, an atomically
switched ``current`` link). Nothing here knows of actors.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import SubscriberKey, key_type_of, new_csr
from trustchain.actors.durable import fsync_dir, write_new

BUNDLE_FILES = ("key.pem", "cert.pem", "chain.pem", "fullchain.pem", "meta.json")


@dataclass(frozen=True)
class Bundle:
    """One issued certificate and its key; the files at these paths never change."""

    name: str
    names: tuple[str, ...]
    serial: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime  # when the CSR went out: the lifetime counts from here
    cert_pem: str
    chain_pem: str
    key_pem: str = field(repr=False)
    cert_path: Path
    chain_path: Path
    fullchain_path: Path  # leaf + chain: what ssl's load_cert_chain and aioquic read
    key_path: Path

    def to_json(self) -> dict[str, Any]:
        """Never the private key, whatever edge this reaches."""
        return {k: v for k, v in vars(self).items() if k != "key_pem"}


# Decisions: pure, ``now`` comes in ------------------------------------------------------


def renew_at(not_before: datetime, not_after: datetime, fraction: float) -> datetime:
    return not_before + (not_after - not_before) * fraction


def renewal_due(not_before: datetime, not_after: datetime, now: datetime, fraction: float) -> bool:
    """Whether ``fraction`` of the lifetime from ``not_before`` to ``not_after`` has passed."""
    return now >= renew_at(not_before, not_after, fraction)


def bundle_renew_at(bundle: Bundle, fraction: float) -> datetime:
    start = min(max(bundle.issued_at, bundle.not_before), bundle.not_after)
    return renew_at(start, bundle.not_after, fraction)


def check_period(validity_s: float, fraction: float, interval_s: float) -> float:
    """Seconds between checks: the configured interval, cut to fit 4 inside the renewal window."""
    return max(0.05, min(interval_s, validity_s * (1 - fraction) / 4))


def renewal_reason(
    bundle: Bundle | None, names: Sequence[str], key_type: str, now: datetime, fraction: float
) -> str | None:
    """Why ``bundle`` must be replaced now, or None while it may stay."""
    if bundle is None:
        return "no usable certificate"
    if set(bundle.names) != {normalize_name(n) for n in names}:
        return "names changed"
    cert = x509.load_pem_x509_certificate(bundle.cert_pem.encode())
    if key_type_of(cert.public_key()) != key_type:
        return "key type changed"
    return "due" if now >= bundle_renew_at(bundle, fraction) else None


def normalize_name(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")


def csr_for(key: SubscriberKey, names: Sequence[str]) -> str:
    """The bundle's CSR (``new_csr``), its names normalized as ``renewal_reason`` compares them."""
    return new_csr(key, [normalize_name(n) for n in names]).decode("ascii")


# Disk -----------------------------------------------------------------------------------


def spki_of(public_key: Any) -> bytes:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bytes(public_key.public_bytes(der, spki))


def write_version(home: Path, serial: str, files: dict[str, tuple[bytes, int]]) -> None:
    """Write one version under ``home`` and make it ``current``; keep only the previous one."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = home / f".tmp-{serial}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    for filename, (data, mode) in files.items():
        write_new(tmp / filename, data, mode)
    fsync_dir(tmp)
    os.rename(tmp, home / serial)
    previous = os.readlink(home / "current") if (home / "current").is_symlink() else None
    (home / ".current.tmp").unlink(missing_ok=True)
    os.symlink(serial, home / ".current.tmp")
    os.replace(home / ".current.tmp", home / "current")
    for filename in files:
        if not (home / filename).is_symlink():
            (home / filename).unlink(missing_ok=True)
            os.symlink(f"current/{filename}", home / filename)
    fsync_dir(home)
    for old in home.iterdir():
        if old.is_dir() and not old.is_symlink() and old.name not in (serial, previous):
            shutil.rmtree(old, ignore_errors=True)


def load_current(home: Path, name: str) -> tuple[Bundle | None, str | None]:
    """The current version of ``name``, or None and why it cannot be used."""
    if not (home / "current").exists():
        return None, None
    v = (home / "current").resolve()
    try:
        if (v / "key.pem").stat().st_mode & 0o077:
            return None, "key.pem is readable by group or others"
        key_pem, cert_pem, chain_pem = ((v / f).read_text("ascii") for f in BUNDLE_FILES[:3])
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        x509.load_pem_x509_certificates(chain_pem.encode())
        issued_at = datetime.fromisoformat(json.loads((v / "meta.json").read_text())["issued_at"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, KeyError, TypeError, x509.ExtensionNotFound) as exc:
        return None, f"unreadable: {type(exc).__name__}: {exc}"
    if spki_of(key.public_key()) != spki_of(cert.public_key()):
        return None, "key.pem does not match cert.pem"
    names = [*sans.get_values_for_type(x509.DNSName),
             *map(str, sans.get_values_for_type(x509.IPAddress))]  # fmt: skip
    return Bundle(
        name, tuple(map(normalize_name, names)), format(cert.serial_number, "x"),
        cert.not_valid_before_utc, cert.not_valid_after_utc, issued_at, cert_pem, chain_pem,
        key_pem, v / "cert.pem", v / "chain.pem", v / "fullchain.pem", v / "key.pem",
    ), None  # fmt: skip
