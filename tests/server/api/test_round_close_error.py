"""A round's ``close_error`` is shown while the round is in progress, and
not once it has ended: the driver forgets the failure only after the
closing commit, and a read in between used to show a closed round with
the error of its earlier failed attempt."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from fedge.server.http.context import context_of
from fedge.server.rounds.driver import CloseFailure


def test_close_error_is_shown_only_while_the_round_is_in_progress(app: Flask, client: Any) -> None:
    coordinator = context_of(app).coordinator
    # As after a failed attempt: retried later (not before this test ends).
    coordinator.lifecycle.close_failure = CloseFailure(
        1, 1, "OSError: disk full", time.time() + 600
    )

    during = client.get("/v1/rounds/1").get_json()
    assert during["state"] == "open" and during["close_error"]["attempts"] == 1

    # The closing commit has happened; the driver has not yet forgotten the failure.
    with context_of(app).store.transaction() as tx:
        tx.rounds.transition(1, "open", "closed", closed_at=time.time())
    after = client.get("/v1/rounds/1").get_json()
    assert after["state"] == "closed"
    assert "close_error" not in after
