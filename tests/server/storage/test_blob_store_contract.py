"""The :class:`~fedge.server.storage.blobs.BlobStore` contract, run against
each implementation (the shared directory; an object store would be added
to ``IMPLEMENTATIONS``): put / get / exists / delete, batches made durable
with ``sync``, trees (bundles) put and deleted whole, a put never seen half
written, a failed put leaving the old bytes, and names that are not a blob's
refused with a clear error before anything is touched. Then what only the
shared directory does: a tree from another file system is copied, and
``remove_unfinished`` clears what a crash left."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedge.server.storage.blobs import BlobNameError, BlobStore, SharedDirBlobs

MakeStore = Callable[[Path], BlobStore]
IMPLEMENTATIONS: dict[str, MakeStore] = {"shared_dir": SharedDirBlobs}
BAD_NAMES = ("../escape", "/etc/passwd", "r1/../../x", "a/..", "")


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return IMPLEMENTATIONS[request.param](tmp_path / "store")


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- the contract ------------------------------------------------------------


def test_put_get_exists_delete(blobs: BlobStore) -> None:
    assert not blobs.exists("r000001/a.safetensors")

    blobs.put("r000001/a.safetensors", b"first")
    blobs.put("b.safetensors", b"")

    assert blobs.get("r000001/a.safetensors") == b"first"
    assert blobs.get("b.safetensors") == b""
    assert blobs.exists("r000001/a.safetensors") and blobs.exists("b.safetensors")
    assert blobs.local_path("r000001/a.safetensors").read_bytes() == b"first"

    blobs.put("r000001/a.safetensors", b"second")  # a damaged copy replaced
    assert blobs.get("r000001/a.safetensors") == b"second"

    blobs.delete("r000001/a.safetensors")
    blobs.delete("r000001/a.safetensors")  # gone already: no error
    assert not blobs.exists("r000001/a.safetensors")
    with pytest.raises(FileNotFoundError):
        blobs.get("r000001/a.safetensors")
    assert blobs.get("b.safetensors") == b""  # the others untouched


def test_a_batch_put_without_durability_is_readable_and_synced_at_once(
    blobs: BlobStore,
) -> None:
    names = [f"r{r:06d}/d-{i}.safetensors" for r in (1, 2) for i in range(3)]
    for index, name in enumerate(names):
        blobs.put(name, bytes([index]) * 10, durable=False)

    blobs.sync(names)

    assert [blobs.get(n) for n in names] == [bytes([i]) * 10 for i in range(len(names))]
    with pytest.raises(BlobNameError):
        blobs.sync([*names, "../x"])


def test_a_reader_never_sees_a_half_written_blob(blobs: BlobStore) -> None:
    old, new = b"o" * (4 << 20), b"n" * (4 << 20)
    blobs.put("big.bin", old)
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = blobs.get("big.bin")
            seen.add("old" if data == old else "new" if data == new else "torn")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for value in (new, old, new, old, new):
            blobs.put("big.bin", value)
    finally:
        stop.set()
        reader.join(timeout=30)

    assert blobs.get("big.bin") == new
    assert seen and seen <= {"old", "new"}


def test_a_failed_put_keeps_the_old_bytes_and_leaves_nothing_unfinished(
    blobs: BlobStore,
) -> None:
    blobs.put("a.bin", b"kept")

    with pytest.raises(TypeError):
        blobs.put("a.bin", "not bytes")  # type: ignore[arg-type]

    assert blobs.get("a.bin") == b"kept"
    assert blobs.remove_unfinished() == 0


def test_a_tree_is_put_read_replaced_and_deleted_whole(blobs: BlobStore, tmp_path: Path) -> None:
    first = tree(tmp_path / "first", {"manifest.json": b"{1}", "model/a.tflite": b"A1"})
    second = tree(tmp_path / "second", {"manifest.json": b"{2}", "b.bin": b"B2"})

    blobs.put_tree("ab" * 32, first)

    assert blobs.exists("ab" * 32)
    assert blobs.get(f"{'ab' * 32}/model/a.tflite") == b"A1"
    assert files_under(blobs.local_path("ab" * 32)) == {
        "manifest.json": b"{1}",
        "model/a.tflite": b"A1",
    }

    blobs.put_tree("ab" * 32, second)  # nothing of the first is left

    assert files_under(blobs.local_path("ab" * 32)) == {"manifest.json": b"{2}", "b.bin": b"B2"}
    assert not blobs.exists(f"{'ab' * 32}/model/a.tflite")

    blobs.delete_tree("ab" * 32)
    blobs.delete_tree("ab" * 32)  # gone already: no error
    assert not blobs.exists("ab" * 32)
    assert not blobs.exists(f"{'ab' * 32}/manifest.json")
    assert blobs.remove_unfinished() == 0


def test_a_failed_tree_put_keeps_what_was_there(blobs: BlobStore, tmp_path: Path) -> None:
    blobs.put_tree("t", tree(tmp_path / "first", {"manifest.json": b"{1}", "x/y": b"Y"}))

    with pytest.raises(FileNotFoundError):
        blobs.put_tree("t", tmp_path / "not-there")

    assert files_under(blobs.local_path("t")) == {"manifest.json": b"{1}", "x/y": b"Y"}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_not_a_blobs_is_refused_and_nothing_changes(
    blobs: BlobStore, tmp_path: Path, name: str
) -> None:
    source = tree(tmp_path / "source", {"f": b"F"})
    before = files_under(tmp_path)
    calls: list[Callable[[], object]] = [
        lambda: blobs.put(name, b"x"),
        lambda: blobs.get(name),
        lambda: blobs.exists(name),
        lambda: blobs.delete(name),
        lambda: blobs.sync([name]),
        lambda: blobs.put_tree(name, source),
        lambda: blobs.delete_tree(name),
    ]
    if name:  # "" is the root's local path (where update segments are written)
        calls.append(lambda: blobs.local_path(name))

    for call in calls:
        with pytest.raises(BlobNameError, match=f"not a blob name: {name!r}"):
            call()

    assert files_under(tmp_path) == before
    assert not (tmp_path / "escape").exists()


# --- the shared directory only -----------------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[Path]:
    """A directory on another file system than the test's (tmpfs)."""
    path = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_tree_from_another_file_system_is_copied_whole(tmp_path: Path, elsewhere: Path) -> None:
    blobs = SharedDirBlobs(tmp_path / "bundles")
    blobs.put_tree("t", tree(tmp_path / "first", {"old": b"O"}))
    source = tree(elsewhere / "built", {"manifest.json": b"{}", "m/a.bin": b"A" * 4096})
    assert os.stat(source).st_dev != os.stat(tmp_path).st_dev  # the copy, not a rename

    blobs.put_tree("t", source)

    assert files_under(tmp_path / "bundles" / "t") == {
        "manifest.json": b"{}",
        "m/a.bin": b"A" * 4096,
    }
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["t"]  # no copy left


def test_remove_unfinished_clears_what_a_crash_left_and_spares_young_writes(
    tmp_path: Path,
) -> None:
    blobs = SharedDirBlobs(tmp_path / "bundles")
    blobs.put_tree("t", tree(tmp_path / "first", {"f": b"F"}))
    blobs.put("r000001/kept.bin", b"kept")
    cut_short = tmp_path / "bundles" / "r000001" / ".kept.bin.x1.tmp"
    cut_short.write_bytes(b"half")
    stale = tree(tmp_path / "bundles" / ".stale-t", {"f": b"old"})

    assert blobs.remove_unfinished(older_than_s=3600) == 0  # another worker's, maybe
    assert cut_short.exists() and stale.exists()

    assert blobs.remove_unfinished() == 2

    assert not cut_short.exists() and not stale.exists()
    assert blobs.get("r000001/kept.bin") == b"kept" and blobs.get("t/f") == b"F"
