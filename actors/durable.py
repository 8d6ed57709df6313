"""Small files that survive a crash: write a temporary file, fsync it, rename it
over the old one, fsync the directory. A reader sees the old bytes or the new,
never a torn file. Used for CRLs, the root certificate, accepted roots,
TrustChain's own key/certificate bundles and their registrations.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never over a file or through a symlink) with ``mode``, write, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, mode)  # exactly, whatever the umask
        fh.write(data)
        fh.flush()
        os.fsync(fd)


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomically replace ``path`` with ``data`` (durable when this returns)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    write_new(tmp, data, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)
