"""An upload's body is read from the WSGI input in one piece of its
declared length (werkzeug's ``get_data`` reads 64 KiB at a time into a
growing buffer and copies that again), and a body shorter than its
``Content-Length`` is refused, not taken."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from fedge.server.api.common import binary_body


class CountingInput(io.BytesIO):
    """A WSGI input that records the sizes it was asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def _environ(body: bytes, declared: int | None) -> dict[str, object]:
    environ: dict[str, object] = {"wsgi.input": CountingInput(body)}
    if declared is not None:
        environ["CONTENT_LENGTH"] = str(declared)
    return environ


def test_a_declared_body_is_read_in_one_piece() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    environ = _environ(body, len(body))
    with Flask(__name__).test_request_context(
        "/", method="POST", environ_overrides=environ, content_type="application/octet-stream"
    ):
        assert binary_body(2 * len(body)) == body
    assert environ["wsgi.input"].asked == [len(body)]  # type: ignore[attr-defined]


def test_a_body_over_the_bound_is_413_and_not_read() -> None:
    body = b"x" * 4096
    environ = _environ(body, len(body))
    with (
        Flask(__name__).test_request_context("/", method="POST", environ_overrides=environ),
        pytest.raises(RequestEntityTooLarge),
    ):
        binary_body(1024)
    assert environ["wsgi.input"].asked == []  # type: ignore[attr-defined]


def test_a_body_shorter_than_its_content_length_is_refused() -> None:
    environ = _environ(b"x" * 100, 4096)
    with (
        Flask(__name__).test_request_context("/", method="POST", environ_overrides=environ),
        pytest.raises(BadRequest),
    ):
        binary_body(8192)
