"""Update segments (fedge.server.storage.segments): a torn tail is found
and never read as an update, a crash between a segment's write and its
rows' commit leaves nothing counted, and kill -9 of a real server in the
middle of concurrent uploads keeps every receipt, counted once."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedge.server.storage.segments import (
    BLOCK,
    FRAME,
    SegmentWriter,
    TornRecord,
    frame_header,
    read_record,
    remove_unreferenced,
    scan,
    segment_files,
)
from fedge.wire.update_codec import decode_checkpoint
from tests.helpers.live_server import running
from tests.helpers.stores import Stores
from tests.server.helpers import auth, constant_update, json_at, settled
from tests.server.http.test_http import Device
from tests.server.parts import Parts, PartsOn


def framed(*payloads: bytes) -> list[tuple[bytes, bytes]]:
    return [(frame_header(p), p) for p in payloads]


@pytest.fixture(params=["direct", "buffered"])
def io_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Segments written with O_DIRECT, and as on a file system without it."""
    if request.param == "buffered":
        monkeypatch.delattr(os, "O_DIRECT")
    return str(request.param)


def test_a_torn_tail_is_found_and_the_records_before_it_read(io_mode: str, tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path)
    first = writer.append(3, framed(b"one", b"two"))
    (third,) = writer.append(3, framed(b"three"))
    writer.close()
    path = tmp_path / third.segment
    # A crash in the middle of the next batch's write: half a frame.
    with open(path, "ab") as file:
        file.write(frame_header(b"four" * 100)[:20])

    found = scan(tmp_path, third.segment)

    assert found.records == [*first, third] and found.torn
    # Each batch starts on a block boundary (O_DIRECT's alignment), zeros between.
    assert [r.offset for r in found.records] == [0, FRAME.size + 3, BLOCK]
    assert [read_record(path, r.offset, r.length) for r in found.records] == [
        b"one",
        b"two",
        b"three",
    ]
    assert third.segment.startswith("r000003/") and segment_files(tmp_path) == [third.segment]


def test_altered_or_cut_records_are_errors_not_updates(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path)
    one, two = writer.append(1, framed(b"a" * 64, b"b" * 64))
    writer.close()
    path = tmp_path / one.segment
    data = bytearray(path.read_bytes())
    data[two.offset + FRAME.size + 10] ^= 0xFF  # one bit of the second payload
    path.write_bytes(bytes(data))

    with pytest.raises(TornRecord, match="do not match their digest"):
        read_record(path, two.offset, two.length)
    with pytest.raises(TornRecord, match="no record of 65 bytes"):
        read_record(path, one.offset, 65)
    assert scan(tmp_path, one.segment).records == [one]
    path.write_bytes(bytes(data[: two.offset + FRAME.size + 3]))
    with pytest.raises(TornRecord, match="3 of 64 bytes"):
        read_record(path, two.offset, two.length)


def test_a_process_never_appends_to_an_earlier_segment(tmp_path: Path) -> None:
    earlier = SegmentWriter(tmp_path)
    (old,) = earlier.append(1, framed(b"x"))
    earlier.close()

    (new,) = SegmentWriter(tmp_path).append(1, framed(b"y"))

    assert new.segment != old.segment and new.offset == 0


def test_a_shared_directory_keeps_the_open_round_s_unreferenced_segments(tmp_path: Path) -> None:
    """Another worker's batch of the open round is on disk before its rows
    commit: a worker that recovers meanwhile must not delete it; an older
    round's segment that no row points into goes."""
    (closed,) = SegmentWriter(tmp_path).append(1, framed(b"lost"))
    (in_flight,) = SegmentWriter(tmp_path).append(2, framed(b"not committed yet"))
    (kept,) = SegmentWriter(tmp_path).append(2, framed(b"committed"))

    removed = remove_unreferenced(tmp_path, [kept.segment], spare_round=2)

    assert removed == [closed.segment]
    assert segment_files(tmp_path) == sorted([in_flight.segment, kept.segment])
    assert remove_unreferenced(tmp_path, [kept.segment]) == [in_flight.segment]


def contribute(parts: Parts, values: list[float]) -> None:
    for value in values:
        device = parts.device()
        base = parts.task(device)["base_checkpoint"]
        parts.ingest.accept(device, 1, constant_update(1, base, value))


def test_bytes_a_crash_left_without_rows_are_never_counted(
    parts_on: PartsOn, tmp_path: Path
) -> None:
    before = parts_on(tmp_path, rounds={"target_participants": 4})
    contribute(before, [1.0, 3.0])
    (live,) = segment_files(before.updates_dir)
    uncommitted = constant_update(1, before.lifecycle.model.checkpoint_id, 50.0)
    # Cut off after its write, before its commit: a whole record, no row...
    with open(before.updates_dir / live, "ab") as file:
        file.write(frame_header(uncommitted) + uncommitted)
    # ... and a torn one after it; and a batch's own segment, never committed.
    with open(before.updates_dir / live, "ab") as file:
        file.write((frame_header(uncommitted) + uncommitted)[:-7])
    orphan = SegmentWriter(before.updates_dir)
    (stray,) = orphan.append(1, framed(uncommitted))
    orphan.close()

    after = parts_on(tmp_path, rounds={"target_participants": 4})

    assert after.round_sum.count == 2
    np.testing.assert_allclose(after.round_sum.mean.result()["dense/bias"], [2.0, 2.0])
    assert scan(after.updates_dir, live).torn
    assert not (after.updates_dir / stray.segment).exists()
    contribute(after, [5.0, 7.0])  # the round goes on, into a new segment
    after.lifecycle.drive()
    closed = after.round(1)
    assert closed.state == "closed" and closed.result_checkpoint is not None
    weights = after.lifecycle.model.weights
    assert after.lifecycle.model.checkpoint_id == closed.result_checkpoint
    np.testing.assert_allclose(weights["dense/bias"], [4.0, 4.0])  # (1 + 3 + 5 + 7) / 4
    assert len(segment_files(after.updates_dir)) == 2


DEVICES = 40
KILL_AFTER = 12


def test_kill_9_during_concurrent_uploads_keeps_every_receipt_once(
    stores: Stores, tiny_keras: Path, tmp_path: Path
) -> None:
    data, log = tmp_path / "data", tmp_path / "server.log"
    url = stores.url(data)
    args = [
        "--model", str(tiny_keras), "--rounds-target", str(DEVICES), "--rounds-min", "1",
        "--deadline", "3600", *([] if url is None else ["--database", url]),
    ]  # fmt: skip
    values = [0.1 * (i + 1) for i in range(DEVICES)]
    receipts: dict[int, dict[str, Any]] = {}
    enough = threading.Event()

    with running(data, args, log) as server:
        devices = [Device(server.url) for _ in range(DEVICES)]
        base = devices[0].task()["base_checkpoint"]
        for device in devices[1:]:
            device.task()
        bodies = [constant_update(1, base, v) for v in values]

        def upload(index: int) -> None:
            try:
                reply = devices[index].upload(server.url, 1, bodies[index])
            except requests.RequestException:
                return  # cut off by the kill: never acknowledged
            if reply.status_code == 201:
                receipts[index] = reply.json()
                if len(receipts) >= KILL_AFTER:
                    enough.set()

        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(upload, i) for i in range(DEVICES)]
            assert enough.wait(60)
            server.kill_hard()  # uploads in flight
            for future in pending:
                future.result()
    assert KILL_AFTER <= len(receipts) < DEVICES

    with running(data, args, log) as server:
        current = json_at(server.url)("/v1/rounds/current")
        assert current["round_id"] == 1 and current["updates"] >= len(receipts)
        # Each acknowledged upload is stored: its retry gets the first receipt.
        for index, receipt in receipts.items():
            again = devices[index].upload(server.url, 1, bodies[index])
            assert again.status_code == 200 and again.json() == receipt
        # The rest (some stored unacknowledged) send again; the round closes
        # at 40 with each update once in the mean.
        for index in sorted(set(range(DEVICES)) - set(receipts)):
            reply = devices[index].upload(server.url, 1, bodies[index])
            assert reply.status_code in (200, 201), reply.text
        closed = settled(json_at(server.url), 1)
        body = requests.get(
            f"{server.url}/v1/checkpoints/{closed['result_checkpoint']}",
            headers=auth(devices[0].token),
            timeout=10,
        ).content
    assert closed["state"] == "closed" and closed["metrics"]["updates"] == DEVICES
    np.testing.assert_allclose(
        decode_checkpoint(body).weights["dense/bias"], [np.mean(values)] * 2, rtol=1e-5
    )
