"""The reference task for fleets larger than its data: ``fedge simulate
--devices 1000 --per-round 100`` (the command the docs give) picks the
shards itself and says so; where the options still ask for the impossible,
the error names the options that fix it."""

from __future__ import annotations

import pytest

from fedge.client_sim.data.fleet_data import reference_data
from fedge.errors import ConfigError
from fedge.reference.data import PUBLIC_FRACTION


def test_more_devices_than_the_data_gives_picks_shards_itself() -> None:
    data = reference_data(1000, 0.5, 0, 4, "image", PUBLIC_FRACTION)

    assert len(data.devices) == 1000
    assert all(len(device.train.y) + len(device.holdout.y) >= 4 for device in data.devices)
    # Said in the run's summary line, with the option that sets it.
    assert "shards shared round-robin" in data.partition
    assert "--data-shards" in data.partition


def test_too_many_shards_names_the_options_that_fix_it() -> None:
    with pytest.raises(ConfigError) as caught:
        reference_data(1000, 0.5, 0, 4, "image", PUBLIC_FRACTION, shards=900)

    message = str(caught.value)
    for option in ("--data-shards", "--min-examples", "--public-fraction"):
        assert option in message
