"""The storage interface (fedge.server.storage.store) and its SQLite
implementation: what any other implementation must do alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedge.server.storage.devices import Conditions
from fedge.server.storage.rounds import StateChanged
from fedge.server.storage.sqlite.store import SQLiteStore, SQLiteTx
from fedge.server.storage.store import Store, Tx


def store_in(tmp_path: Path) -> Store:
    return SQLiteStore.open(tmp_path / "fedge.sqlite3")


def test_the_sqlite_store_offers_the_interface(tmp_path: Path) -> None:
    # Checked by mypy (the assignments) and at run time (the attributes).
    store: Store = SQLiteStore.open(tmp_path / "fedge.sqlite3")
    with store.reading() as tx:
        unit: Tx = tx
        assert isinstance(unit, SQLiteTx)
        for table in ("rounds", "selections", "updates", "checkpoints", "state", "events"):
            assert getattr(unit, table) is not None
        assert unit.devices.count() == 0


def test_a_transaction_ended_by_an_exception_leaves_nothing(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.state.set("key", "value")
        tx.devices.enrol("web", None, 1.0)
        tx.checkpoints.add("base", 0, "base.safetensors", 1)
        tx.rounds.insert("base", {}, 1.0, 60.0)
        raise RuntimeError("cut short")

    with store.reading() as tx:
        assert tx.state.get("key") is None
        assert tx.devices.count() == 0
        assert tx.rounds.active() is None
        assert tx.checkpoints.file_name("base") is None


def test_a_state_change_is_a_compare_and_set(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    with store.transaction() as tx:
        tx.checkpoints.add("base", 0, "base.safetensors", 1)
        opened = tx.rounds.insert("base", {"local_epochs": 1}, 1.0, 60.0)

    with store.transaction() as tx:
        tx.rounds.transition(opened.id, "open", "closing")
    with pytest.raises(StateChanged), store.transaction() as tx:
        tx.rounds.transition(opened.id, "open", "abandoned", closed_at=2.0)

    with store.reading() as tx:
        record = tx.rounds.get(opened.id)
    assert record is not None and (record.state, record.closed_at) == ("closing", None)


def test_a_commit_is_seen_by_its_listeners_and_the_next_reader(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    seen: list[int] = []
    store.on_commit(lambda tx: seen.append(tx.devices.count()))
    with store.transaction(durable=False) as tx:
        enrolment = tx.devices.enrol("web", None, 1.0)
        tx.devices.record_check_in(enrolment.device_id, Conditions(idle=True), 2.0)

    with store.reading() as tx:
        active = tx.devices.active(asked_since=2.0)
    assert seen == [1]
    assert (active.count, active.least_participations, active.least_served) == (1, 0, 1)
