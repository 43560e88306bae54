"""Check-ins do not wait for the disk; receipted updates still do, and
survive a crash. Writers queue in the process instead of SQLite's sleeps."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from fedge.server.storage.sqlite.database import Database
from tests.helpers.live_server import running
from tests.server.helpers import OCTET, auth, constant_update
from tests.server.parts import PartsOn

FULL, NORMAL = 2, 1  # PRAGMA synchronous


def synchronous(conn: sqlite3.Connection) -> int:
    (level,) = conn.execute("PRAGMA synchronous").fetchone()
    return int(level)


def test_a_transaction_that_need_not_be_durable_does_not_wait_for_the_disk(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "db.sqlite3")

    with db.transaction(durable=False) as conn:
        during_check_in = synchronous(conn)
    after = synchronous(db.connection())
    with db.transaction() as conn:
        during_default = synchronous(conn)

    assert (during_check_in, after, during_default) == (NORMAL, FULL, FULL)


def test_a_check_in_is_not_durable_and_an_upload_is(
    parts_on: PartsOn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = parts_on(tmp_path, rounds={"target_participants": 3})
    device = parts.device()
    kinds: list[bool] = []
    kind = type(parts.store.db)  # type: ignore[attr-defined]  # either store's database: both take `durable`
    original = kind.transaction

    @contextmanager
    def recorded(self: Any, durable: bool = True) -> Iterator[Any]:
        kinds.append(durable)
        with original(self, durable) as conn:
            yield conn

    monkeypatch.setattr(kind, "transaction", recorded)

    task = parts.task(device)
    check_in = list(kinds)
    kinds.clear()
    parts.ingest.accept(device, 1, constant_update(1, task["base_checkpoint"], 1.0))

    assert check_in == [False]
    assert kinds and all(kinds)  # every commit of the upload waits for the disk


def test_a_second_writer_waits_for_the_first_and_then_commits(tmp_path: Path) -> None:
    db = Database(tmp_path / "db.sqlite3")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    inside, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        inside.wait()
        try:
            with db.transaction(durable=False) as conn:
                conn.execute("INSERT INTO t VALUES (2)")
        except BaseException as exc:  # reported below
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        inside.set()
        assert not done.wait(0.2)  # the second writer is queued behind this one
    thread.join(10)

    assert errors == []
    rows = [v for (v,) in db.connection().execute("SELECT v FROM t ORDER BY rowid")]
    assert rows == [1, 2]


def test_check_ins_after_a_receipt_and_a_kill_9_lose_no_receipted_update(
    tiny_keras: Path, tmp_path: Path
) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    args = ["--model", str(tiny_keras), "--rounds-target", "3", "--deadline", "300"]
    with running(data, args, log) as server:
        url = server.url
        tokens = [
            requests.post(f"{url}/v1/devices", json={}, timeout=10).json()["token"]
            for _ in range(3)
        ]

        def ask(token: str, at: str) -> dict[str, Any]:
            answer = requests.post(f"{at}/v1/tasks", json={}, headers=auth(token), timeout=10)
            return dict(answer.json())

        base = ask(tokens[0], url)["task"]["base_checkpoint"]
        body = constant_update(1, base, 1.0)
        headers = {**auth(tokens[0]), "Content-Type": OCTET}
        receipt = requests.post(
            f"{url}/v1/rounds/1/updates", data=body, headers=headers, timeout=30
        )
        # After the receipt, only check-ins: none of them waits for the disk.
        for _ in range(20):
            for token in tokens:
                ask(token, url)
        server.kill_hard()

    with running(data, args, log) as restarted:
        current = requests.get(f"{restarted.url}/v1/rounds/current", timeout=10).json()
        again = requests.post(
            f"{restarted.url}/v1/rounds/1/updates", data=body, headers=headers, timeout=30
        )

    assert receipt.status_code == 201
    assert (current["round_id"], current["updates"]) == (1, 1)
    assert again.status_code == 200 and again.json() == receipt.json()
