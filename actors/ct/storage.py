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
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
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
