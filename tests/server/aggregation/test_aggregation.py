"""Aggregation functions on numbers a reader can check by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.server.aggregation.kernels import (
    AggregationError,
    InMemoryUpdates,
    SafetensorsFileUpdates,
    StreamingMean,
    clip_by_global_norm,
    coordinate_median,
    trimmed_mean,
)
from fedge.wire.update_codec import Update, UpdateMeta, Weights, encode_update
from fedge.wire.weight_spec import ModelSpec, WeightSpec


def f32(*values: float) -> npt.NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def random_updates(count: int, seed: int = 0) -> list[Weights]:
    """Several tensors, sizes not multiples of the small block sizes used."""
    rng = np.random.default_rng(seed)
    return [
        {
            "conv/kernel": rng.standard_normal((3, 5, 2)).astype(np.float32),
            "conv/bias": rng.standard_normal(4).astype(np.float32),
            "dense/kernel": rng.standard_normal((6, 7)).astype(np.float32),
        }
        for _ in range(count)
    ]


def write_updates(directory: Path, updates: list[Weights], examples: list[int]) -> list[Path]:
    paths = []
    for index, (deltas, num_examples) in enumerate(zip(updates, examples, strict=True)):
        meta = UpdateMeta(round_id=1, base_checkpoint="ab" * 32, num_examples=num_examples)
        path = directory / f"update-{index}.safetensors"
        path.write_bytes(encode_update(Update(meta=meta, deltas=deltas)))
        paths.append(path)
    return paths


# -- StreamingMean -------------------------------------------------------------


def test_weighted_mean_of_two_updates() -> None:
    mean = StreamingMean()

    mean.add({"w": f32(0, 4)}, weight=1)
    mean.add({"w": f32(4, 0)}, weight=3)

    # (1*0 + 3*4) / 4 = 3 and (1*4 + 3*0) / 4 = 1
    np.testing.assert_array_equal(mean.result()["w"], f32(3, 1))
    assert mean.count == 2
    assert mean.total_weight == 4.0


def test_weighted_mean_of_three_updates_keeps_shapes_and_canonical_order() -> None:
    mean = StreamingMean()

    mean.add({"a": f32(1, 2).reshape(2, 1), "b": f32(10)}, weight=1)
    mean.add({"b": f32(20), "a": f32(3, 4).reshape(2, 1)}, weight=2)
    mean.add({"a": f32(5, 6).reshape(2, 1), "b": f32(30)}, weight=1)

    result = mean.result()
    # a: (1 + 2*3 + 5) / 4 = 3, (2 + 2*4 + 6) / 4 = 4; b: (10 + 40 + 30) / 4 = 20
    assert list(result) == ["a", "b"]
    np.testing.assert_array_equal(result["a"], f32(3, 4).reshape(2, 1))
    np.testing.assert_array_equal(result["b"], f32(20))
    assert result["a"].dtype == np.float32


def test_mean_of_large_tensor_matches_float64_reference() -> None:
    rng = np.random.default_rng(1)
    updates = [rng.standard_normal(300_001).astype(np.float32) for _ in range(5)]
    weights = [1.0, 2.5, 7.0, 3.0, 0.5]
    mean = StreamingMean()

    for update, weight in zip(updates, weights, strict=True):
        mean.add({"w": update}, weight)

    expected = sum(w * u.astype(np.float64) for u, w in zip(updates, weights, strict=True))
    np.testing.assert_allclose(mean.result()["w"], expected / sum(weights), rtol=1e-6, atol=1e-7)


def test_a_rejected_update_leaves_the_mean_unchanged() -> None:
    mean = StreamingMean(
        ModelSpec((WeightSpec("a", (2,), "float32"), WeightSpec("b", (1,), "float32")))
    )
    mean.add({"a": f32(2, 2), "b": f32(2)}, weight=1)

    bad_updates: list[tuple[dict[str, Any], float]] = [
        ({"a": f32(1, 1, 1), "b": f32(1)}, 1),  # wrong shape
        ({"a": f32(1, 1)}, 1),  # missing weight
        ({"a": f32(1, 1), "b": f32(1), "c": f32(1)}, 1),  # extra weight
        ({"a": np.array([1, 1]), "b": f32(1)}, 1),  # integers
        ({"a": f32(1, np.nan), "b": f32(1)}, 1),  # NaN
        ({"a": f32(1, np.inf), "b": f32(1)}, 1),  # inf
        ({"a": f32(1, 1), "b": f32(1)}, 0),  # zero weight
        ({"a": f32(1, 1), "b": f32(1)}, float("nan")),  # NaN weight
    ]
    for delta, weight in bad_updates:
        with pytest.raises(AggregationError):
            mean.add(delta, weight)

    assert mean.count == 1
    np.testing.assert_array_equal(mean.result()["a"], f32(2, 2))


def test_empty_mean_has_no_result() -> None:
    with pytest.raises(AggregationError, match="no updates"):
        StreamingMean().result()


# -- clip_by_global_norm -----------------------------------------------------------


def test_clip_scales_a_3_4_12_update_with_norm_13_down_to_the_bound() -> None:
    delta = {"a": f32(3, 4), "b": f32(12)}  # sqrt(9 + 16 + 144) = 13

    clipped, norm = clip_by_global_norm(delta, max_norm=6.5)

    assert norm == 13.0
    np.testing.assert_allclose(clipped["a"], f32(1.5, 2.0))
    np.testing.assert_allclose(clipped["b"], f32(6.0))
    np.testing.assert_array_equal(delta["a"], f32(3, 4))  # input untouched


def test_clip_leaves_an_update_within_the_bound_as_it_is() -> None:
    clipped, norm = clip_by_global_norm({"a": f32(3, 4)}, max_norm=10)

    assert norm == 5.0
    np.testing.assert_array_equal(clipped["a"], f32(3, 4))


def test_clip_rejects_non_finite_updates_and_bad_bounds() -> None:
    with pytest.raises(AggregationError, match="non-finite"):
        clip_by_global_norm({"a": f32(np.nan)}, 1.0)
    with pytest.raises(AggregationError, match="max_norm"):
        clip_by_global_norm({"a": f32(1)}, 0.0)


# -- robust aggregates --------------------------------------------------------------


def test_median_by_hand() -> None:
    source = InMemoryUpdates([{"w": f32(1, 10)}, {"w": f32(2, -5)}, {"w": f32(100, 0)}])

    # sorted: [1, 2, 100] -> 2; [-5, 0, 10] -> 0
    np.testing.assert_array_equal(coordinate_median(source)["w"], f32(2, 0))


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    source = InMemoryUpdates([{"w": f32(1)}, {"w": f32(2)}, {"w": f32(4)}, {"w": f32(100)}])

    np.testing.assert_array_equal(coordinate_median(source)["w"], f32(3))  # (2 + 4) / 2


def test_trimmed_mean_by_hand() -> None:
    values = [f32(1, 5), f32(2, 5), f32(3, 5), f32(4, 5), f32(-100, 50)]
    source = InMemoryUpdates([{"w": v} for v in values])

    # 5 updates, fraction 0.2 -> drop 1 from each end:
    # [-100, 1, 2, 3, 4] -> mean(1, 2, 3) = 2; [5, 5, 5, 5, 50] -> 5
    np.testing.assert_array_equal(trimmed_mean(source, 0.2)["w"], f32(2, 5))
    # fraction 0.1 of 5 rounds down to 0: the plain mean (1+2+3+4-100)/5 = -18
    np.testing.assert_array_equal(trimmed_mean(source, 0.1)["w"], f32(-18, 14))


@pytest.mark.parametrize("count", [1, 4, 7])
def test_block_by_block_equals_whole_array_computation(count: int) -> None:
    updates = random_updates(count)
    source = InMemoryUpdates(updates)
    stacked = {name: np.stack([u[name] for u in updates]) for name in updates[0]}
    cut = int(0.25 * count)

    median = coordinate_median(source, block_elems=7)
    trimmed = trimmed_mean(source, 0.25, block_elems=7)

    for name, stack in stacked.items():
        np.testing.assert_array_equal(median[name], np.median(stack, axis=0))
        middle = np.sort(stack, axis=0)[cut : count - cut].astype(np.float64)
        np.testing.assert_allclose(trimmed[name], middle.mean(axis=0), rtol=1e-6, atol=1e-7)
        assert median[name].shape == stack.shape[1:]
        assert median[name].dtype == np.float32


def test_files_give_the_same_result_as_memory(tmp_path: Path) -> None:
    updates = random_updates(5, seed=3)
    examples = [3, 1, 4, 1, 5]
    files = SafetensorsFileUpdates(write_updates(tmp_path, updates, examples))
    memory = InMemoryUpdates(updates, examples)

    assert list(files.names()) == ["conv/kernel", "conv/bias", "dense/kernel"]
    assert files.shape("conv/kernel") == (3, 5, 2)
    assert list(files.weights()) == [3.0, 1.0, 4.0, 1.0, 5.0]
    np.testing.assert_array_equal(
        files.read(2, "dense/kernel", 5, 12), updates[2]["dense/kernel"].reshape(-1)[5:12]
    )
    for name in updates[0]:
        np.testing.assert_array_equal(
            coordinate_median(files, block_elems=7)[name], coordinate_median(memory)[name]
        )
        np.testing.assert_array_equal(
            trimmed_mean(files, 0.2, block_elems=7)[name], trimmed_mean(memory, 0.2)[name]
        )


def test_files_with_different_shapes_are_rejected(tmp_path: Path) -> None:
    first = {"w": f32(1, 2)}
    second = {"w": f32(1, 2, 3)}
    paths = write_updates(tmp_path, [first, second], [1, 1])

    with pytest.raises(AggregationError, match="differ"):
        SafetensorsFileUpdates(paths)


def test_truncated_or_foreign_files_are_rejected(tmp_path: Path) -> None:
    (path,) = write_updates(tmp_path, [{"w": f32(1, 2, 3)}], [1])
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-4])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")

    with pytest.raises(AggregationError, match="offsets"):
        SafetensorsFileUpdates([truncated])
    with pytest.raises(AggregationError):
        SafetensorsFileUpdates([junk])


def test_in_memory_updates_with_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(AggregationError, match="shape"):
        InMemoryUpdates([{"w": f32(1, 2)}, {"w": f32(1, 2, 3)}])


def test_robust_aggregates_reject_empty_sources_and_impossible_trims() -> None:
    with pytest.raises(AggregationError, match="no updates"):
        coordinate_median(InMemoryUpdates([]))
    with pytest.raises(AggregationError, match="no updates"):
        trimmed_mean(InMemoryUpdates([]), 0.1)
    with pytest.raises(AggregationError, match="trim_fraction"):
        trimmed_mean(InMemoryUpdates([{"w": f32(1)}]), 0.5)


def test_robust_aggregates_reject_non_finite_updates() -> None:
    source = InMemoryUpdates([{"w": f32(1, 2)}, {"w": f32(1, np.nan)}, {"w": f32(0, 0)}])

    with pytest.raises(AggregationError, match="update 1"):
        coordinate_median(source)


def test_reading_outside_a_tensor_is_an_error() -> None:
    source = InMemoryUpdates([{"w": f32(1, 2)}])

    with pytest.raises(AggregationError, match="outside"):
        source.read(0, "w", 1, 3)
