from __future__ import annotations

import numpy as np

from fedge.reference.data import IMAGE_SHAPE, NUM_CLASSES, load_task, public_split


def test_split_is_reproducible_from_the_seed() -> None:
    first, again, other = load_task(seed=3), load_task(seed=3), load_task(seed=4)

    np.testing.assert_array_equal(first.train.x, again.train.x)
    np.testing.assert_array_equal(first.test.y, again.test.y)
    assert not np.array_equal(first.train.y, other.train.y)


def test_split_covers_the_digits_once_in_the_right_layout() -> None:
    task = load_task(seed=0, test_fraction=0.2)

    assert len(task.train) + len(task.test) == 1797
    assert task.train.x.shape[1:] == IMAGE_SHAPE
    assert task.train.x.dtype == np.float32
    assert task.train.x.min() >= 0.0 and task.train.x.max() <= 1.0
    # 1797 digits, about 180 per class: 20% of each class is in the test split.
    test_counts = np.bincount(task.test.y, minlength=NUM_CLASSES)
    all_counts = test_counts + np.bincount(task.train.y, minlength=NUM_CLASSES)
    np.testing.assert_allclose(test_counts / all_counts, 0.2, atol=0.01)


def test_train_and_test_share_no_image() -> None:
    task = load_task(seed=1)

    train_rows = {
        row.tobytes() + bytes([int(y)]) for row, y in zip(task.train.x, task.train.y, strict=True)
    }
    test_rows = [
        row.tobytes() + bytes([int(y)]) for row, y in zip(task.test.x, task.test.y, strict=True)
    ]
    # The digits set itself has a handful of exact duplicate images; the
    # split must not add more than those.
    assert sum(row in train_rows for row in test_rows) <= 5


def test_the_public_part_is_stratified_disjoint_and_fixed_by_the_seed() -> None:
    train = load_task(seed=0).train

    public, private = public_split(train, 0.3, seed=0)
    again, _ = public_split(train, 0.3, seed=0)
    other, _ = public_split(train, 0.3, seed=1)

    assert len(public) + len(private) == len(train)
    assert abs(len(public) - 0.3 * len(train)) <= NUM_CLASSES
    counts = np.bincount(public.y, minlength=NUM_CLASSES) / np.bincount(train.y)
    assert np.all(np.abs(counts - 0.3) < 0.02)
    rows = {r.tobytes() for r in public.x} | {r.tobytes() for r in private.x}
    assert len(rows) == len({r.tobytes() for r in train.x})
    np.testing.assert_array_equal(public.x, again.x)
    assert not np.array_equal(public.y, other.y)


def test_no_public_part_leaves_the_training_split_as_it_is() -> None:
    train = load_task(seed=0).train

    public, private = public_split(train, 0.0, seed=0)

    assert len(public) == 0
    assert private is train
