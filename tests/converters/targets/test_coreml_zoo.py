"""Core ML for the models users bring (:mod:`tests.converters.zoo_coreml`):
each exports at fp32 and fp16, runs in the NumPy MIL evaluator, and passes
the default parity gate; fp16 is judged by error relative to the output's
range, which a regressor can pass too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fedge.converters.options import ConvertOptions, Tolerance
from fedge.converters.parity.compare import compare, relative_error
from fedge.converters.targets.coreml import ENTRY, export, load_predictor
from tests.converters.zoo_coreml import ZOO, mobilenet_v2

Array = npt.NDArray[Any]
SAMPLES = 100  # 64 + 36: two batches


@dataclass(frozen=True)
class Run:
    name: str
    precision: str
    reference: Array
    got: Array


def random_inputs(model: Any) -> list[Array]:
    rng = np.random.default_rng(7)
    return [
        rng.uniform(0.0, 1.0, size=(SAMPLES, *t.shape[1:])).astype(np.float32) for t in model.inputs
    ]


def run_coreml(model: Any, precision: str, bundle: Path, inputs: list[Array]) -> Array:
    artifact = export(model, bundle, ConvertOptions(coreml_precision=precision))
    (got,) = load_predictor(bundle, {"entry": ENTRY, **artifact.options}).predict(inputs)
    return got


@pytest.fixture(
    scope="module",
    params=[(m, p) for m in ZOO for p in ("fp32", "fp16")],
    ids=lambda mp: f"{mp[0]}-{mp[1]}",
)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    name, precision = request.param
    model = ZOO[name]()
    inputs = random_inputs(model)

    got = run_coreml(model, precision, tmp_path_factory.mktemp(f"{name}-{precision}"), inputs)

    return Run(name, precision, model.predict(inputs, verbose=0), got)


def test_the_evaluator_matches_keras(run: Run) -> None:
    assert run.got.shape == run.reference.shape
    error = float(np.max(np.abs(run.got - run.reference)))
    if run.precision == "fp32":
        assert error <= 1e-4
    else:
        # fp16 keeps about 3 significant digits: within 0.5 % of the range.
        assert 0 < relative_error([run.reference], [run.got]) <= 5e-3


def test_the_default_gate_passes(run: Run) -> None:
    tolerance = ConvertOptions(coreml_precision=run.precision).tolerance("coreml")

    report = compare([run.reference], [run.got], tolerance, run.precision)

    assert report.status == "pass", report.reason
    assert report.max_rel_err is not None and report.max_rel_err <= 1e-2


def test_relative_error_is_against_the_range_of_keras_outputs() -> None:
    # Keras says 10..30 (range 20); the runtime is 0.1 off on one sample.
    reference = np.array([[10.0], [20.0], [30.0]], np.float32)
    close = reference + np.array([[0.0], [0.1], [0.0]], np.float32)
    far = reference + np.array([[0.0], [0.5], [0.0]], np.float32)
    tolerance = Tolerance(max_rel_err=0.01)

    near_report = compare([reference], [close], tolerance, "fp16")
    far_report = compare([reference], [far], tolerance, "fp16")

    assert relative_error([reference], [close]) == pytest.approx(0.1 / 20, rel=1e-4)
    assert near_report.status == "pass"
    assert near_report.reason == "max abs error 0.1 (0.5% of the output range) on 3 samples"
    assert far_report.status == "fail"
    assert far_report.reason.startswith(
        "max abs error 0.5 is 2.5% of the range of Keras's outputs (20); the bound is 1%"
    )


def test_a_failed_fp16_check_names_the_full_precision_option() -> None:
    reference = np.array([[0.0], [1.0]], np.float32)
    report = compare([reference], [reference + 0.1], Tolerance(max_rel_err=0.01), "fp16")

    message = report.explain("coreml")

    assert report.status == "fail"
    assert message.endswith("; --coreml-precision fp32 converts at full precision")


def test_mobilenet_v2_runs_exactly_at_fp32_and_fp16_fails_as_keras_would(tmp_path: Path) -> None:
    # Untrained, MobileNetV2 amplifies rounding through its 17 blocks: Keras
    # itself, with the weights rounded to fp16, moves its outputs by several
    # percent. The gate must say so (and name fp32), not pass it.
    model = mobilenet_v2()
    inputs = random_inputs(model)
    reference = model.predict(inputs, verbose=0)
    tolerance = ConvertOptions().tolerance("coreml")

    fp32 = run_coreml(model, "fp32", tmp_path / "fp32", inputs)
    fp16 = run_coreml(model, "fp16", tmp_path / "fp16", inputs)
    report = compare([reference], [fp16], tolerance, "fp16")
    model.set_weights([w.astype(np.float16).astype(np.float32) for w in model.get_weights()])
    keras_fp16_weights = relative_error([reference], [model.predict(inputs, verbose=0)])

    assert float(np.max(np.abs(fp32 - reference))) <= 1e-4
    assert report.status == "fail"
    assert report.explain("coreml").endswith("--coreml-precision fp32 converts at full precision")
    assert keras_fp16_weights > 0.01
    assert 0.01 < relative_error([reference], [fp16]) < 2 * keras_fp16_weights
    assert float(np.mean(fp16.argmax(axis=1) == reference.argmax(axis=1))) >= 0.9


def test_the_frontend_fix_is_undone_after_a_conversion(tmp_path: Path) -> None:
    from coremltools.converters.mil.frontend.tensorflow import ops
    from coremltools.converters.mil.frontend.tensorflow.tf_op_registry import _TF_OPS_REGISTRY

    export(ZOO["bidirectional_gru"](), tmp_path, ConvertOptions(coreml_precision="fp32"))

    assert _TF_OPS_REGISTRY["SplitV"] is ops.SplitV  # coremltools' own, for anyone else
    assert "OnesLike" not in _TF_OPS_REGISTRY  # fedge's conversion only while fedge converts
