"""The server-sent-events wire format: what the server writes, devices read back."""

from __future__ import annotations

import pytest

from fedge.wire.sse import Event, SSEDecoder, comment, position


def _events(decoder: SSEDecoder, raw: bytes) -> list[Event]:
    return [message.to_event() for message in decoder.feed(raw)]


def test_an_event_round_trips_through_the_wire_format() -> None:
    event = Event(7, "round", {"round_id": 3, "state": "closed", "metrics": {"updates": 2}})
    decoder = SSEDecoder()

    received = _events(decoder, event.encode())

    assert received == [event]
    assert decoder.last_id == "7"
    assert event.encode() == (
        b'id: 7\nevent: round\ndata: {"round_id":3,"state":"closed","metrics":{"updates":2}}\n\n'
    )


def test_chunks_split_anywhere_decode_the_same() -> None:
    events = [Event(i, "release", {"version": i, "note": "a\nb: c"}) for i in (1, 2, 3)]
    raw = position(0, retry_ms=1500) + b"".join(e.encode() + comment("keepalive") for e in events)
    decoder = SSEDecoder()

    received = [e for i in range(len(raw)) for e in _events(decoder, raw[i : i + 1])]

    assert received == events
    assert decoder.retry_ms == 1500
    assert decoder.last_id == "3"


def test_crlf_multi_line_data_comments_and_an_id_without_data() -> None:
    raw = (
        b': hello\r\nid: 5\r\nevent: rollout\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"id: 9\r\n\r\nretry: 2500\n\n"
    )
    decoder = SSEDecoder()

    messages = decoder.feed(raw)

    one_byte_at_a_time = SSEDecoder()
    split = [m for i in range(len(raw)) for m in one_byte_at_a_time.feed(raw[i : i + 1])]

    assert [(m.id, m.event, m.data) for m in messages] == [("5", "rollout", '{"a":\n1}')]
    assert split == messages
    # The id-only block moves the position without an event (as EventSource does).
    assert decoder.last_id == one_byte_at_a_time.last_id == "9"
    assert decoder.retry_ms == 2500


def test_lone_cr_line_ends_and_a_missing_space_after_the_colon() -> None:
    decoder = SSEDecoder()

    messages = decoder.feed(b"id:4\revent:round\rdata:{}\r\r")

    assert [(m.id, m.event, m.data) for m in messages] == [("4", "round", "{}")]


def test_a_message_that_is_not_a_fedge_event_is_refused() -> None:
    decoder = SSEDecoder()
    (message,) = decoder.feed(b"data: [1, 2]\n\n")

    with pytest.raises(ValueError, match="id"):
        message.to_event()


def test_the_position_moves_only_when_a_block_is_whole() -> None:
    decoder = SSEDecoder()
    decoder.feed(Event(1, "round", {}).encode())

    decoder.feed(b"id: 2\nevent: round\n")  # the stream is cut here

    assert decoder.last_id == "1"  # a reconnect asks for event 2 again
