"""The user's data for ``fedge simulate --data``: loading, checking, splitting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedge.bundle.manifest import TensorSpec
from fedge.client_sim.data.federated_split import FederatedData, SplitConfig, federate
from fedge.client_sim.data.user_data import Dataset, LabelSpec, load_dataset
from fedge.errors import DataError
from fedge.task.examples import Examples

FEATURES = (TensorSpec("features", (None, 4), "float32"),)
THREE_CLASSES = LabelSpec(kind="class_ids", shape=(), num_classes=3)
ONE_TARGET = LabelSpec(kind="targets", shape=(1,), num_classes=None)


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _numbered_dataset(labels: list[int], device: list[str] | None = None) -> Dataset:
    """Example i has feature 0 equal to i, so every example can be traced."""
    n = len(labels)
    x = np.zeros((n, 4), dtype=np.float32)
    x[:, 0] = np.arange(n)
    ids = None if device is None else np.array(device, dtype=np.str_)
    return Dataset(Examples({"features": x}, np.array(labels, dtype=np.int64)), ids, "mem", None)


def _ids(examples: Examples) -> list[int]:
    return [int(v) for v in examples.x["features"][:, 0]]


def _every_id(fed: FederatedData) -> list[int]:
    ids = _ids(fed.test)
    for device in fed.devices:
        ids += _ids(device.train) + _ids(device.holdout)
    return sorted(ids)


# --- loading ---------------------------------------------------------------------------


def test_npz_with_one_input_is_cast_to_float32_under_the_input_name(tmp_path: Path) -> None:
    path = _npz(tmp_path / "data.npz", x=np.ones((6, 4), dtype=np.float64), y=[0, 1, 2, 0, 1, 2])

    data = load_dataset(path, FEATURES, THREE_CLASSES)

    assert list(data.examples.x) == ["features"]
    assert data.examples.x["features"].dtype == np.float32
    assert data.examples.x["features"].shape == (6, 4)
    assert data.examples.y.dtype == np.int64
    assert data.examples.y.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.device is None
    assert data.source == "data.npz"


def test_token_ids_keep_the_integer_dtype_the_model_records(tmp_path: Path) -> None:
    tokens = (TensorSpec("tokens", (None, 3), "int32"),)
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)  # CSV-like: ids read as floats
    path = _npz(tmp_path / "data.npz", x=ids, y=[0, 1])

    data = load_dataset(path, tokens, THREE_CLASSES)

    assert data.examples.x["tokens"].dtype == np.int32
    assert data.examples.x["tokens"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_token_ids_that_are_not_whole_numbers_are_refused(tmp_path: Path) -> None:
    tokens = (TensorSpec("tokens", (None, 2), "int32"),)
    path = _npz(tmp_path / "data.npz", x=np.array([[1.0, 2.0], [3.5, 4.0]]), y=[0, 1])

    with pytest.raises(DataError, match=r"not a whole number in example 1.*int32"):
        load_dataset(path, tokens, THREE_CLASSES)


def test_npz_may_name_a_single_input_by_its_own_name(tmp_path: Path) -> None:
    path = _npz(tmp_path / "data.npz", features=np.full((2, 4), 3.0), y=[1, 2])

    data = load_dataset(path, FEATURES, THREE_CLASSES)

    assert data.examples.x["features"][0].tolist() == [3.0, 3.0, 3.0, 3.0]


def test_npz_with_two_named_inputs_and_device_ids(tmp_path: Path) -> None:
    inputs = (
        TensorSpec("image", (None, 2, 2, 1), "float32"),
        TensorSpec("meta", (None, 3), "float32"),
    )
    path = _npz(
        tmp_path / "two.npz",
        image=np.zeros((5, 2, 2, 1), dtype=np.uint8),
        meta=np.arange(15).reshape(5, 3),
        y=np.array([0, 1, 1, 0, 2]),
        device=np.array([7, 7, 8, 8, 8]),
    )

    data = load_dataset(path, inputs, THREE_CLASSES)

    assert data.examples.x["image"].shape == (5, 2, 2, 1)
    assert data.examples.x["meta"].dtype == np.float32
    assert data.examples.x["meta"][4].tolist() == [12.0, 13.0, 14.0]
    assert data.device is not None
    assert data.device.tolist() == ["7", "7", "8", "8", "8"]


def test_csv_features_in_file_order_reshaped_with_string_device_ids(tmp_path: Path) -> None:
    square = (TensorSpec("grid", (None, 2, 2), "float32"),)
    path = _csv(
        tmp_path / "data.csv",
        ["a,b,device,c,d,y", "1,2,phone-a,3,4,0", "5,6,007,7,8,2"],
    )

    data = load_dataset(path, square, THREE_CLASSES)

    assert data.examples.x["grid"].shape == (2, 2, 2)
    assert data.examples.x["grid"][1].tolist() == [[5.0, 6.0], [7.0, 8.0]]
    assert data.examples.y.tolist() == [0, 2]
    assert data.device is not None
    assert data.device.tolist() == ["phone-a", "007"]


def test_csv_without_device_column_with_label_column_named_label(tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.csv", ["label,f0,f1,f2,f3", "2,0.5,1,1,1", "1,1,1,1,1.5"])

    data = load_dataset(path, FEATURES, THREE_CLASSES)

    assert data.device is None
    assert data.examples.y.tolist() == [2, 1]
    assert data.examples.x["features"][0].tolist() == [0.5, 1.0, 1.0, 1.0]


def test_csv_text_labels_map_onto_the_bundles_class_names(tmp_path: Path) -> None:
    label = LabelSpec("class_ids", (), 3, class_names=("cat", "dog", "owl"))
    path = _csv(tmp_path / "data.csv", ["f0,f1,f2,f3,y", "0,0,0,0,owl", "0,0,0,0,cat"])

    data = load_dataset(path, FEATURES, label)

    assert data.examples.y.tolist() == [2, 0]


def test_regression_targets_of_shape_n_become_n_by_1_float32(tmp_path: Path) -> None:
    path = _npz(tmp_path / "reg.npz", x=np.zeros((3, 4)), y=np.array([0.5, -1, 2]))

    data = load_dataset(path, FEATURES, ONE_TARGET)

    assert data.examples.y.dtype == np.float32
    assert data.examples.y.shape == (3, 1)
    assert data.examples.y[:, 0].tolist() == [0.5, -1.0, 2.0]


def _image_folder(root: Path, classes: dict[str, list[tuple[int, int, str]]]) -> Path:
    for name, images in classes.items():
        (root / name).mkdir(parents=True)
        for i, (width, height, color) in enumerate(images):
            Image.new("RGB", (width, height), color).save(root / name / f"{i}.png")
    return root


def test_image_folder_is_resized_to_the_input_scaled_and_labelled_by_sorted_folder(
    tmp_path: Path,
) -> None:
    root = _image_folder(
        tmp_path / "images",
        {"dog": [(16, 12, "white")], "cat": [(8, 8, "black"), (30, 5, "black")]},
    )
    gray = (TensorSpec("pixels", (None, 8, 8, 1), "float32"),)

    data = load_dataset(root, gray, LabelSpec("class_ids", (), 2))

    x = data.examples.x["pixels"]
    assert x.shape == (3, 8, 8, 1)
    assert x.dtype == np.float32
    assert data.class_names == ("cat", "dog")
    assert data.examples.y.tolist() == [0, 0, 1]
    assert np.allclose(x[2], 1.0)  # the white dog
    assert np.allclose(x[:2], 0.0)


def test_image_folder_follows_the_bundles_class_order_in_rgb(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images", {"cat": [(5, 5, "red")], "dog": [(6, 4, "blue")]})
    rgb = (TensorSpec("pixels", (None, 4, 4, 3), "float32"),)
    label = LabelSpec("class_ids", (), 3, class_names=("dog", "owl", "cat"))

    data = load_dataset(root, rgb, label)

    assert data.class_names == ("dog", "owl", "cat")
    assert data.examples.y.tolist() == [0, 2]  # the blue dog, then the red cat
    assert data.examples.x["pixels"][0, 3, 3].tolist() == [0.0, 0.0, 1.0]
    assert data.examples.x["pixels"][1, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_numeric_class_folders_sort_as_numbers(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "digits", {"10": [(3, 3, "white")], "2": [(3, 3, "white")]})
    spec = (TensorSpec("pixels", (None, 3, 3, 1), "float32"),)

    data = load_dataset(root, spec, LabelSpec("class_ids", (), 11))

    assert data.class_names == ("2", "10")


# --- splitting -------------------------------------------------------------------------


def test_natural_partition_gives_each_device_only_its_own_examples() -> None:
    names = ["b", "a", "c"] * 10
    data = _numbered_dataset([i % 3 for i in range(30)], device=names)

    fed = federate(data, THREE_CLASSES, SplitConfig(seed=3))

    assert fed.partition == "natural (device column)"
    assert fed.device_names == ("a", "b", "c")
    for name, device in zip(fed.device_names, fed.devices, strict=True):
        held = _ids(device.train) + _ids(device.holdout)
        assert held
        assert {names[i] for i in held} == {name}
    assert _every_id(fed) == list(range(30))


def test_dirichlet_split_is_reproducible_for_a_seed_and_differs_by_seed() -> None:
    data = _numbered_dataset([i % 3 for i in range(300)])

    def shards(seed: int) -> list[list[int]]:
        fed = federate(data, THREE_CLASSES, SplitConfig(num_devices=6, alpha=0.3, seed=seed))
        assert fed.partition == "dirichlet(alpha=0.3)"
        return [sorted(_ids(d.train) + _ids(d.holdout)) for d in fed.devices]

    assert shards(1) == shards(1)
    assert shards(1) != shards(2)


def test_dirichlet_split_uses_every_example_exactly_once_and_holds_some_out() -> None:
    data = _numbered_dataset([i % 3 for i in range(200)])

    fed = federate(data, THREE_CLASSES, SplitConfig(num_devices=8, min_examples=5))

    assert len(fed.devices) == 8
    assert fed.device_names == tuple(str(i) for i in range(8))
    assert _every_id(fed) == list(range(200))
    for device in fed.devices:
        assert len(device.train) + len(device.holdout) >= 5
        assert len(device.train) >= 1
        assert len(device.holdout) >= 1


def test_targets_without_device_ids_are_split_evenly_at_random() -> None:
    n = 103
    x = np.zeros((n, 4), dtype=np.float32)
    x[:, 0] = np.arange(n)
    y = np.linspace(0, 1, n, dtype=np.float32)[:, None]
    data = Dataset(Examples({"features": x}, y), None, "mem", None)

    fed = federate(data, ONE_TARGET, SplitConfig(num_devices=5, test_fraction=0.2))

    assert fed.partition == "even random"
    assert len(fed.test) == 21  # round(103 * 0.2)
    sizes = [len(d.train) + len(d.holdout) for d in fed.devices]
    assert sorted(sizes) == [16, 16, 16, 17, 17]  # 82 left, as even as it gets
    assert _every_id(fed) == list(range(n))
    assert fed.test.y.shape == (21, 1)


def test_global_test_split_is_stratified_by_class() -> None:
    labels = [0] * 50 + [1] * 30 + [2] * 20
    data = _numbered_dataset(labels)

    fed = federate(data, THREE_CLASSES, SplitConfig(num_devices=4, test_fraction=0.2))

    assert Counter(fed.test.y.tolist()) == {0: 10, 1: 6, 2: 4}


# --- what cannot be used ---------------------------------------------------------------

ErrorCase = Callable[[Path], Path]

ERROR_CASES: dict[str, tuple[ErrorCase, list[str]]] = {
    "wrong shape": (
        lambda d: _npz(d / "data.npz", x=np.zeros((10, 5)), y=np.zeros(10, int)),
        ["data.npz: x has shape (10, 5)", "'features' takes (None, 4)"],
    ),
    "label out of range": (
        lambda d: _npz(d / "data.npz", x=np.zeros((3, 4)), y=[0, 3, 1]),
        ["class id 3 at index 1", "[0, 3)"],
    ),
    "class id not whole": (
        lambda d: _npz(d / "data.npz", x=np.zeros((2, 4)), y=[0.0, 1.5]),
        ["1.5 at index 1", "whole numbers"],
    ),
    "unknown array": (
        lambda d: _npz(d / "data.npz", x=np.zeros((2, 4)), y=[0, 1], weights=[1, 1]),
        ["arrays the model does not take: weights", "expected: x"],
    ),
    "missing labels": (
        lambda d: _npz(d / "data.npz", x=np.zeros((2, 4))),
        ["no array 'y'"],
    ),
    "mismatched lengths": (
        lambda d: _npz(d / "data.npz", x=np.zeros((10, 4)), y=np.zeros(9, int)),
        ["different lengths (x 10, y 9)"],
    ),
    "non-finite input": (
        lambda d: _npz(d / "data.npz", x=np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]]), y=[0, 1]),
        ["NaN or infinite", "index 1"],
    ),
    "empty": (
        lambda d: _npz(d / "data.npz", x=np.zeros((0, 4)), y=np.zeros(0, int)),
        ["holds no examples"],
    ),
    "non-numeric csv cell": (
        lambda d: _csv(d / "data.csv", ["f0,f1,f2,f3,y", "1,2,3,4,0", "1,abc,3,4,1"]),
        ["data.csv, line 3, column 'f1': 'abc' is not a number"],
    ),
    "csv feature count": (
        lambda d: _csv(d / "data.csv", ["f0,f1,f2,y", "1,2,3,0"]),
        ["3 feature columns", "'features' takes (None, 4)"],
    ),
    "csv extra text column": (
        lambda d: _csv(d / "data.csv", ["f0,f1,f2,f3,city,y", "1,2,3,4,Paris,0"]),
        ["column 'city' holds text ('Paris')", "takes (None, 4)", "drop it"],
    ),
    "csv two extra text columns": (
        lambda d: _csv(d / "data.csv", ["name,f0,f1,f2,f3,city,y", "ann,1,2,3,4,Rome,0"]),
        ["columns 'name', 'city' hold text ('ann', 'Rome')", "takes (None, 4)"],
    ),
    "csv without header": (
        lambda d: _csv(d / "data.csv", ["1,2,3,4,0"]),
        ["'y' or 'label'", "header row missing"],
    ),
    "missing file": (lambda d: d / "nothing.npz", ["nothing.npz does not exist"]),
    "unknown suffix": (
        lambda d: _csv(d / "data.txt", ["1"]),
        ["unknown data format '.txt'", ".npz"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_data_that_cannot_be_used_is_a_data_error_that_names_the_problem(
    tmp_path: Path, case: str
) -> None:
    write, phrases = ERROR_CASES[case]
    path = write(tmp_path)

    with pytest.raises(DataError) as caught:
        load_dataset(path, FEATURES, THREE_CLASSES)

    for phrase in phrases:
        assert phrase in str(caught.value)


def test_target_of_the_wrong_shape_is_a_data_error(tmp_path: Path) -> None:
    path = _npz(tmp_path / "reg.npz", x=np.zeros((3, 4)), y=np.zeros((3, 2)))

    with pytest.raises(DataError, match=r"y has shape \(3, 2\); the model's output takes"):
        load_dataset(path, FEATURES, ONE_TARGET)


def test_class_folder_not_among_the_bundles_labels_is_a_data_error(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images", {"cat": [(4, 4, "red")], "emu": [(4, 4, "red")]})
    spec = (TensorSpec("pixels", (None, 4, 4, 1), "float32"),)
    label = LabelSpec("class_ids", (), 2, class_names=("cat", "dog"))

    with pytest.raises(DataError, match="class folders emu are not among the model's labels"):
        load_dataset(root, spec, label)


def test_devices_option_that_contradicts_the_device_column_is_a_data_error() -> None:
    data = _numbered_dataset([0, 1, 2] * 8, device=["a", "b", "c"] * 8)

    with pytest.raises(DataError, match=r"names 3 devices .* --devices 5 does not match"):
        federate(data, THREE_CLASSES, SplitConfig(num_devices=5))


def test_a_named_device_with_too_few_examples_is_a_data_error() -> None:
    data = _numbered_dataset([0, 1, 2] * 8, device=["a"] * 22 + ["z", "z"])

    with pytest.raises(DataError, match=r"fewer than 4 examples .*'z' \(\d\)"):
        federate(data, THREE_CLASSES, SplitConfig())


def test_more_devices_than_the_examples_allow_is_a_data_error() -> None:
    data = _numbered_dataset([0, 1, 2] * 10)

    with pytest.raises(DataError, match="20 devices x 4 examples each need 80 examples; 24 remain"):
        federate(data, THREE_CLASSES, SplitConfig())
