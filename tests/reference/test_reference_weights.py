"""The reference weights shipped with fedge, and how the reference model is told apart."""

from __future__ import annotations

from importlib import resources

from fedge.reference.weights import (
    DEFAULT_SEED,
    REFERENCE_MODEL_NAME,
    WEIGHTS_FILE,
    build_initial_weights,
    is_reference_model,
    reference_spec,
)
from fedge.wire.update_codec import Checkpoint, encode_checkpoint
from fedge.wire.weight_spec import ModelSpec, WeightSpec


def test_the_shipped_file_is_the_reference_model_built_with_the_default_seed() -> None:
    # Regenerate with `python -m fedge.reference.weights` when this fails.
    shipped = resources.files("fedge.reference").joinpath(WEIGHTS_FILE).read_bytes()

    built = encode_checkpoint(Checkpoint(round_id=0, weights=build_initial_weights(DEFAULT_SEED)))

    assert built == shipped


def test_the_reference_spec_and_name_are_the_built_model_s() -> None:
    from fedge.reference.model import build_reference_model

    model = build_reference_model()

    assert model.name == REFERENCE_MODEL_NAME
    assert ModelSpec.from_keras(model) == reference_spec()
    assert reference_spec().size == model.count_params() == 38_282
    assert is_reference_model(model.name, ModelSpec.from_keras(model))


def test_only_the_reference_name_with_the_reference_spec_is_the_reference_model() -> None:
    spec = list(reference_spec())
    other_kernel = WeightSpec("probs/kernel", (64, 3), "float32")
    three_classes = [*spec[:-2], other_kernel, WeightSpec("probs/bias", (3,), "float32")]

    assert is_reference_model(REFERENCE_MODEL_NAME, spec)
    assert not is_reference_model("my_cnn", spec)
    assert not is_reference_model(REFERENCE_MODEL_NAME, three_classes)
    assert not is_reference_model(REFERENCE_MODEL_NAME, spec[:-1])
