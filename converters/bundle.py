"""``fedge convert``: one Keras model to a verified bundle.

Pipeline, per requested target: export -> run on held-out inputs -> compare
with Keras. Everything is written into a temporary directory beside the
destination and renamed into place at the end, so a failed conversion
leaves no partial bundle. A target that fails (export error or parity out
of tolerance) is left out of the bundle and named in the manifest's
``failures``; with ``strict`` it fails the whole conversion instead; with
``keep_failed`` its files stay, its ``artifacts.<target>`` record says
``"verified": false`` and why, and it is still named in ``failures``.

The TFLite training artifact (``train.tflite``) is made after the TFLite
model passed, and checked by one SGD step against Keras
(``parity.tflite_train``). It is a target like the others: a step out of
tolerance is named in ``failures`` as ``tflite_train`` (the conversion
fails with ``strict``), and ``train.tflite`` is left out (``training`` is
null and ``training_skipped`` says why) unless ``keep_failed``. A model
that cannot have one (several outputs, a compiled loss it cannot take)
says so in ``training_skipped``.

int8 is calibrated on the user's data or the reference task's, never on
random numbers (:func:`fedge.converters.parity.samples.calibration_samples`);
every parity record names its inputs and their range.

Every bundle also carries the model's weights as a fedge checkpoint
(``weights.safetensors``, the ``weights`` artifact), so the server and the
devices read them without TensorFlow.

The reference task's data (digit labels, the digits test split, a test
accuracy in the model card) goes to the reference model only, recognised
by its name and weight spec (:func:`fedge.reference.weights.is_reference_model`);
any other model gets the labels and samples its user gives, or none.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fedge.bundle.manifest import Manifest, TensorSpec, write_manifest
from fedge.bundle.weights import WEIGHTS_ARTIFACT, WEIGHTS_FILE, WEIGHTS_OPTIONS, write_weights
from fedge.converters.artifact import Artifact, describe_files
from fedge.converters.errors import (
    ConversionError,
    RuntimeUnavailableError,
    TargetFailedError,
    UnsupportedOpError,
)
from fedge.converters.model_card import render_model_card
from fedge.converters.options import TRAIN_TARGET, ConvertOptions
from fedge.converters.parity.compare import ParityReport, compare, unverified
from fedge.converters.parity.golden import add_golden
from fedge.converters.parity.samples import (
    SampleSet,
    calibration_samples,
    is_reference_task,
    load_samples,
)
from fedge.converters.source.features import feature_names_for, resolve_unnamed
from fedge.converters.source.labels import check_labels
from fedge.converters.source.model_io import (
    input_specs,
    keras_scope,
    load_model,
    output_specs,
    source_kind,
)
from fedge.converters.source.vocabulary import vocabularies_for
from fedge.converters.targets.registry import TARGETS
from fedge.converters.targets.tflite_training import (
    attach_training,
    why_no_training,
    with_failed_training,
    without_training,
)
from fedge.converters.targets.training_loss import UnsupportedLossError, resolve_loss
from fedge.reference.data import LABELS
from fedge.wire.update_codec import CodecError
from fedge.wire.weight_spec import ModelSpec, WeightSpecError

MODEL_CARD_FILE = "MODEL_CARD.md"
TRAIN_CHECK_ROWS = 32
Progress = Callable[[str, str], None]


@dataclass
class TargetOutcome:
    target: str
    artifact: Artifact | None = None
    parity: ParityReport | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BundleResult:
    path: Path
    manifest: Manifest
    outcomes: list[TargetOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes if not o.ok]


def convert(
    model_path: Path,
    out_dir: Path,
    options: ConvertOptions,
    progress: Progress | None = None,
    force: bool = False,
) -> BundleResult:
    options.validate()
    say = progress or (lambda target, message: None)
    if out_dir.exists() and not force:
        raise ConversionError(f"{out_dir} already exists; choose another --out or use --force")
    say("keras", "loading")
    model = load_model(model_path, options)
    check_labels(output_specs(model), options.labels)
    features = feature_names_for(
        input_specs(model),
        resolve_unnamed(input_specs(model), options.feature_names),
        options.samples_path,
    )
    vocabularies = vocabularies_for(model, options.vocabularies)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with keras_scope(options):  # the bundle loads its Keras copy back for parity
            result = _build(model, model_path, tmp, options, say, (features, vocabularies))
        _move_into_place(tmp, out_dir)
        result.path = out_dir
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(
    model: Any,
    model_path: Path,
    tmp: Path,
    options: ConvertOptions,
    say: Progress,
    names: tuple[dict[str, list[str]], dict[str, list[str]]],  # features, vocabularies
) -> BundleResult:
    calibration = None
    if "tflite" in options.targets and options.tflite_quantize == "int8":
        calibration = calibration_samples(model, options)  # refuses random numbers, up front
    keras_artifact = TARGETS["keras"].exporter()(model, tmp, options)
    weights_artifact = _weights(model, tmp)
    samples = load_samples(model, options.samples_path, options.max_samples, options.seed)
    reference = TARGETS["keras"].loader()(tmp, _record(keras_artifact)).predict(samples.arrays)
    outcomes = [
        _convert_target(model, tmp, t, options, samples, reference, say) for t in options.targets
    ]
    tflite = next((o for o in outcomes if o.target == "tflite"), None)
    training = _training(model, model_path, tmp, tflite, options, samples, say) if tflite else None
    if training is not None:
        outcomes.append(training)
    failed = [o for o in outcomes if not o.ok]
    if failed and options.strict:
        raise ConversionError("; ".join(o.error or "" for o in failed) + " (--strict: no bundle)")
    if not any(_ships(o, options) for o in outcomes):
        raise ConversionError("every target failed: " + "; ".join(o.error or "" for o in failed))

    artifacts = {"keras": _record(keras_artifact), WEIGHTS_ARTIFACT: _record(weights_artifact)}
    parity: dict[str, dict[str, Any]] = {}
    if samples.labels is not None:
        artifacts["keras"]["test_accuracy"] = _accuracy(reference, samples)
    for outcome in outcomes:
        if outcome.target in TARGETS and _ships(outcome, options) and outcome.artifact:
            artifacts[outcome.target] = _record(outcome.artifact)
        if outcome.parity is not None:
            parity[outcome.target] = outcome.parity.to_json()
    if calibration is not None and "tflite" in artifacts:
        artifacts["tflite"]["calibration"] = {**calibration.describe(), "rows": calibration.count}
    reference_task = is_reference_task(model)
    manifest = Manifest(
        name=options.name or model.name or model_path.stem,
        version=options.version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        inputs=tuple(TensorSpec(n, s, d) for n, s, d in input_specs(model)),
        outputs=tuple(TensorSpec(n, s, d) for n, s, d in output_specs(model)),
        weights=ModelSpec.from_keras(model),
        labels=_labels(options, reference_task),
        artifacts=artifacts,
        parity=parity,
        failures={o.target: o.error or "" for o in failed},
        features=names[0],
        vocabularies=names[1],
    )
    card = render_model_card(
        manifest, options.description, samples.describe(), int(model.count_params()), reference_task
    )
    (tmp / MODEL_CARD_FILE).write_text(card)
    (document,) = describe_files(tmp, [tmp / MODEL_CARD_FILE])
    manifest.documents["model_card"] = vars(document)
    add_golden(tmp, manifest, samples, reference)  # for the devices' own runtimes
    write_manifest(tmp, manifest)
    return BundleResult(path=tmp, manifest=manifest, outcomes=outcomes)


def _convert_target(
    model: Any,
    tmp: Path,
    target: str,
    options: ConvertOptions,
    samples: SampleSet,
    reference: list[Any],
    say: Progress,
) -> TargetOutcome:
    outcome = TargetOutcome(target)
    spec = TARGETS[target]
    say(target, "converting")
    try:
        # The bundle adds the training artifact itself, once the model passed.
        outcome.artifact = spec.exporter()(model, tmp, replace(options, tflite_training=False))
    except ConversionError as exc:
        outcome.error = str(exc)
        shutil.rmtree(tmp / target, ignore_errors=True)
        say(target, f"failed: {exc}")
        return outcome
    outcome.seconds = outcome.artifact.seconds
    tolerance, precision = options.tolerance(target), options.precision(target)
    if not options.verify:
        outcome.parity = unverified(tolerance, precision, "skipped (--no-verify)")
    else:
        say(target, f"checking parity on {samples.count} samples ({samples.source})")
        try:
            predictor = spec.loader()(tmp, _record(outcome.artifact))
            got = predictor.predict(samples.arrays)
            outcome.parity = replace(
                compare(reference, got, tolerance, precision), inputs=samples.describe()
            )
            if samples.labels is not None:
                outcome.parity = replace(outcome.parity, accuracy=_accuracy(got, samples))
        except (UnsupportedOpError, RuntimeUnavailableError) as exc:
            outcome.parity = unverified(tolerance, precision, str(exc))
        except ConversionError as exc:  # the runtime failed on the exported model
            detail = exc.detail if isinstance(exc, TargetFailedError) else str(exc)
            outcome.error = f"{target}: could not run for parity: {detail}"
            shutil.rmtree(tmp / target, ignore_errors=True)
            say(target, f"failed: {outcome.error}")
            return outcome
    if outcome.parity.status == "fail":
        outcome.error = outcome.parity.explain(target)
        if options.keep_failed:
            failed = {"verified": False, "failure": outcome.error}
            outcome.artifact = replace(
                outcome.artifact, options={**outcome.artifact.options, **failed}
            )
        else:
            shutil.rmtree(tmp / target, ignore_errors=True)
    say(target, outcome.parity.explain(target))
    return outcome


def _ships(outcome: TargetOutcome, options: ConvertOptions) -> bool:
    """Whether a target's files go into the bundle: it passed, or it failed
    parity and ``keep_failed`` keeps it (marked)."""
    if outcome.artifact is None:
        return False
    return outcome.ok or (options.keep_failed and outcome.parity is not None)


def _training(
    model: Any,
    model_path: Path,
    tmp: Path,
    tflite: TargetOutcome,
    options: ConvertOptions,
    samples: SampleSet,
    say: Progress,
) -> TargetOutcome | None:
    """Add ``train.tflite`` to a TFLite artifact that passed, and check one
    step against Keras. None when there is nothing to add: the reason is
    then the TFLite record's ``training_skipped``."""
    if not options.tflite_training or tflite.artifact is None:
        return None
    if source_kind(model) != "keras":
        reason = "a plain SavedModel has no Keras model to train"
        tflite.artifact = without_training(tmp, tflite.artifact, reason)
        return None
    if not tflite.ok:  # kept by keep_failed: no training artifact on top of it
        tflite.artifact = without_training(tmp, tflite.artifact, "the TFLite model failed parity")
        return None
    reason = why_no_training(model)
    try:
        loss = resolve_loss(model, model_path, options)
    except UnsupportedLossError as exc:
        reason = reason or str(exc)
    if reason:
        tflite.artifact = without_training(tmp, tflite.artifact, reason)
        say("tflite", f"no training artifact: {reason}")
        return None
    outcome = TargetOutcome(TRAIN_TARGET)
    say(TRAIN_TARGET, f"converting (loss {loss.name})")
    started = time.perf_counter()
    try:
        tflite.artifact = attach_training(model, tmp, tflite.artifact, loss)
    except ConversionError as exc:
        outcome.error = f"{TRAIN_TARGET}: {exc}"
        tflite.artifact = without_training(tmp, tflite.artifact, f"conversion failed: {exc}")
        say(TRAIN_TARGET, f"failed: {exc}")
        return outcome
    outcome.seconds = time.perf_counter() - started
    record = tflite.artifact.options["training"]
    outcome.artifact = Artifact(
        TRAIN_TARGET,
        record["path"],
        tuple(f for f in tflite.artifact.files if f.path == record["path"]),
        seconds=outcome.seconds,
    )
    tolerance = options.tolerance(TRAIN_TARGET)
    if not options.verify:
        outcome.parity = unverified(tolerance, "fp32", "skipped (--no-verify)")
    else:
        from fedge.converters.parity.training import check_train_step

        say(TRAIN_TARGET, "checking one training step against Keras")
        batch = samples.head(TRAIN_CHECK_ROWS)
        report = check_train_step(model, tmp, record, batch.arrays, tolerance=tolerance)
        outcome.parity = replace(report, inputs=batch.describe())
    if outcome.parity.status == "fail":
        outcome.error = outcome.parity.explain(TRAIN_TARGET)
        tflite.artifact = (
            with_failed_training(tflite.artifact, outcome.error)
            if options.keep_failed
            else without_training(
                tmp, tflite.artifact, f"it failed its check against Keras (failures.{TRAIN_TARGET})"
            )
        )
    say(TRAIN_TARGET, outcome.parity.explain(TRAIN_TARGET))
    return outcome


def _accuracy(outputs: list[Any], samples: SampleSet) -> float:
    return float(np.mean(np.argmax(outputs[0], axis=-1) == samples.labels))


def _record(artifact: Artifact) -> dict[str, Any]:
    """The manifest's ``artifacts.<target>`` entry: entry, files, then options."""
    return {
        "entry": artifact.entry,
        "files": [f.to_record() for f in artifact.files],
        "bytes": artifact.total_bytes,
        "seconds": round(artifact.seconds, 3),
        **artifact.options,
    }


def _labels(options: ConvertOptions, reference_task: bool) -> tuple[str, ...] | None:
    """The user's labels; the digits for the reference model; else none."""
    if options.labels is not None:
        return options.labels
    return LABELS if reference_task else None


def _weights(model: Any, tmp: Path) -> Artifact:
    """The model's weights under their canonical names, as a checkpoint."""
    started = time.perf_counter()
    try:
        path = write_weights(tmp, ModelSpec.from_keras(model), model.get_weights())
    except (WeightSpecError, CodecError) as exc:
        raise ConversionError(f"weights: {exc}") from exc
    return Artifact(
        target=WEIGHTS_ARTIFACT,
        entry=WEIGHTS_FILE,
        files=describe_files(tmp, [path]),
        options=WEIGHTS_OPTIONS,
        seconds=time.perf_counter() - started,
    )


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
