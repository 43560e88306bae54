"""Plays a whole secure round in process, with dropouts at chosen stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fedge.secagg import SecAggAggregator, SecAggDevice, SecAggResult
from fedge.secagg.quantise import quantise


@dataclass
class Played:
    result: SecAggResult
    inputs: dict[str, npt.NDArray[Any]]
    devices: dict[str, SecAggDevice]
    aggregator: SecAggAggregator
    transcript: list[object] = field(default_factory=list)


def play(
    n: int,
    length: int = 50,
    *,
    dropout: float = 0.3,
    clip: float = 1.0,
    before_sharing: frozenset[int] = frozenset(),
    after_sharing: frozenset[int] = frozenset(),
    after_upload: frozenset[int] = frozenset(),
    seed: int = 0,
) -> Played:
    """Devices in ``before_sharing`` advertise keys and go; ``after_sharing``
    send shares and go; ``after_upload`` upload and never answer unmasking."""
    rng = np.random.default_rng(seed)
    ids = [f"device-{i:03d}" for i in range(n)]
    devices = {d: SecAggDevice(d, round_id=7) for d in ids}
    inputs = {d: rng.uniform(-1.5 * clip, 1.5 * clip, length) for d in ids}
    aggregator = SecAggAggregator(7, dropout=dropout, clip=clip, length=length)
    transcript: list[object] = []
    for d, device in devices.items():
        advert = device.advertise()
        transcript.append(advert)
        aggregator.advertise(d, advert)
    aggregator.close_advertising()
    gone = {ids[i] for i in before_sharing}
    for d, device in devices.items():
        if d not in gone:
            directory = aggregator.directory_for(d)
            bundle = device.share_keys(directory)
            transcript += [directory, bundle]
            aggregator.submit_shares(bundle)
    aggregator.close_sharing()
    gone |= {ids[i] for i in after_sharing}
    for d, device in devices.items():
        if d not in gone:
            inbox = aggregator.inbox_for(d)
            masked = device.masked_input(inbox, inputs[d])
            transcript += [inbox, masked]
            aggregator.submit_masked(d, masked)
    request = aggregator.close_upload()
    transcript.append(request)
    gone |= {ids[i] for i in after_upload}
    for d, device in devices.items():
        if d not in gone:
            response = device.unmask(aggregator.unmask_request_for(d))
            transcript.append(response)
            aggregator.submit_unmask(d, response)
    result = aggregator.finish()
    return Played(result, inputs, devices, aggregator, transcript)


def plain_sum(played: Played, survivors: list[str]) -> npt.NDArray[Any]:
    """The exact integer sum of the survivors' quantised inputs, mod 2^32."""
    total = np.zeros(played.result.params.length, dtype=np.uint64)
    for d in survivors:
        total += quantise(played.inputs[d], played.result.params)
    return (total % (1 << 32)).astype(np.uint32)
