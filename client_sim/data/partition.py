"""Split the task's training data across simulated devices, non-IID.

Two things make devices differ, as real phones do:

* **label skew**: for every class, the share each device gets is drawn from
  ``Dirichlet(alpha)``; a small alpha gives each device a few dominant
  digits, a large alpha approaches an even (IID) split;
* **handwriting style**: each device has a fixed small transform (a shift of
  at most one pixel, thicker or thinner strokes, a contrast curve) applied
  to every image it holds, so a model personalised to a device's style can
  beat the global one on that device's data.

Every training example is assigned to exactly one device; each device's
examples are split again into the part it trains on and its own held-out
part. Everything follows from ``PartitionConfig.seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fedge.errors import ConfigError
from fedge.reference.data import NUM_CLASSES, FloatArray, IntArray, Split

_CROSS = ndimage.generate_binary_structure(2, 1)
_MAX_RESAMPLES = 20


@dataclass(frozen=True)
class PartitionConfig:
    """How to split the data; the seed fixes shards and styles."""

    num_devices: int
    alpha: float = 0.5
    seed: int = 0
    holdout_fraction: float = 0.2
    min_examples: int = 4
    style_strength: float = 1.0

    def validate(self, num_examples: int) -> None:
        if self.num_devices < 1:
            raise ConfigError(f"num_devices must be >= 1, got {self.num_devices}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.min_examples < 1:
            raise ConfigError(f"min_examples must be >= 1, got {self.min_examples}")
        if not 0.0 <= self.style_strength <= 1.0:
            raise ConfigError(f"style_strength must be in [0, 1], got {self.style_strength}")
        if self.num_devices * self.min_examples > num_examples:
            raise ConfigError(
                f"{self.num_devices} devices x {self.min_examples} examples each need "
                f"{self.num_devices * self.min_examples} examples; the data has {num_examples}"
            )


@dataclass(frozen=True)
class HandwritingStyle:
    """A device's fixed way of writing: applied to every image it holds.

    ``shift`` moves the digit by (rows, cols) pixels, filling with blank;
    ``thickness`` > 0 blends towards a dilated stroke, < 0 towards an eroded
    one; ``gamma`` is a contrast curve on the [0, 1] intensities.
    """

    shift: tuple[int, int]
    thickness: float
    gamma: float

    @classmethod
    def neutral(cls) -> HandwritingStyle:
        return cls(shift=(0, 0), thickness=0.0, gamma=1.0)

    @classmethod
    def draw(cls, rng: np.random.Generator, strength: float = 1.0) -> HandwritingStyle:
        shift = (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))) if strength > 0 else (0, 0)
        thickness = float(rng.uniform(-0.6, 0.6)) * strength
        gamma = float(np.exp(rng.uniform(-0.5, 0.5) * strength))
        return cls(shift=shift, thickness=thickness, gamma=gamma)

    def apply(self, images: FloatArray) -> FloatArray:
        """The images ``(n, 8, 8, 1)`` as this device would have written them."""
        x = np.asarray(images, dtype=np.float32)[..., 0]
        x = _shift(x, *self.shift)
        if self.thickness > 0:
            grown = ndimage.grey_dilation(x, footprint=_CROSS[None])
            x = x + self.thickness * (grown - x)
        elif self.thickness < 0:
            shrunk = ndimage.grey_erosion(x, footprint=_CROSS[None])
            x = x + (-self.thickness) * (shrunk - x)
        x = np.clip(x, 0.0, 1.0) ** self.gamma
        return x.astype(np.float32)[..., None]


@dataclass(frozen=True)
class DeviceShard:
    """One device's share: indices into the task's training split."""

    device_index: int
    train_indices: IntArray
    holdout_indices: IntArray
    style: HandwritingStyle

    @property
    def all_indices(self) -> IntArray:
        return np.concatenate([self.train_indices, self.holdout_indices])

    def label_counts(self, labels: IntArray) -> IntArray:
        return np.bincount(labels[self.all_indices], minlength=NUM_CLASSES).astype(np.int64)


@dataclass(frozen=True)
class DeviceData:
    """The data that stays on one device, already in the device's style."""

    train: Split
    holdout: Split
    style: HandwritingStyle


@dataclass(frozen=True)
class Partition:
    config: PartitionConfig
    shards: tuple[DeviceShard, ...]

    def device_data(self, device_index: int, source: Split) -> DeviceData:
        shard = self.shards[device_index]
        return DeviceData(
            train=_styled(source, shard.train_indices, shard.style),
            holdout=_styled(source, shard.holdout_indices, shard.style),
            style=shard.style,
        )


def partition(labels: IntArray, config: PartitionConfig) -> Partition:
    """Assign every example (by label) to one device, with Dirichlet label skew."""
    labels = np.asarray(labels, dtype=np.int64)
    config.validate(len(labels))
    rng = np.random.default_rng(config.seed)
    assignment = dirichlet_assignment(
        labels, config.num_devices, config.alpha, config.min_examples, rng
    )
    shards = []
    for device in range(config.num_devices):
        members = rng.permutation(np.flatnonzero(assignment == device)).astype(np.int64)
        n_holdout = holdout_size(len(members), config.holdout_fraction)
        style = HandwritingStyle.draw(rng, config.style_strength)
        shards.append(
            DeviceShard(
                device_index=device,
                train_indices=np.sort(members[n_holdout:]),
                holdout_indices=np.sort(members[:n_holdout]),
                style=style,
            )
        )
    return Partition(config=config, shards=tuple(shards))


def holdout_size(num_examples: int, fraction: float) -> int:
    """How many of a device's examples it holds out: at least one, and at
    least one left to train on, when it has two or more and ``fraction`` > 0."""
    n_holdout = round(num_examples * fraction)
    if fraction > 0 and num_examples > 1:
        n_holdout = min(max(n_holdout, 1), num_examples - 1)
    return n_holdout


def dirichlet_assignment(
    labels: IntArray, num_devices: int, alpha: float, min_examples: int, rng: np.random.Generator
) -> IntArray:
    """The device (0..num_devices-1) of each example: for each class, its
    (shuffled) examples are cut by Dirichlet(alpha) shares.

    Draws again a few times until every device holds ``min_examples``; if
    the skew makes that unlikely (many devices, small alpha), tops up the
    short devices with examples from the largest ones instead. The caller
    checks that ``num_devices * min_examples`` examples exist.
    """
    n_dev = num_devices
    assignment = np.full(len(labels), -1, dtype=np.int64)
    for _ in range(_MAX_RESAMPLES):
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(n_dev, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).round().astype(int)
            for device, part in enumerate(np.split(members, cuts)):
                assignment[part] = device
        if np.bincount(assignment, minlength=n_dev).min() >= min_examples:
            return assignment
    return _top_up(assignment, n_dev, min_examples, rng)


def _top_up(assignment: IntArray, n_dev: int, minimum: int, rng: np.random.Generator) -> IntArray:
    """Move examples from the largest devices to those under ``minimum``."""
    assignment = assignment.copy()
    counts = np.bincount(assignment, minlength=n_dev)
    for device in np.flatnonzero(counts < minimum):
        while counts[device] < minimum:
            donor = int(np.argmax(counts))
            moved = int(rng.choice(np.flatnonzero(assignment == donor)))
            assignment[moved] = device
            counts[donor] -= 1
            counts[device] += 1
    return assignment


def _shift(x: FloatArray, rows: int, cols: int) -> FloatArray:
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    src_r = slice(max(0, -rows), h - max(0, rows))
    dst_r = slice(max(0, rows), h - max(0, -rows))
    src_c = slice(max(0, -cols), w - max(0, cols))
    dst_c = slice(max(0, cols), w - max(0, -cols))
    out[:, dst_r, dst_c] = x[:, src_r, src_c]
    return out


def _styled(source: Split, indices: IntArray, style: HandwritingStyle) -> Split:
    return Split(x=style.apply(source.x[indices]), y=source.y[indices])
