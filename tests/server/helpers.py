"""Builders for server tests: a tiny model with hand-checkable numbers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from flask import Flask

from fedge.server.http.app import InitialModel
from fedge.server.http.context import context_of
from fedge.server.storage.sqlite.database import Database
from fedge.server.storage.sqlite.store import SQLiteStore
from fedge.wire.update_codec import Update, UpdateMeta, encode_update
from fedge.wire.weight_spec import ModelSpec, WeightSpec

SPECS = ModelSpec(
    (WeightSpec("dense/kernel", (2, 2), "float32"), WeightSpec("dense/bias", (2,), "float32"))
)
SHAPES = {"dense/kernel": (2, 2), "dense/bias": (2,)}


def rows_of(app: Flask, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """A test's own query on the app's store, either kind (``?`` parameters)."""
    with context_of(app).store.reading() as tx:
        return list(tx.connection.execute(sql, params).fetchall())  # type: ignore[attr-defined]


def database_of(app: Flask) -> Database:
    """The SQLite file behind the app's Store, for a test's own SQL."""
    store = context_of(app).store
    assert isinstance(store, SQLiteStore)
    return store.db


def tiny_model() -> InitialModel:
    """Two weights, all zeros: a new checkpoint equals the aggregated delta."""
    return InitialModel(
        name="tiny",
        specs=SPECS,
        weights={name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()},
    )


def constant_update(
    round_id: int,
    base: str,
    value: float,
    num_examples: int = 1,
    overrides: dict[str, Any] | None = None,
) -> bytes:
    """Every delta element equals ``value`` (``overrides`` replaces tensors)."""
    deltas: dict[str, Any] = {n: np.full(shape, value, np.float32) for n, shape in SHAPES.items()}
    deltas.update(overrides or {})
    meta = UpdateMeta(
        round_id=round_id, base_checkpoint=base, num_examples=num_examples, metrics={"loss": 1.0}
    )
    return encode_update(Update(meta=meta, deltas=deltas))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OCTET = "application/octet-stream"


def settled(fetch: Callable[[str], Any], round_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """The round once the server's round driver has ended it (closed, failed
    or abandoned): rounds close in the background, not in the request that
    completed them. ``fetch(path)`` returns parsed JSON."""
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = fetch(f"/v1/rounds/{round_id}")
        if record["state"] not in ("open", "closing") or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def json_of(client: Any) -> Callable[[str], Any]:
    """``fetch`` for :func:`settled` from a test client (Flask's or HTTP)."""
    return lambda path: client.get(path).get_json()


def json_at(url: str) -> Callable[[str], Any]:
    """``fetch`` for :func:`settled` from a server's base URL."""
    import requests

    return lambda path: requests.get(url + path, timeout=10).json()


def join(client: Any, token: str) -> dict[str, Any]:
    """Ask for a task with the device's token; the task (a test fails without one)."""
    response = client.post("/v1/tasks", json={"idle": True}, headers=auth(token))
    assert response.status_code == 200, response.get_json()
    task: dict[str, Any] | None = response.get_json()["task"]
    assert task is not None, response.get_json()
    return task


def upload(client: Any, token: str, round_id: int, body: bytes) -> Any:
    """POST an update's bytes to its round with the device's token."""
    return client.post(
        f"/v1/rounds/{round_id}/updates", data=body, headers=auth(token), content_type=OCTET
    )
