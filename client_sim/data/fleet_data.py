"""The devices' data and the global test split, for the reference task or the user's.

The reference task is the hybrid story: the digits' training split is cut
into a public part, which the team trains on centrally before deploying
(:func:`fedge.reference.data.public_split`), and a private part spread over the
devices with Dirichlet label skew, each device writing in its own
handwriting style (:mod:`fedge.client_sim.data.partition`). The global test split is the
digits' test split, as written (no device's style).

The user's data (``--data``) is read and split by :mod:`fedge.client_sim.data.user_data`
and :mod:`fedge.client_sim.data.federated_split`, with the labels the bundle's training
record asks for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedge.bundle.manifest import Manifest
from fedge.client_sim.data.federated_split import FederatedData, SplitConfig, federate
from fedge.client_sim.data.partition import HandwritingStyle, PartitionConfig, partition
from fedge.client_sim.data.user_data import LabelSpec, load_dataset
from fedge.errors import ConfigError
from fedge.reference.data import PUBLIC_FRACTION, Split, load_task, public_split
from fedge.task.examples import DeviceExamples, Examples
from fedge.task.objective import Objective


def reference_data(
    num_devices: int,
    alpha: float,
    seed: int,
    min_examples: int,
    input_name: str,
    public_fraction: float = PUBLIC_FRACTION,
    shards: int | None = None,
) -> FederatedData:
    """The digits' private part over ``num_devices`` devices, in their styles.

    ``shards``: cut the data into this many shards, and give device ``i``
    the examples of shard ``i % shards`` in a handwriting style of its own:
    a fleet larger than the data it has (the digits' 1,438 private examples
    cannot give 10,000 devices one each). Devices that share a shard still
    differ, so their updates do too (the server refuses the same bytes from
    two devices). ``None``: one shard per device, or, when the devices
    outnumber what the data can give ``min_examples`` each, as many shards
    as it can (the summary says how many)."""
    task = load_task(seed=seed)
    _, private = public_split(task.train, public_fraction, seed)
    distinct = _shard_count(num_devices, shards, min_examples, len(private.y))
    picked = shards is None and distinct < num_devices
    parts = partition(
        private.y,
        PartitionConfig(num_devices=distinct, alpha=alpha, seed=seed, min_examples=min_examples),
    )
    devices = []
    for index in range(num_devices):
        if index < distinct:
            data = parts.device_data(index, private)
            train, holdout = data.train, data.holdout
        else:
            shard = parts.shards[index % distinct]
            style = HandwritingStyle.draw(np.random.default_rng((seed, index)))
            train, holdout = (
                Split(x=style.apply(private.x[i]), y=private.y[i])
                for i in (shard.train_indices, shard.holdout_indices)
            )
        devices.append(
            DeviceExamples(
                train=Examples.of_split(train, input_name),
                holdout=Examples.of_split(holdout, input_name),
            )
        )
    return FederatedData(
        devices=tuple(devices),
        test=Examples.of_split(task.test, input_name),
        device_names=tuple(str(i) for i in range(num_devices)),
        partition=f"dirichlet(alpha={alpha:g}), handwriting styles"
        + ("" if distinct == num_devices else f", {distinct} shards shared round-robin")
        + (" (picked for the data: set them with --data-shards)" if picked else ""),
    )


def _shard_count(devices: int, shards: int | None, min_examples: int, examples: int) -> int:
    """The distinct shards: ``shards`` (at most one per device), else one
    per device while the data lasts, else as many as it can fill."""
    fits = examples // min_examples
    wanted = devices if shards is None else min(shards, devices)
    if shards is None and fits >= 1:
        return min(wanted, fits)
    if wanted > fits:
        raise ConfigError(
            f"{wanted} shards x {min_examples} examples each need {wanted * min_examples} "
            f"examples; the devices' part of the digits has {examples}: give --data-shards "
            f"{max(1, fits)} or fewer, a smaller --min-examples, or a smaller "
            "--public-fraction (more of the digits on the devices)"
        )
    return wanted


def label_spec(manifest: Manifest, objective: Objective) -> LabelSpec:
    """The labels the bundle's training artifact takes."""
    output = manifest.outputs[0].shape[1:]
    shape = tuple(int(d or 1) for d in output)
    if objective.takes_class_ids:
        return LabelSpec(
            kind="class_ids",
            shape=(),
            num_classes=shape[-1] if shape else None,
            class_names=manifest.labels,
        )
    return LabelSpec(kind="targets", shape=shape, num_classes=None, class_names=manifest.labels)


def user_data(
    path: Path, manifest: Manifest, objective: Objective, config: SplitConfig
) -> FederatedData:
    """The user's file or image folder, split over devices as its device ids
    (or ``config``) say."""
    label = label_spec(manifest, objective)
    return federate(load_dataset(path, manifest.inputs, label), label, config)
