"""The schema's numbered steps (fedge.server.storage.sqlite.migrations) on
both stores, and the upgrade of a data directory release 3 wrote
(``release3/``: made by release 3's own server, see release3/make.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.server.storage.postgres.dialect import ddl
from fedge.server.storage.postgres.store import PostgresStore
from fedge.server.storage.sqlite.migrations import LATEST, STEPS, recorded
from fedge.server.storage.store import Store, StoreError
from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.helpers.postgres import PostgresCluster
from tests.helpers.stores import Stores
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import ROUND_FLAGS

RELEASE_3 = Path(__file__).resolve().parent / "release3"


def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store.reading() as tx:
        return [tuple(r) for r in tx.connection.execute(sql).fetchall()]  # type: ignore[attr-defined]


def test_each_step_runs_once_and_is_recorded(stores: Stores, tmp_path: Path) -> None:
    stores.open(tmp_path)
    store = stores.open(tmp_path)  # a restart: nothing to do

    steps = rows(store, "SELECT version, name FROM schema_version ORDER BY version")
    assert steps == [(s.version, s.name) for s in STEPS]
    # Step 4's index is there: a second one of that name is refused.
    with pytest.raises(StoreError, match="already exists"), store.transaction() as tx:
        tx.connection.execute("CREATE INDEX updates_by_arrival ON updates(round_id)")  # type: ignore[attr-defined]


def test_a_database_a_newer_fedge_upgraded_is_refused(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(tmp_path)
    with store.transaction() as tx:
        tx.connection.execute(  # type: ignore[attr-defined]
            "INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)"
        )

    with pytest.raises(StoreError, match=f"schema version 99, newer than this fedge's {LATEST}"):
        stores.open(tmp_path)


def test_a_postgres_database_at_the_baseline_gains_the_later_steps(
    postgres_cluster: PostgresCluster,
) -> None:
    baseline = STEPS[0]
    url = postgres_cluster.new_database("at_baseline")
    postgres_cluster.sql(
        ddl(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at REAL NOT NULL);"
        )
        + ddl(baseline.script)
        + recorded(baseline),
        "at_baseline",
    )

    store = PostgresStore.open(url, threads=2)

    assert [v for (v,) in rows(store, "SELECT version FROM schema_version")] == [3, 4, 5, 6]
    indexes = rows(store, "SELECT indexname FROM pg_indexes WHERE tablename = 'updates'")
    assert ("updates_by_arrival",) in indexes and ("updates_by_segment",) in indexes


def release_3_data_dir(tmp_path: Path, model: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(RELEASE_3 / "data", data)
    made = json.loads((RELEASE_3 / "made.json").read_text())
    script = (data / "fedge.sql").read_text().replace(made["model"], str(model))
    (data / "fedge.sql").unlink()
    with closing(sqlite3.connect(data / "fedge.sqlite3")) as conn:
        conn.executescript(script)
        # As if release 3 had stopped just now: its open round's deadline
        # (300 s after it was made) still ahead.
        with conn:
            conn.execute(
                "UPDATE rounds SET deadline_at = ? WHERE state = 'open'", (time.time() + 3600,)
            )
    data.chmod(0o700)
    return data


def test_a_data_directory_of_release_3_is_upgraded_and_its_round_goes_on(
    tiny_keras: Path, tmp_path: Path
) -> None:
    data = release_3_data_dir(tmp_path, tiny_keras)
    devices = json.loads((RELEASE_3 / "made.json").read_text())["devices"]
    args = ["--model", str(tiny_keras), *ROUND_FLAGS]

    with running(data, args, tmp_path / "log") as server:
        fetch = json_at(server.url)
        one, two = fetch("/v1/rounds/1"), fetch("/v1/rounds/2")
        base = two["base_checkpoint"]
        for d in devices[1:]:  # the two that have no seat in round 2 yet
            seat = requests.post(
                f"{server.url}/v1/tasks", json={}, headers=auth(d["token"]), timeout=30
            )
            assert seat.json()["task"]["round_id"] == 2, seat.text
        receipts = [
            requests.post(
                f"{server.url}/v1/rounds/2/updates",
                data=constant_update(2, base, value),
                headers={**auth(d["token"]), "Content-Type": "application/octet-stream"},
                timeout=30,
            )
            for d, value in zip(devices[1:], (6.0, 9.0), strict=True)
        ]
        closed = settled(fetch, 2)
        body = requests.get(
            f"{server.url}/v1/checkpoints/{closed['result_checkpoint']}",
            headers=auth(devices[0]["token"]),
            timeout=30,
        ).content

    assert (one["state"], two["state"], two["updates"]) == ("closed", "open", 1)
    assert [r.status_code for r in receipts] == [201, 201], receipts[0].text
    # Round 1 gave bias 3 (the mean of 1, 2, 6). Round 2 opened (under release 3)
    # with round 1's median norm as its bound, that of the update of 2s: the 3s
    # from before the upgrade and the 6s and 9s after it are each clipped to 2s.
    np.testing.assert_allclose(decode_checkpoint(body).weights["dense/bias"], [5.0, 5.0])
    with closing(sqlite3.connect(data / "fedge.sqlite3")) as conn:
        steps = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        (user_version,) = conn.execute("PRAGMA user_version").fetchone()
        stored = conn.execute(
            "SELECT segment != '' FROM updates WHERE round_id = 2 ORDER BY received_at"
        ).fetchall()
    assert (steps, user_version) == ([(3,), (4,), (5,), (6,)], 6)
    # Round 2 summed the file release 3 wrote and the two segment records since.
    assert stored == [(0,), (1,), (1,)]
