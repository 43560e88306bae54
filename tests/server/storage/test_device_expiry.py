"""Devices never seen again expire (``device_ttl_s``), without losing any
device that holds something in progress; the device count is kept by each
enrolment and expiry (no scan of the table) and is right after a restart."""

from __future__ import annotations

from pathlib import Path

from fedge.server.devices.expiry import expire_devices
from fedge.server.storage.blobs import BlobStores
from fedge.server.storage.devices import Enrolment, hash_token
from fedge.server.storage.rounds import UpdateRecord
from fedge.server.storage.sqlite.store import SQLiteStore
from fedge.wire.health import HealthReport

DAY = 86400.0
TTL = 30 * DAY
NOW = 1_000 * DAY


def enrol(store: SQLiteStore, at: float, platform: str = "test") -> Enrolment:
    with store.transaction() as tx:
        return tx.devices.enrol(platform, None, at)


def known(store: SQLiteStore, enrolment: Enrolment) -> bool:
    with store.reading() as tx:
        return tx.devices.by_token_hash(hash_token(enrolment.token)) is not None


def scanned_count(store: SQLiteStore) -> int:
    with store.reading() as tx:
        (count,) = tx.connection.execute("SELECT COUNT(*) FROM devices").fetchone()
    return int(count)


def test_unseen_devices_expire_and_recent_ones_stay(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "db.sqlite3")
    gone = [enrol(store, NOW - TTL - 60) for _ in range(3)]
    recent = enrol(store, NOW - TTL + 60)

    assert expire_devices(store, TTL, NOW) == 3

    assert not any(known(store, device) for device in gone)
    assert known(store, recent)
    with store.reading() as tx:
        assert tx.devices.count() == 1 == scanned_count(store)


def test_a_device_in_the_round_in_progress_is_not_lost(tmp_path: Path) -> None:
    store = SQLiteStore.open(tmp_path / "db.sqlite3")
    seated, uploaded, idle = (enrol(store, NOW - 2 * TTL) for _ in range(3))
    with store.transaction() as tx:
        tx.checkpoints.add("base", 0, "base.safetensors", 1)
        round_id = tx.rounds.insert("base", {}, NOW, 60.0).id
        tx.selections.add(round_id, seated.device_id, NOW)
        tx.selections.add(round_id, uploaded.device_id, NOW)
        tx.updates.insert(
            UpdateRecord(
                round_id, uploaded.device_id, "digest", 10, 1.0, False, "u.bin", 8, {}, NOW
            )
        )

    assert expire_devices(store, TTL, NOW) == 1

    assert known(store, seated) and known(store, uploaded) and not known(store, idle)
    # Once the round has ended and the update's file is cleared, they go too.
    with store.transaction() as tx:
        tx.rounds.transition(round_id, "open", "abandoned")
        tx.updates.forget_files_through(round_id)
    assert expire_devices(store, TTL, NOW) == 2
    with store.reading() as tx:
        assert tx.devices.count() == 0 == scanned_count(store)
        assert tx.updates.count(round_id) == 0


def test_the_count_survives_a_restart_and_is_rebuilt_if_missing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore.open(path)
    for _ in range(5):
        enrol(store, NOW)
    store.close_thread_connection()

    reopened = SQLiteStore.open(path)
    with reopened.reading() as tx:
        assert tx.devices.count() == 5
    with reopened.transaction() as tx:
        tx.connection.execute("DELETE FROM server_state WHERE key = 'device_count'")
    reopened.close_thread_connection()
    with SQLiteStore.open(path).reading() as tx:
        assert tx.devices.count() == 5


def test_enrolment_does_not_count_every_device(tmp_path: Path) -> None:
    """Issue 22: each enrolment ran ``SELECT COUNT(*) FROM devices``."""
    from fedge.server.config import load_config
    from fedge.server.metrics import server_metrics
    from fedge.server.rounds.coordinator import Coordinator
    from fedge.server.rounds.initial_model import load_initial_weights

    store = SQLiteStore.open(tmp_path / "db.sqlite3")
    name, specs, weights = load_initial_weights(None, 0)
    config = load_config(environ={}, overrides={"data_dir": tmp_path / "data"})
    coordinator = Coordinator(
        config, store, specs, weights, server_metrics(), name, BlobStores.under(config.data_dir)
    )
    statements: list[str] = []
    store.db.connection().set_trace_callback(statements.append)

    coordinator.enrol("test", None)

    store.db.connection().set_trace_callback(None)
    scans = [s for s in statements if "COUNT(*)" in s.upper() and "DEVICES" in s.upper()]
    assert scans == [], scans


def test_a_device_with_health_reports_expires_with_them(tmp_path: Path) -> None:
    # The health reports reference the device: an expiry that left them
    # would break the foreign key and stop every later sweep.
    store = SQLiteStore.open(tmp_path / "db.sqlite3")
    reporter = enrol(store, NOW - 2 * TTL)
    report = HealthReport("accuracy", 0.5, 0.9, 12, "tflite", (3, 9), None)
    with store.transaction() as tx:
        tx.connection.execute(
            "INSERT INTO releases (version, name, source, state, created_at, created_by) "
            "VALUES (1, 'r1', 'push', 'live', ?, 'admin')",
            (NOW - 2 * TTL,),
        )
        tx.health.insert(1, reporter.device_id, 0, report, NOW - 2 * TTL)

    assert expire_devices(store, TTL, NOW) == 1

    assert not known(store, reporter)
    with store.reading() as tx:
        assert tx.health.in_window(1, 0) == []
