"""The reference task's data: scikit-learn's 8x8 digits, split from a seed.

The digits ship with scikit-learn (1,797 images, 10 classes), so the task
needs no network. Pixels are scaled from 0..16 to 0..1 and shaped
``(n, 8, 8, 1)`` float32, the layout the reference CNN and every runtime
take. The train/test split is stratified and depends only on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedge.errors import ConfigError

IMAGE_SHAPE: tuple[int, int, int] = (8, 8, 1)
NUM_CLASSES = 10
LABELS: tuple[str, ...] = tuple(str(d) for d in range(NUM_CLASSES))

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """Images ``(n, 8, 8, 1)`` in [0, 1] and integer labels ``(n,)``."""

    x: FloatArray
    y: IntArray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TaskData:
    """The reference task's train and test splits."""

    train: Split
    test: Split
    seed: int


def load_digits_images() -> tuple[FloatArray, IntArray]:
    """All 1,797 digits as float32 images in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape((-1, *IMAGE_SHAPE))
    y = np.asarray(bunch.target, dtype=np.int64)
    return x, y


def load_task(seed: int = 0, test_fraction: float = 0.2) -> TaskData:
    """The digits split into train and test, stratified by label.

    The same seed always gives the same split, on any machine: the
    permutation comes from NumPy's PCG64 generator, not from global state.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = load_digits_images()
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        n_test = round(len(members) * test_fraction)
        test_idx.extend(members[:n_test].tolist())
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_sorted = rng.permutation(np.flatnonzero(is_test))
    return TaskData(
        train=Split(x=x[train_idx], y=y[train_idx]),
        test=Split(x=x[test_sorted], y=y[test_sorted]),
        seed=seed,
    )


# The share of the training split a team trains on centrally (its public
# data) before deploying; devices hold the rest. See :func:`public_split`.
PUBLIC_FRACTION = 0.3


def public_split(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(public, private): a stratified ``fraction`` of ``train`` and the rest.

    The hybrid story: the team trains on the public part and deploys; the
    private part stays on the devices, which fine-tune the deployed model.
    ``fraction`` 0 gives no public part and ``train`` unchanged as the private
    part. The same seed gives the same parts (``fedge train`` and ``fedge
    simulate`` take the same one)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"the public fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return Split(x=train.x[:0], y=train.y[:0]), train
    rng = np.random.default_rng([seed, 1])
    public = np.zeros(len(train), dtype=bool)
    for label in np.unique(train.y):
        members = np.flatnonzero(train.y == label)
        public[rng.permutation(members)[: round(len(members) * fraction)]] = True
    return (
        Split(x=train.x[public], y=train.y[public]),
        Split(x=train.x[~public], y=train.y[~public]),
    )
