"""The storage interface (fedge.server.storage.store) and its SQLite
implementation: what any other implementation must do alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fedge.server.events.feed import EventFeed
from fedge.server.storage.devices import Conditions
from fedge.server.storage.rounds import StateChanged
from fedge.server.storage.sql import error_translator
from fedge.server.storage.sqlite.errors import store_error
from fedge.server.storage.sqlite.store import SQLiteStore, SQLiteTx
from fedge.server.storage.store import Store, StoreError, StoreFull, StoreUnavailable, Tx


def store_in(tmp_path: Path) -> Store:
    return SQLiteStore.open(tmp_path / "fedge.sqlite3")


def test_the_sqlite_store_offers_the_interface(tmp_path: Path) -> None:
    # Checked by mypy (the assignments) and at run time (the attributes).
    store: Store = SQLiteStore.open(tmp_path / "fedge.sqlite3")
    with store.reading() as tx:
        unit: Tx = tx
        assert isinstance(unit, SQLiteTx)
        tables = ("rounds", "selections", "updates", "checkpoints", "state", "events")
        for table in (*tables, "releases", "canary"):
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


def test_a_broken_constraint_is_a_store_error_not_the_drivers(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    with store.transaction() as tx:
        enrolment = tx.devices.enrol("web", None, 1.0)
        tx.checkpoints.add("base", 0, "base.safetensors", 1)
        round_id = tx.rounds.insert("base", {}, 1.0, 60.0).id
        tx.selections.add(round_id, enrolment.device_id, 1.0)

    with pytest.raises(StoreError) as raised, store.transaction() as tx:
        tx.selections.add(round_id, enrolment.device_id, 2.0)  # the same seat twice

    assert not isinstance(raised.value, sqlite3.Error)
    with store.reading() as tx:
        assert tx.selections.count(round_id) == 1


def test_sqlite_errors_map_to_the_stores_kinds() -> None:
    assert isinstance(store_error(sqlite3.OperationalError("database or disk is full")), StoreFull)
    locked = store_error(sqlite3.OperationalError("database is locked"))
    assert isinstance(locked, StoreUnavailable)
    other = store_error(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert type(other) is StoreError
    assert str(other) == "UNIQUE constraint failed"


def test_releases_write_their_events_in_the_same_unit_of_work(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.releases.insert(
            bundle_id="b" * 64,
            name="m",
            source="push",
            state="live",
            percent=100.0,
            notes="",
            forced_reason=None,
            created_by="admin",
        )
        raise RuntimeError("cut short")
    with store.reading() as tx:
        assert tx.releases.empty() and tx.events.latest_id() == 0

    with store.transaction() as tx:
        first = tx.releases.insert(
            bundle_id=None,
            name="m",
            source="round:1",
            state="building",
            percent=10.0,
            notes="",
            forced_reason=None,
            created_by="admin",
        )
        assert tx.releases.set_failed(first.version, "boom", expected="live") is None
        failed = tx.releases.set_failed(first.version, "boom", expected="building")
    assert failed is not None and (failed.state, failed.error) == ("failed", "boom")
    with store.reading() as tx:
        kinds = [row.kind for row in tx.events.after(0, 10)]
        assert kinds == ["release", "release"]
        assert tx.releases.has_source("round:1") and tx.releases.versions_in_state("building") == []


def test_the_event_feed_survives_an_unreadable_counter() -> None:
    class Broken:
        def last_assigned_id(self) -> int:
            raise StoreUnavailable("database is locked")

    class BrokenTx:
        events = Broken()

    feed = EventFeed()
    before = feed.generation
    feed.committed(BrokenTx())  # type: ignore[arg-type]  # only events is read

    assert feed.generation == before + 1  # everyone woken, to be safe


def test_the_translator_chains_driver_errors_and_lets_the_rest_pass() -> None:
    translated = error_translator(KeyError, lambda exc: StoreUnavailable(f"lost: {exc}"))

    with pytest.raises(StoreUnavailable) as raised, translated(), translated():  # nested
        raise KeyError("row")
    with pytest.raises(ValueError), translated():
        raise ValueError("not the driver's")
    with translated():
        pass

    assert isinstance(raised.value.__cause__, KeyError)
    assert str(raised.value) == "lost: 'row'"
