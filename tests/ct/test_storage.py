"""LocalDirectoryStorage: atomic, durable object writes under a root directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustchain.actors.ct import LocalDirectoryStorage


def test_written_objects_read_back_and_missing_ones_are_none(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path)
    storage.write_many({"tile/0/x001/234": b"a" * 10, "checkpoint": b"cp"})
    assert storage.read("tile/0/x001/234") == b"a" * 10
    assert storage.read_many(["checkpoint", "tile/1/000"]) == {
        "checkpoint": b"cp",
        "tile/1/000": None,
    }


def test_rewriting_replaces_the_object_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path)
    storage.write_many({"checkpoint": b"old"})
    storage.write_many({"checkpoint": b"new"})
    assert storage.read("checkpoint") == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_delete_prefix_removes_only_objects_below_it(tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path)
    storage.write_many({"tile/0/000.p/1": b"1", "tile/0/000.p/2": b"2", "tile/0/000": b"f"})
    storage.delete_prefix("tile/0/000.p")
    assert storage.read("tile/0/000.p/1") is None
    assert storage.read("tile/0/000") == b"f"
    storage.delete_prefix("tile/9/nothing")  # absent: no error


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "", "a/.."])
def test_keys_that_could_escape_the_root_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalDirectoryStorage(tmp_path / "root")
    with pytest.raises(ValueError):
        storage.write_many({key: b"x"})
    with pytest.raises(ValueError):
        storage.read(key)
