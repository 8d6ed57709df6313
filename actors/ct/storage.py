"""Where tiles, issuers and the checkpoint live: a tiny object-store interface.

``TileStorage`` is deliberately what an S3-compatible bucket offers: whole
objects under slash-separated keys, read, written (``write_many`` returns only
once every object is durable), listed by prefix, and deleted one by one or by
prefix (best effort and not durable: used only to drop superseded partial
tiles, which the log collects again if a crash undoes a delete). Keys are
relative paths made of ``[A-Za-z0-9._-]`` segments; nothing may escape the root.

``LocalDirectoryStorage`` makes each write durable and atomic: write a temp file
in the target directory, fsync it, rename it over the target, then fsync every
touched directory (and the parents of directories it created). A reader sees the
old object or the new one, never a torn one; after a crash each object is either
old or new, independently of the others. The log's crash safety relies only on
this, and on ``write_many`` of the checkpoint happening after the tiles.
One writer per directory (temp names are ``.tmp-<name>-<pid>``); nothing here
locks against a second process, so the owner must ensure that.

``journal(key)`` gives the log an append-only file beside the objects
(``FileJournal``): each record durable when ``append`` returns (one write, one
fdatasync), a torn last record dropped on reading. A storage without it (an
object store) is used without a journal (``TileLog.open(journal=False)``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from trustchain.actors.durable import fsync_dir

_SEGMENT = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")


def check_key(key: str) -> list[str]:
    parts = key.split("/")
    if not all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return parts


class TileStorage(Protocol):
    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""
        ...

    def read_many(self, keys: Iterable[str]) -> dict[str, bytes | None]: ...

    def write_many(self, objects: Mapping[str, bytes]) -> None:
        """Create or replace every object; durable when this returns."""
        ...

    def list_prefix(self, prefix: str) -> list[str]:
        """Keys of every object whose key starts with ``prefix + '/'``, sorted."""
        ...

    def delete_many(self, keys: Iterable[str]) -> None:
        """Best effort: remove these objects (absent ones are no error)."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Best effort: remove every object whose key starts with ``prefix + '/'``."""
        ...


class JournalingStorage(TileStorage, Protocol):
    def journal(self, key: str) -> FileJournal:
        """The append-only file at ``key`` (created empty if absent)."""
        ...


_FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload


class FileJournal:
    """An append-only file of records, each durable when ``append`` returns.

    A record is framed by its length and CRC-32; reading stops at the first frame
    that is incomplete or does not check (a crash in the middle of an append) and
    cuts the file there, so the next append follows the last good record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        if created:
            fsync_dir(path.parent)
        self.size = os.fstat(self._fd).st_size

    def records(self) -> list[bytes]:
        """Every whole record, oldest first (a torn tail is cut off the file)."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        out, pos = [], 0
        while pos + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, pos)
            payload = data[pos + _FRAME.size : pos + _FRAME.size + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            out.append(payload)
            pos += _FRAME.size + length
        if pos != len(data):
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        self.size = pos
        return out

    def append(self, payload: bytes) -> None:
        """Add one record; durable when this returns. If the write or the fdatasync
        fails, the record is cut off again: after a failed fdatasync the page cache may
        still show bytes the disk never got, and a record read back from there would be
        replayed though it was never acknowledged, nor durable."""
        view = memoryview(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(payload) + _FRAME.size

    def reset(self) -> None:
        """Empty the file (durably): what it held is written elsewhere now."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalDirectoryStorage:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def read_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {k: self.read(k) for k in keys}

    def write_many(self, objects: Mapping[str, bytes]) -> None:
        dirs_to_sync: set[Path] = set()
        staged: list[tuple[str, Path]] = []
        try:
            for key, data in objects.items():
                target = self._path(key)
                dirs_to_sync |= self._make_parents(target.parent)
                tmp = str(target.parent / f".tmp-{target.name}-{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                staged.append((tmp, target))
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for tmp, target in staged:
                os.replace(tmp, target)
                dirs_to_sync.add(target.parent)
            staged = []
        finally:
            for tmp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        for d in sorted(dirs_to_sync, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)

    def _make_parents(self, directory: Path) -> set[Path]:
        """mkdir -p; return the directories whose entries changed (to fsync)."""
        created: list[Path] = []
        d = directory
        while not d.exists():
            created.append(d)
            d = d.parent
        for c in reversed(created):
            c.mkdir(exist_ok=True)
        return {c.parent for c in created}

    def journal(self, key: str) -> FileJournal:
        target = self._path(key)
        for directory in self._make_parents(target.parent):
            fsync_dir(directory)
        return FileJournal(target)

    def list_prefix(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        out: list[str] = []
        for dirpath, _, names in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).parts
            out.extend("/".join((*rel, n)) for n in names if _SEGMENT.fullmatch(n))
        return sorted(out)  # temp files (".tmp-...") are not objects

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                os.unlink(self._path(key))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)
