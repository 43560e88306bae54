"""The fleet's data: the devices' shares and the global test split, for the
reference task or for the user's ``--data`` (:mod:`fedge.client_sim.data`)."""

from __future__ import annotations

from fedge.bundle.manifest import Manifest
from fedge.client_sim.data.federated_split import FederatedData, SplitConfig
from fedge.client_sim.data.fleet_data import reference_data, user_data
from fedge.client_sim.fleet.config import DEFAULT_DEVICES, FleetConfig
from fedge.errors import ConfigError
from fedge.task.objective import Objective


def fleet_data(config: FleetConfig, manifest: Manifest, objective: Objective) -> FederatedData:
    """The devices' data for the model of ``manifest`` (trained to ``objective``)."""
    input_name = manifest.inputs[0].name
    if config.data is None:
        from fedge.reference.weights import is_reference_model

        if not (config.smooth_model or is_reference_model(manifest.name, manifest.weights)):
            raise ConfigError(
                f"the model {manifest.name!r} is not the reference digits CNN: "
                "give its devices' data with --data"
            )
        return reference_data(
            config.devices or DEFAULT_DEVICES,
            config.alpha,
            config.seed,
            config.min_examples,
            input_name,
            config.public_fraction,
            config.data_shards,
        )
    split = SplitConfig(
        num_devices=config.devices,
        alpha=config.alpha,
        test_fraction=config.test_fraction,
        holdout_fraction=config.holdout_fraction,
        min_examples=config.min_examples,
        seed=config.seed,
    )
    return user_data(config.data, manifest, objective, split)
