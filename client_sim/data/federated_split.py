"""Split a user's :class:`~fedge.client_sim.data.user_data.Dataset` across simulated devices.

Three stages, each drawn from one ``numpy.random.default_rng(seed)``::

    all examples ──► global test split (stratified by class for class ids)
         │
         └─ the rest ──► devices ──► each device: train | holdout

The devices are, in order of preference:

* **natural**: the data names each example's device (its ``device``
  column or array): one simulated device per id, as the data was collected;
* **dirichlet(alpha)**: class ids without device ids: label skew as in
  :mod:`fedge.client_sim.data.partition`, every device holding ``min_examples``;
* **even random**: float targets without device ids: equal random shares.

Every example lands in exactly one place: the test split, or one device's
train or holdout part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedge.client_sim.data.files import sorted_names
from fedge.client_sim.data.partition import dirichlet_assignment, holdout_size
from fedge.client_sim.data.user_data import CLASS_IDS, Dataset, LabelSpec
from fedge.errors import ConfigError, DataError
from fedge.task.examples import DeviceExamples, Examples, Index

DEFAULT_DEVICES = 20
NATURAL = "natural (device column)"
EVEN = "even random"


@dataclass(frozen=True)
class SplitConfig:
    """How to split; ``num_devices`` None: one per device id, or 20 without ids."""

    num_devices: int | None = None
    alpha: float = 0.5
    test_fraction: float = 0.2
    holdout_fraction: float = 0.2
    min_examples: int = 4
    seed: int = 0

    def validate(self) -> None:
        if self.num_devices is not None and self.num_devices < 1:
            raise ConfigError(f"the number of devices must be >= 1, got {self.num_devices}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        for name, value in (("test", self.test_fraction), ("holdout", self.holdout_fraction)):
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"the {name} fraction must be in [0, 1), got {value}")
        if self.min_examples < 1:
            raise ConfigError(f"min_examples must be >= 1, got {self.min_examples}")


@dataclass(frozen=True)
class FederatedData:
    """Each device's examples, the global test split, and how they were cut."""

    devices: tuple[DeviceExamples, ...]
    test: Examples
    device_names: tuple[str, ...]
    partition: str


def federate(dataset: Dataset, label: LabelSpec, config: SplitConfig) -> FederatedData:
    config.validate()
    examples = dataset.examples
    n = len(examples)
    if n == 0:
        raise DataError(f"{dataset.source} holds no examples to split")
    rng = np.random.default_rng(config.seed)
    classes = examples.y if label.kind == CLASS_IDS else None
    test = np.sort(_test_indices(n, classes, config.test_fraction, rng))
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), test)
    if dataset.device is not None:
        names, groups = _natural(dataset.device, rest, config, dataset.source)
        partition = NATURAL
    else:
        names, groups, partition = _unnamed(classes, rest, config, dataset.source, rng)
    devices = tuple(_train_holdout(examples, g, config.holdout_fraction, rng) for g in groups)
    return FederatedData(devices, examples.take(test), names, partition)


def _test_indices(
    n: int, classes: npt.NDArray[np.int64] | None, fraction: float, rng: np.random.Generator
) -> Index:
    """``fraction`` of the examples (at least one, never all); each class in its
    share of them, the leftover places going to the largest remainders."""
    size = holdout_size(n, fraction)
    if classes is None:
        return rng.permutation(n)[:size].astype(np.int64)
    ids, counts = np.unique(classes, return_counts=True)
    quota = counts * (size / n)
    take = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: size - int(take.sum())]] += 1
    parts: list[Index] = [
        rng.permutation(np.flatnonzero(classes == c))[:k].astype(np.int64)
        for c, k in zip(ids, take, strict=True)
    ]
    return np.concatenate(parts)


def _natural(
    device: npt.NDArray[np.str_], rest: Index, config: SplitConfig, src: str
) -> tuple[tuple[str, ...], list[Index]]:
    """One device per id in the data, with its examples outside the test split."""
    names = sorted_names(str(d) for d in device)
    if config.num_devices is not None and config.num_devices != len(names):
        raise DataError(
            f"{src}: the data names {len(names)} devices (its device column); "
            f"--devices {config.num_devices} does not match; leave --devices out"
        )
    groups = [rest[device[rest] == name] for name in names]
    short = [
        f"{name!r} ({len(g)})"
        for name, g in zip(names, groups, strict=True)
        if len(g) < config.min_examples
    ]
    if short:
        raise DataError(
            f"{src}: {len(short)} device(s) hold fewer than {config.min_examples} examples "
            f"once the global test split is drawn: {', '.join(short[:10])}"
            f"{' ...' if len(short) > 10 else ''}; give them more data or leave them out"
        )
    return names, groups


def _unnamed(
    classes: npt.NDArray[np.int64] | None,
    rest: Index,
    config: SplitConfig,
    src: str,
    rng: np.random.Generator,
) -> tuple[tuple[str, ...], list[Index], str]:
    """Devices "0".."n-1": Dirichlet label skew for class ids, else an even random split."""
    count = DEFAULT_DEVICES if config.num_devices is None else config.num_devices
    needed = count * config.min_examples
    if needed > len(rest):
        raise DataError(
            f"{src}: {count} devices x {config.min_examples} examples each need {needed} "
            f"examples; {len(rest)} remain after the global test split; pass fewer --devices"
        )
    names = tuple(str(d) for d in range(count))
    if classes is None:
        return names, np.array_split(rng.permutation(rest), count), EVEN
    assignment = dirichlet_assignment(classes[rest], count, config.alpha, config.min_examples, rng)
    groups = [rest[assignment == d] for d in range(count)]
    return names, groups, f"dirichlet(alpha={config.alpha:g})"


def _train_holdout(
    examples: Examples, members: Index, fraction: float, rng: np.random.Generator
) -> DeviceExamples:
    shuffled = rng.permutation(members)
    n_holdout = holdout_size(len(shuffled), fraction)
    return DeviceExamples(
        train=examples.take(np.sort(shuffled[n_holdout:])),
        holdout=examples.take(np.sort(shuffled[:n_holdout])),
    )
