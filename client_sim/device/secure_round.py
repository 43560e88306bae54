"""A device's part in a secure round (``task["secure_aggregation"]``).

The device trains as for any round; then, instead of uploading its delta,
it clips it (each value to the task's range, and the whole to ``l2_clip``
when the server adds central DP), and runs the four stages of
:mod:`fedge.secagg` over HTTP, asking again while a stage's message is not
ready (202). ``stop_after`` makes it vanish after a stage, as a device that
loses its connection does (tests and simulations of dropouts).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.client_sim.device.client import FedgeClient, ProtocolError
from fedge.secagg import (
    KeyDirectory,
    SecAggDevice,
    SecAggError,
    ShareInbox,
    UnmaskRequest,
)
from fedge.wire.update_codec import Weights

STAGES = ("keys", "shares", "masked", "unmask")


class SecureRoundError(Exception):
    """The secure round ended before this device's part did (abandoned,
    failed, or this device was dropped)."""


@dataclass(frozen=True)
class SecureRoundOutcome:
    round_id: int
    stages_done: tuple[str, ...]
    bytes_up: int


def flat_clipped(deltas: Weights, secure: dict[str, Any]) -> npt.NDArray[Any]:
    """The delta as one float64 vector in the task's order, L2-clipped to
    ``l2_clip`` (if any); each value is clipped later, when quantised."""
    flat: npt.NDArray[Any] = np.concatenate(
        [np.asarray(deltas[n], np.float64).reshape(-1) for n in secure["weights"]]
    )
    bound = secure.get("l2_clip")
    if bound is not None:
        norm = float(np.linalg.norm(flat))
        # A hair under the bound: quantisation may add its error on top.
        limit = 0.999 * float(bound)
        if norm > limit:
            flat *= limit / norm
    return flat


def run_secure_round(
    client: FedgeClient,
    task: dict[str, Any],
    deltas: Weights,
    *,
    poll_s: float = 0.05,
    timeout_s: float = 120.0,
    stop_after: str | None = None,
) -> SecureRoundOutcome:
    secure = task["secure_aggregation"]
    round_id = task["round_id"]
    url = secure["url"]
    values = flat_clipped(deltas, secure)
    device = SecAggDevice(client.device_id, round_id)
    deadline = time.monotonic() + timeout_s
    done: list[str] = []
    started_up = client.bytes_up

    def wait(path: str) -> Any:
        while True:
            reply = client.conditional_get(f"{url}/{path}", None)
            if reply.status == 200:
                return reply.json()
            stage = reply.json().get("stage")
            if stage in ("abandoned", "failed") or time.monotonic() > deadline:
                raise SecureRoundError(f"round {round_id} is {stage}: this device's part ends")
            time.sleep(poll_s)

    def send(path: str, body: bytes) -> None:
        """POST a JSON message; its bytes count as this round's upload."""
        client.post_json(path, json.loads(body))
        client.bytes_up += len(body)

    def finished(stage: str) -> bool:
        done.append(stage)
        return stop_after == stage

    try:
        send(f"{url}/keys", device.advertise().to_json())
        if finished("keys"):
            return SecureRoundOutcome(round_id, tuple(done), client.bytes_up - started_up)
        directory = KeyDirectory.from_json(wait("directory"))
        _check_params(directory, secure, values.size)
        send(f"{url}/shares", device.share_keys(directory).to_json())
        if finished("shares"):
            return SecureRoundOutcome(round_id, tuple(done), client.bytes_up - started_up)
        inbox = ShareInbox.from_json(wait("inbox"), client.device_id)
        client.post_bytes(f"{url}/masked", device.masked_input(inbox, values).to_bytes())
        if finished("masked"):
            return SecureRoundOutcome(round_id, tuple(done), client.bytes_up - started_up)
        request = UnmaskRequest.from_json(wait("unmask"))
        send(f"{url}/unmask", device.unmask(request).to_json())
        finished("unmask")
    except (ProtocolError, SecAggError) as exc:
        raise SecureRoundError(f"round {round_id}, after {done}: {exc}") from exc
    return SecureRoundOutcome(round_id, tuple(done), client.bytes_up - started_up)


def _check_params(directory: KeyDirectory, secure: dict[str, Any], length: int) -> None:
    """The server's params must be the ones the task announced: a server
    cannot widen the clipping range or shorten the vector unseen."""
    params = directory.params
    if params.clip != secure["clip"] or params.dropout != secure["dropout"]:
        raise SecAggError("the round's params are not the ones its task announced")
    if params.length != length:
        raise SecAggError(f"the round masks {params.length} values, this update has {length}")
