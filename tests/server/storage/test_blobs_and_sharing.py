"""The shared-directory blob store (names in, bytes out, nothing outside its
root), and who may share a data directory: the workers of one PostgreSQL
database take its lock shared; a SQLite server owns it alone, and each
kind is refused on a directory the other holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.server.errors import ConfigurationError
from fedge.server.storage.blobs import SharedDirBlobs
from fedge.server.storage.data_dir import DataDirLock


def test_blobs_round_trip_and_stay_under_their_root(tmp_path: Path) -> None:
    blobs = SharedDirBlobs(tmp_path / "updates")
    blobs.put("r000001/dev-abc.safetensors", b"first", durable=False)
    blobs.sync(["r000001/dev-abc.safetensors"])
    assert blobs.get("r000001/dev-abc.safetensors") == b"first"
    assert blobs.local_path("r000001/dev-abc.safetensors").read_bytes() == b"first"
    blobs.delete("r000001/dev-abc.safetensors")
    blobs.delete("r000001/dev-abc.safetensors")  # gone already: no error
    with pytest.raises(FileNotFoundError):
        blobs.get("r000001/dev-abc.safetensors")
    for name in ("../escape", "/etc/passwd", "r1/../../x"):
        with pytest.raises(ValueError, match="not a blob name"):
            blobs.put(name, b"x")
    assert not (tmp_path / "escape").exists()


def test_postgresql_workers_share_a_data_directory_sqlite_owns_one(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    first, second = DataDirLock(shared, shared=True), DataDirLock(shared, shared=True)
    with pytest.raises(ConfigurationError, match="in use by another fedge server"):
        DataDirLock(shared, shared=False)  # a SQLite server: refused while workers run
    first.release()
    second.release()

    owned = tmp_path / "owned"
    owner = DataDirLock(owned)
    with pytest.raises(ConfigurationError, match="owned by a fedge server on SQLite"):
        DataDirLock(owned, shared=True)
    with pytest.raises(ConfigurationError, match="in use by another fedge server"):
        DataDirLock(owned)
    owner.release()
    DataDirLock(owned, shared=True).release()  # free again
