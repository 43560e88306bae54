"""The server keeps the bundle it federates and serves it to devices.

A real ``fedge serve`` process over real HTTP: started from a bundle it
copies the bundle into its data directory, names it in ``/v1/models/{name}``
and serves exactly the files its manifest lists (immutable, ETag = sha256,
Range); a device downloads it with :func:`download_bundle` and gets the same
bytes, checked against the bundle id it was given.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from fedge.bundle.manifest import MANIFEST_FILE, MANIFEST_HASH_FILE, open_bundle, verify_bundle
from fedge.client_sim.device.bundle_download import download_bundle
from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.client_sim.device.transport import HttpTransport, TransportError
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.server.storage.blobs import SharedDirBlobs
from fedge.server.storage.bundles import BUNDLES_DIR, store_bundle
from tests.helpers.live_server import LiveServer, running, start, stop
from tests.helpers.network_gone import NetworkGoneAfter
from tests.helpers.stores import Stores

TRAIN_FILE = "tflite/train.tflite"


@dataclass(frozen=True)
class ReferenceBundle:
    path: Path
    keras_path: Path
    bundle_id: str
    name: str


@pytest.fixture(scope="module")
def reference_bundle(tmp_path_factory: pytest.TempPathFactory) -> ReferenceBundle:
    """The reference CNN (untrained) as a TFLite bundle with ``train.tflite``."""
    from fedge.reference.model import build_reference_model

    root = tmp_path_factory.mktemp("reference")
    keras_path = root / "digits.keras"
    build_reference_model().save(keras_path)
    convert(keras_path, root / "bundle", ConvertOptions(targets=("tflite",), verify=False))
    opened = open_bundle(root / "bundle")
    assert TRAIN_FILE in {record["path"] for record in opened.manifest.files()}
    return ReferenceBundle(root / "bundle", keras_path, opened.bundle_id, opened.manifest.name)


@dataclass
class Served:
    server: LiveServer
    bundle: ReferenceBundle
    data_dir: Path
    token: str

    def get(self, path: str, token: str | None = "device", **headers: str) -> requests.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'device' else token}"
        return requests.get(self.server.url + path, headers=headers, timeout=30)

    def file_url(self, name: str) -> str:
        return f"/v1/bundles/{self.bundle.bundle_id}/{name}"


def enrol(url: str) -> str:
    reply = requests.post(f"{url}/v1/devices", json={"platform": "test"}, timeout=30)
    assert reply.status_code == 201, reply.text
    token: str = reply.json()["token"]
    return token


def device_client(url: str) -> FedgeClient:
    client = FedgeClient(HttpTransport(url))
    client.enrol(platform="test")
    return client


@pytest.fixture(scope="module")
def served(
    reference_bundle: ReferenceBundle, stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server from the reference bundle, for the tests that only read;
    one per store kind."""
    root = tmp_path_factory.mktemp("served")
    data_dir = root / "data"
    args = ["--model", str(reference_bundle.path), *stores.serve_args(data_dir)]
    with running(data_dir, args, root / "log") as server:
        yield Served(server, reference_bundle, data_dir, enrol(server.url))


def model_record(url: str, name: str) -> dict[str, object]:
    reply = requests.get(f"{url}/v1/models/{name}", timeout=30)
    assert reply.status_code == 200, reply.text
    record: dict[str, object] = reply.json()
    return record


def raw_get(url: str, target: str, token: str) -> tuple[int, dict[str, object]]:
    """A GET with ``target`` sent exactly as written (requests would remove
    ``..`` segments before sending)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", target, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}
    finally:
        connection.close()


def snapshot(data_dir: Path, stores: Stores | None = None) -> dict[str, str]:
    """The sha256 of every file of a data directory but its lock; for the
    database, of its rows (SQLite may move its WAL into the file on open;
    a PostgreSQL database of ``stores`` is read beside the files)."""
    digests = {}
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file() or path.name == "lock" or path.name.endswith(("-wal", "-shm")):
            continue
        if path.suffix == ".sqlite3":
            with contextlib.closing(sqlite3.connect(path)) as conn:
                data = "\n".join(conn.iterdump()).encode()
        else:
            data = path.read_bytes()
        digests[str(path.relative_to(data_dir))] = hashlib.sha256(data).hexdigest()
    if stores is not None and stores.url(data_dir) is not None:
        digests["<database>"] = hashlib.sha256(stores.dump(data_dir).encode()).hexdigest()
    return digests


# --- a server started from a bundle ------------------------------------------


def test_the_model_names_the_bundle_it_came_from(served: Served) -> None:
    record = model_record(served.server.url, served.bundle.name)

    assert record["bundle_id"] == served.bundle.bundle_id


def test_the_server_keeps_a_verified_copy_of_the_bundle(served: Served) -> None:
    stored = served.data_dir / BUNDLES_DIR / served.bundle.bundle_id

    opened = open_bundle(stored, expected_id=served.bundle.bundle_id)

    listed = {record["path"] for record in opened.manifest.files()}
    kept = {str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()}
    assert kept == listed | {MANIFEST_FILE, MANIFEST_HASH_FILE}
    assert opened.sealed


def test_a_device_downloads_the_bundle_it_federates(served: Served, tmp_path: Path) -> None:
    client = device_client(served.server.url)

    path = download_bundle(client, served.bundle.bundle_id, tmp_path / "device" / "bundle")

    assert path == tmp_path / "device" / "bundle"
    manifest = verify_bundle(path, expected_id=served.bundle.bundle_id)
    assert manifest.name == served.bundle.name
    assert (path / TRAIN_FILE).read_bytes() == (served.bundle.path / TRAIN_FILE).read_bytes()
    assert (path / MANIFEST_FILE).read_bytes() == (served.bundle.path / MANIFEST_FILE).read_bytes()
    assert [p.name for p in (tmp_path / "device").iterdir()] == ["bundle"]  # no temp left


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [(MANIFEST_FILE, "application/json"), (TRAIN_FILE, "application/octet-stream")],
)
def test_files_are_immutable_with_their_sha256_as_etag(
    served: Served, name: str, mimetype: str
) -> None:
    manifest = verify_bundle(served.bundle.path)
    listed = {record["path"]: record["sha256"] for record in manifest.files()}
    expected = served.bundle.bundle_id if name == MANIFEST_FILE else listed[name]

    reply = served.get(served.file_url(name))

    assert reply.status_code == 200, reply.text
    assert reply.content == (served.bundle.path / name).read_bytes()
    assert hashlib.sha256(reply.content).hexdigest() == expected
    assert reply.headers["ETag"] == f'"{expected}"'
    assert reply.headers["Content-Type"] == mimetype
    cache = {part.strip() for part in reply.headers["Cache-Control"].split(",")}
    assert cache == {"private", "max-age=31536000", "immutable"}


def test_if_none_match_is_not_modified(served: Served) -> None:
    etag = served.get(served.file_url(TRAIN_FILE)).headers["ETag"]

    reply = served.get(served.file_url(TRAIN_FILE), **{"If-None-Match": etag})

    assert reply.status_code == 304
    assert reply.content == b""


def test_a_range_request_gets_exactly_those_bytes(served: Served) -> None:
    original = (served.bundle.path / TRAIN_FILE).read_bytes()

    reply = served.get(served.file_url(TRAIN_FILE), Range="bytes=100-1123")

    assert reply.status_code == 206
    assert reply.content == original[100:1124]
    assert reply.headers["Content-Range"] == f"bytes 100-1123/{len(original)}"


def test_a_file_the_manifest_does_not_list_is_not_served(served: Served) -> None:
    for name in ("nope.bin", "tflite", "keras/", "lock", "fedge.sqlite3"):
        reply = served.get(served.file_url(name))

        assert reply.status_code == 404, name
        assert reply.json()["code"] == "unknown_file", name


@pytest.mark.parametrize(
    ("tail", "code"),
    [
        ("../../../fedge.sqlite3", "unknown_file"),
        ("%2e%2e/%2e%2e/%2e%2e/fedge.sqlite3", "unknown_file"),
        ("tflite/../manifest.json", "unknown_file"),
        ("tflite//train.tflite", "unknown_file"),
        # An absolute path makes "//" in the URL, which no route takes (nor
        # redirects to the path without it).
        ("/etc/passwd", "not_found"),
        ("%2Fetc%2Fpasswd", "not_found"),
    ],
)
def test_a_path_outside_the_manifest_is_not_found(served: Served, tail: str, code: str) -> None:
    target = f"/v1/bundles/{served.bundle.bundle_id}/{tail}"

    status, body = raw_get(served.server.url, target, served.token)

    assert (status, body["code"]) == (404, code), (target, body)


def test_an_unknown_bundle_is_not_found(served: Served) -> None:
    for bundle_id in ("f" * 64, "nope"):
        reply = served.get(f"/v1/bundles/{bundle_id}/{MANIFEST_FILE}")

        assert reply.status_code == 404
        assert reply.json()["code"] == "unknown_bundle"


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_bundle_file_needs_a_device_token(served: Served, token: str | None) -> None:
    reply = served.get(served.file_url(MANIFEST_FILE), token=token)

    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"


def test_a_download_of_an_unknown_bundle_leaves_nothing(served: Served, tmp_path: Path) -> None:
    client = device_client(served.server.url)

    with pytest.raises(ProtocolError) as raised:
        download_bundle(client, "f" * 64, tmp_path / "bundle")

    assert (raised.value.status, raised.value.code) == (404, "unknown_bundle")
    assert list(tmp_path.iterdir()) == []


# --- restarts and a stored copy that changed ---------------------------------


def test_a_restart_keeps_serving_the_bundle(
    reference_bundle: ReferenceBundle, tmp_path: Path
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "log"
    with running(data_dir, ["--model", str(reference_bundle.path)], log):
        pass

    with running(data_dir, [], log) as server:
        record = model_record(server.url, reference_bundle.name)
        path = download_bundle(
            device_client(server.url), reference_bundle.bundle_id, tmp_path / "bundle"
        )

    assert record["bundle_id"] == reference_bundle.bundle_id
    assert (path / TRAIN_FILE).read_bytes() == (reference_bundle.path / TRAIN_FILE).read_bytes()


def test_a_download_that_does_not_match_the_manifest_is_refused(
    reference_bundle: ReferenceBundle, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with running(data_dir, ["--model", str(reference_bundle.path)], tmp_path / "log") as server:
        stored = data_dir / BUNDLES_DIR / reference_bundle.bundle_id / TRAIN_FILE
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0x01  # the server's disk corrupts one bit
        stored.write_bytes(bytes(data))

        with pytest.raises(ProtocolError, match=TRAIN_FILE) as raised:
            download_bundle(
                device_client(server.url), reference_bundle.bundle_id, tmp_path / "device"
            )

    assert raised.value.code == "bundle_file_mismatch"
    assert not (tmp_path / "device").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "log"]  # no temp left


@pytest.mark.parametrize("damage", ["modified", "missing"])
def test_a_damaged_stored_bundle_stops_the_restart(
    reference_bundle: ReferenceBundle, tmp_path: Path, damage: str
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "log"
    with running(data_dir, ["--model", str(reference_bundle.path)], log):
        pass
    stored = data_dir / BUNDLES_DIR / reference_bundle.bundle_id / TRAIN_FILE
    if damage == "modified":
        stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    else:
        stored.unlink()
    before = snapshot(data_dir)

    with pytest.raises(RuntimeError, match="server exited"):
        stop(start(data_dir, [], log).process)

    message = log.read_text()
    assert TRAIN_FILE in message
    assert str(data_dir / BUNDLES_DIR / reference_bundle.bundle_id) in message
    assert snapshot(data_dir) == before


# --- servers that did not start from a bundle --------------------------------


@pytest.mark.parametrize("source", ["default", "keras"])
def test_a_server_without_a_bundle_names_none(
    reference_bundle: ReferenceBundle, tmp_path: Path, source: str
) -> None:
    args = ["--model", str(reference_bundle.keras_path)] if source == "keras" else []
    with running(tmp_path / "data", args, tmp_path / "log") as server:
        (model,) = requests.get(f"{server.url}/v1/models", timeout=30).json()["models"]
        record = model_record(server.url, str(model["name"]))
        reply = requests.get(
            f"{server.url}/v1/bundles/{reference_bundle.bundle_id}/{MANIFEST_FILE}",
            headers={"Authorization": f"Bearer {enrol(server.url)}"},
            timeout=30,
        )

    assert record["bundle_id"] is None
    assert reply.status_code == 404
    assert reply.json()["code"] == "unknown_bundle"
    assert not (tmp_path / "data" / BUNDLES_DIR).exists()


# --- the store on its own ----------------------------------------------------


def test_storing_a_bundle_again_is_a_no_op(
    reference_bundle: ReferenceBundle, tmp_path: Path
) -> None:
    first = store_bundle(reference_bundle.path, tmp_path, SharedDirBlobs(tmp_path / BUNDLES_DIR))
    stamp = (first.root / TRAIN_FILE).stat().st_mtime_ns

    again = store_bundle(reference_bundle.path, tmp_path, SharedDirBlobs(tmp_path / BUNDLES_DIR))

    assert again == first
    assert first.bundle_id == reference_bundle.bundle_id
    assert (again.root / TRAIN_FILE).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / BUNDLES_DIR).iterdir()] == [first.bundle_id]


def test_an_unrecorded_copy_that_does_not_verify_is_replaced(
    reference_bundle: ReferenceBundle, tmp_path: Path
) -> None:
    # A first start that stopped before it recorded the model, then a disk
    # that lost a file: nothing refers to the copy yet, so it is made again.
    first = store_bundle(reference_bundle.path, tmp_path, SharedDirBlobs(tmp_path / BUNDLES_DIR))
    (first.root / TRAIN_FILE).unlink()
    leftover = tmp_path / BUNDLES_DIR / ".incoming-left-by-a-crash"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"half")

    again = store_bundle(reference_bundle.path, tmp_path, SharedDirBlobs(tmp_path / BUNDLES_DIR))

    assert open_bundle(again.root, expected_id=reference_bundle.bundle_id)
    assert [p.name for p in (tmp_path / BUNDLES_DIR).iterdir()] == [first.bundle_id]


def test_an_interrupted_download_resumes_with_range_and_verifies(
    served: Served, tmp_path: Path
) -> None:
    dest = tmp_path / "bundle"
    first = device_client(served.server.url)
    token, device_id = first.token, first.device_id
    train = (served.bundle.path / "tflite" / "train.tflite").stat().st_size
    chunk = 64 * 1024
    # Manifest, seal, then files in manifest order; drop the link a few
    # chunks into the files, wherever that lands.
    first.transport = NetworkGoneAfter(served.server.url, 6)

    with pytest.raises(TransportError):
        download_bundle(first, served.bundle.bundle_id, dest, chunk_bytes=chunk)

    assert not dest.exists()
    (partial,) = tmp_path.glob(".bundle.*.partial")
    kept = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    manifests = sum((partial / n).stat().st_size for n in (MANIFEST_FILE, MANIFEST_HASH_FILE))
    assert kept - manifests >= 3 * chunk  # file bytes that arrived before the drop
    again = FedgeClient(NetworkGoneAfter(served.server.url, 10_000))
    again.token, again.device_id = token, device_id

    download_bundle(again, served.bundle.bundle_id, dest, chunk_bytes=chunk)

    verify_bundle(dest, expected_id=served.bundle.bundle_id)
    total = sum(int(f["bytes"]) for f in open_bundle(dest).manifest.files())
    # The second attempt fetched only what the first had not (plus the
    # manifest and its seal again), and went on from a byte past 0.
    assert again.bytes_down == total - (kept - manifests) + manifests
    transport = again.transport
    assert isinstance(transport, NetworkGoneAfter)
    assert not transport.ranges[0].endswith("=0-65535"), transport.ranges[0]
    assert (dest / "tflite" / "train.tflite").stat().st_size == train
    assert not list(tmp_path.glob(".*partial"))


def test_files_are_served_from_a_relative_data_dir(
    reference_bundle: ReferenceBundle, tmp_path: Path
) -> None:
    """``fedge serve --data-dir runs/x`` (relative to the working directory):
    the stored bundle's files are found there, not under the server package."""
    args = ["--model", str(reference_bundle.path)]
    with running(Path("data"), args, tmp_path / "log", cwd=tmp_path) as server:
        reply = requests.get(
            f"{server.url}/v1/bundles/{reference_bundle.bundle_id}/manifest.json",
            headers={"Authorization": f"Bearer {enrol(server.url)}"},
            timeout=30,
        )
    assert reply.status_code == 200, reply.text
    assert hashlib.sha256(reply.content).hexdigest() == reference_bundle.bundle_id
