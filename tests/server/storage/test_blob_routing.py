"""Checkpoints, strategy state and bundles go through the blob stores.

Two servers on one PostgreSQL database, each with a data directory of its
own but one set of blob stores (a shared directory elsewhere), over real
HTTP: the aggregator (a, started first from a bundle) stores the bundle and
the initial checkpoint, closes round 1 from an update the other worker (b)
took, saves the server optimizer's state beside the new checkpoint and
builds a release from it in its worker process. Worker b serves every one
of those files to devices, though none is in its data directory, nor in
a's: everything the rows point at is in the blob stores.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from fedge.bundle.manifest import MANIFEST_FILE, open_bundle
from fedge.server.http.app import create_app
from fedge.server.http.serve import BackgroundServer
from fedge.server.storage.blobs import BlobStores
from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.postgres import PostgresCluster
from tests.helpers.release_bundles import Built, build
from tests.server.helpers import auth, json_at, settled
from tests.server.http.test_http import Device
from tests.server.storage.test_postgres_workers import update

ADMIN = auth("admin-secret")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("routing-bundle"), "first", 0.0)


def serve(stack: ExitStack, data_dir: Path, url: str, model: Path, blobs: BlobStores) -> str:
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "database": url,
        "worker_id": data_dir.name,
        "admin_token": "admin-secret",
        "port": 0,
        "model": model,
        "strategy": "fedavgm",  # a server optimizer: its state is saved per checkpoint
        "rounds": {"target_participants": 1, "min_participants": 1, "deadline_s": 600.0},
    }
    app = create_app(test_config=settings, blobs=blobs)
    return stack.enter_context(BackgroundServer(app)).url


def served(url: str, token: str, path: str) -> bytes:
    reply = requests.get(f"{url}{path}", headers=auth(token), timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.content


def release_built(url: str, version: int, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = requests.get(f"{url}/v1/releases/{version}", timeout=30).json()
        if record["state"] != "building":
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.2)


def files_of(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def workers(
    postgres_cluster: PostgresCluster, bundle: Built, tmp_path: Path
) -> Iterator[tuple[str, str, BlobStores]]:
    url = postgres_cluster.new_database("blob_routing")
    blobs = BlobStores.under(tmp_path / "shared")
    with ExitStack() as stack:
        a = serve(stack, tmp_path / "a", url, bundle.path, blobs)
        b = serve(stack, tmp_path / "b", url, bundle.path, blobs)
        yield a, b, blobs


def test_the_other_worker_serves_what_the_aggregator_stored(
    workers: tuple[str, str, BlobStores], bundle: Built, tmp_path: Path
) -> None:
    a, b, blobs = workers
    device = Device(b)
    base = device.task()["base_checkpoint"]
    weights = decode_checkpoint(served(b, device.token, f"/v1/checkpoints/{base}")).weights
    shapes = {name: value.shape for name, value in weights.items()}

    sent = device.upload(b, 1, update(1, base, shapes, seed=1))
    closed = settled(json_at(b), 1, timeout=60)
    result = closed["result_checkpoint"]
    cut = requests.post(
        f"{a}/v1/admin/releases", json={"checkpoint": result}, headers=ADMIN, timeout=30
    )
    release = release_built(b, 2)

    assert sent.status_code == 201, sent.text
    assert closed["state"] == "closed"
    assert cut.status_code == 202, cut.text
    assert release["state"] == "canary", release
    # b serves the checkpoints a wrote, each its own sha256...
    for checkpoint in (base, result):
        body = served(b, device.token, f"/v1/checkpoints/{checkpoint}")
        assert hashlib.sha256(body).hexdigest() == checkpoint
    # ... and the bundle a started from and the one a built, file by file.
    for bundle_id in (bundle.bundle_id, release["bundle_id"]):
        manifest = served(b, device.token, f"/v1/bundles/{bundle_id}/{MANIFEST_FILE}")
        assert hashlib.sha256(manifest).hexdigest() == bundle_id
        weights_file = served(b, device.token, f"/v1/bundles/{bundle_id}/weights.safetensors")
        assert weights_file == blobs.bundles.get(f"{bundle_id}/weights.safetensors")
    built = open_bundle(blobs.bundles.local_path(release["bundle_id"]), release["bundle_id"])
    assert built.manifest.version == "2"
    # Everything the rows point at is in the blob stores, none in a data directory.
    shared = tmp_path / "shared"
    assert sorted(files_of(shared / "checkpoints")) == sorted(
        f"{c}.safetensors" for c in (base, result)
    )
    assert files_of(shared / "strategy") == [f"{result}.safetensors"]
    assert sorted(p.name for p in (shared / "bundles").iterdir()) == sorted(
        [bundle.bundle_id, release["bundle_id"]]
    )
    assert files_of(shared / "updates")
    for data_dir in (tmp_path / "a", tmp_path / "b"):
        for kind in ("checkpoints", "strategy", "updates"):
            assert not (data_dir / kind).exists(), data_dir / kind
        assert files_of(data_dir / "bundles") == []  # staging only, left empty
