"""The accepted-roots file: the roots a CT log accepts, kept beside its tiles.

``accepted-roots.pem`` lies in the parent of the tile directory (``roots_path``)
and holds the roots as concatenated PEM certificates, in the order they were
accepted. ``save_roots`` replaces it whole and durably (``replace_file``: a
reader sees the old roots or the new, never a torn file), so a restart reloads
exactly what was last acknowledged. Which roots to accept, and the checks of a
chain against them, are ``chains.ChainValidator``'s; this module only reads
and writes the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.durable import replace_file

FILE_NAME = "accepted-roots.pem"


def roots_path(storage_dir: Path) -> Path:
    """Where the accepted roots of the log whose tiles are in ``storage_dir`` are kept."""
    return storage_dir.parent / FILE_NAME


def load_roots(path: Path) -> list[bytes]:
    """The DER of each root in ``path``, in file order; none if there is no file
    (or an empty one: no root accepted yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data.strip():
        return []
    certs = x509.load_pem_x509_certificates(data)
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def save_roots(path: Path, roots: Iterable[x509.Certificate]) -> None:
    """Replace ``path`` with ``roots`` as PEM (durable when this returns)."""
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in roots)
    replace_file(path, data)
