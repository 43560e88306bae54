"""fedge's aggregation against TensorFlow Federated's aggregators.

The same small inputs go through TFF's ``MeanFactory`` and
``DifferentiallyPrivateFactory.gaussian_fixed`` (run by TFF's runtime,
inside :func:`fedge.client_sim.tff.runtime.tff_execution_context` so no worker
outlives the test) and through :class:`StreamingMean` and
:class:`CentralDP` with a fixed denominator, and must agree: the mean
exactly (to float32), the clipping exactly, the noise in standard deviation
and in the privacy event handed to the accountant.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.client_sim.tff.runtime import tff_execution_context
from fedge.server.aggregation.central_dp import CentralDP
from fedge.server.aggregation.kernels import StreamingMean
from fedge.server.aggregation.privacy import epsilon
from fedge.server.aggregation.strategies import FedAvg, ServerState

tff = pytest.importorskip("tensorflow_federated")


@pytest.fixture(scope="module")
def tff_context() -> Iterator[None]:
    with tff_execution_context():
        yield


def f32(*values: float) -> npt.NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def struct_type(shapes: dict[str, list[int]]) -> Any:
    return tff.StructWithPythonType(
        [(name, tff.TensorType(np.float32, shape)) for name, shape in shapes.items()],
        collections.OrderedDict,
    )


def test_weighted_mean_equals_tff_mean_factory(tff_context: None) -> None:
    rng = np.random.default_rng(0)
    updates = [
        collections.OrderedDict(
            kernel=rng.standard_normal((3, 2)).astype(np.float32),
            bias=rng.standard_normal(2).astype(np.float32),
        )
        for _ in range(3)
    ]
    weights = [1.0, 3.0, 12.0]
    process = tff.aggregators.MeanFactory().create(
        struct_type({"kernel": [3, 2], "bias": [2]}), tff.TensorType(np.float32)
    )
    ours = StreamingMean()

    theirs = process.next(process.initialize(), updates, weights).result
    for update, weight in zip(updates, weights, strict=True):
        ours.add(update, weight)

    for name in ("kernel", "bias"):
        np.testing.assert_allclose(ours.result()[name], theirs[name], rtol=1e-6, atol=1e-7)


def test_hand_computable_mean_equals_tff(tff_context: None) -> None:
    process = tff.aggregators.MeanFactory().create(
        tff.TensorType(np.float32, [2]), tff.TensorType(np.float32)
    )
    ours = StreamingMean()
    ours.add({"w": f32(0, 4)}, 1)
    ours.add({"w": f32(4, 0)}, 3)

    theirs = process.next(process.initialize(), [f32(0, 4), f32(4, 0)], [1.0, 3.0]).result

    np.testing.assert_array_equal(theirs, f32(3, 1))
    np.testing.assert_array_equal(ours.result()["w"], theirs)


def test_clipping_and_fixed_denominator_equal_tff_gaussian_fixed(tff_context: None) -> None:
    # Two devices, 3-4-12 (norm 13) and 0-0-1, clipped to 6.5, averaged over
    # an expected 4 clients per round, no noise.
    factory = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=0.0, clients_per_round=4, clip=6.5
    )
    process = factory.create(struct_type({"a": [2], "b": [1]}))
    updates = [{"a": f32(3, 4), "b": f32(12)}, {"a": f32(0, 0), "b": f32(1)}]
    strategy = CentralDP(FedAvg(), clip_norm=6.5, noise_multiplier=0.0, clients_per_round=4)
    mean = StreamingMean()
    for update in updates:
        prepared = strategy.prepare(update, num_examples=100)
        mean.add(prepared.delta, prepared.weight)
    zeros = {"a": f32(0, 0), "b": f32(0)}

    theirs = process.next(
        process.initialize(), [collections.OrderedDict(u) for u in updates]
    ).result
    ours = strategy.next_weights(zeros, ServerState(), mean).new_weights

    # ([1.5, 2, 6] + [0, 0, 1]) / 4 = [0.375, 0.5, 1.75]
    np.testing.assert_allclose(theirs["a"], f32(0.375, 0.5), rtol=1e-6)
    np.testing.assert_allclose(theirs["b"], f32(1.75), rtol=1e-6)
    for name in ("a", "b"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6)


def test_noise_scale_and_privacy_event_equal_tff_gaussian_fixed(tff_context: None) -> None:
    from tensorflow_federated.python.aggregators.differential_privacy import (
        extract_dp_event_from_state,
    )

    noise_multiplier, clip, clients, size = 1.2, 2.0, 4, 20_000
    factory = tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
        noise_multiplier=noise_multiplier, clients_per_round=clients, clip=clip
    )
    process = factory.create(tff.TensorType(np.float32, [size]))
    strategy = CentralDP(FedAvg(), clip, noise_multiplier, seed=0, clients_per_round=clients)
    zeros = np.zeros(size, np.float32)
    mean = StreamingMean()
    for _ in range(clients):
        mean.add({"w": zeros}, 1.0)

    output = process.next(process.initialize(), [zeros] * clients)
    ours = strategy.next_weights({"w": zeros}, ServerState(), mean).new_weights["w"]

    expected = noise_multiplier * clip / clients  # 0.6
    assert strategy.noise_std(clients) == pytest.approx(expected)
    # 20k samples each estimate a std to about 0.5% (one standard error)
    assert np.std(output.result) == pytest.approx(expected, rel=0.03)
    assert np.std(ours) == pytest.approx(expected, rel=0.03)
    event = extract_dp_event_from_state(output.state)
    assert event.noise_multiplier == pytest.approx(noise_multiplier)
    import dp_accounting  # type: ignore[import-untyped]

    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event)
    assert epsilon(noise_multiplier, 1.0, 1, 1e-5) == pytest.approx(accountant.get_epsilon(1e-5))
