from __future__ import annotations

import numpy as np
import pytest

from fedge.client_sim.data.partition import HandwritingStyle, PartitionConfig, partition
from fedge.errors import ConfigError
from fedge.reference.data import NUM_CLASSES, IntArray, TaskData


def _mean_label_entropy(labels: IntArray, alpha: float, seed: int) -> float:
    parts = partition(
        labels, PartitionConfig(num_devices=20, alpha=alpha, seed=seed, min_examples=2)
    )
    entropies = []
    for shard in parts.shards:
        p = shard.label_counts(labels) / len(shard.all_indices)
        p = p[p > 0]
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


def test_same_seed_gives_same_shards_and_styles(task: TaskData) -> None:
    config = PartitionConfig(num_devices=10, alpha=0.5, seed=7)

    first, again = partition(task.train.y, config), partition(task.train.y, config)
    other = partition(task.train.y, PartitionConfig(num_devices=10, alpha=0.5, seed=8))

    for a, b in zip(first.shards, again.shards, strict=True):
        np.testing.assert_array_equal(a.train_indices, b.train_indices)
        np.testing.assert_array_equal(a.holdout_indices, b.holdout_indices)
        assert a.style == b.style
    assert any(
        not np.array_equal(a.train_indices, b.train_indices)
        for a, b in zip(first.shards, other.shards, strict=True)
    )


def test_every_training_example_goes_to_exactly_one_device(task: TaskData) -> None:
    config = PartitionConfig(num_devices=12, alpha=0.3, seed=1, holdout_fraction=0.25)

    parts = partition(task.train.y, config)

    assigned = np.concatenate([s.all_indices for s in parts.shards])
    assert len(assigned) == len(task.train)
    np.testing.assert_array_equal(np.sort(assigned), np.arange(len(task.train)))
    for shard in parts.shards:
        assert len(shard.all_indices) >= config.min_examples
        assert len(np.intersect1d(shard.train_indices, shard.holdout_indices)) == 0
    held_out = sum(len(s.holdout_indices) for s in parts.shards)
    assert held_out == pytest.approx(0.25 * len(task.train), rel=0.05)


def test_smaller_alpha_means_more_label_skew(task: TaskData) -> None:
    # Mean per-device label entropy: ln(10) = 2.30 for a perfectly even split.
    skewed = np.mean([_mean_label_entropy(task.train.y, 0.1, s) for s in range(3)])
    moderate = np.mean([_mean_label_entropy(task.train.y, 1.0, s) for s in range(3)])
    near_iid = np.mean([_mean_label_entropy(task.train.y, 100.0, s) for s in range(3)])

    assert skewed < moderate < near_iid
    assert near_iid > 0.95 * np.log(NUM_CLASSES)
    assert skewed < 0.5 * np.log(NUM_CLASSES)


def test_device_data_is_in_the_device_style(task: TaskData) -> None:
    parts = partition(task.train.y, PartitionConfig(num_devices=5, alpha=1.0, seed=2))

    data = parts.device_data(0, task.train)

    shard = parts.shards[0]
    np.testing.assert_array_equal(data.train.y, task.train.y[shard.train_indices])
    np.testing.assert_allclose(data.train.x, shard.style.apply(task.train.x[shard.train_indices]))
    assert data.train.x.dtype == np.float32
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 1.0
    assert len(data.holdout) == len(shard.holdout_indices)


def test_styles_transform_images_as_described() -> None:
    image = np.zeros((1, 8, 8, 1), dtype=np.float32)
    image[0, 3, 3, 0] = 1.0
    image[0, 4, 4, 0] = 0.25

    shifted = HandwritingStyle(shift=(1, -1), thickness=0.0, gamma=1.0).apply(image)
    thicker = HandwritingStyle(shift=(0, 0), thickness=0.5, gamma=1.0).apply(image)
    contrast = HandwritingStyle(shift=(0, 0), thickness=0.0, gamma=0.5).apply(image)
    neutral = HandwritingStyle.neutral().apply(image)

    assert shifted[0, 4, 2, 0] == 1.0 and shifted[0, 3, 3, 0] == 0.0
    assert thicker[0, 3, 4, 0] == pytest.approx(0.5)  # neighbour of the 1.0 pixel, half way
    assert thicker[0, 3, 3, 0] == 1.0
    assert contrast[0, 4, 4, 0] == pytest.approx(0.5)  # 0.25 ** 0.5
    np.testing.assert_array_equal(neutral, image)


def test_styles_differ_between_devices(task: TaskData) -> None:
    parts = partition(task.train.y, PartitionConfig(num_devices=10, alpha=1.0, seed=0))

    assert len({s.style for s in parts.shards}) > 5


@pytest.mark.parametrize(
    "config",
    [
        PartitionConfig(num_devices=0),
        PartitionConfig(num_devices=3, alpha=0.0),
        PartitionConfig(num_devices=3, holdout_fraction=1.0),
        PartitionConfig(num_devices=1000, min_examples=4),
    ],
)
def test_impossible_configs_are_refused(task: TaskData, config: PartitionConfig) -> None:
    with pytest.raises(ConfigError):
        partition(task.train.y, config)


def test_many_devices_with_strong_skew_still_get_their_minimum(task: TaskData) -> None:
    config = PartitionConfig(num_devices=500, alpha=0.1, seed=0, min_examples=2)

    parts = partition(task.train.y, config)

    sizes = [len(s.all_indices) for s in parts.shards]
    assert min(sizes) >= 2
    assigned = np.sort(np.concatenate([s.all_indices for s in parts.shards]))
    np.testing.assert_array_equal(assigned, np.arange(len(task.train)))
