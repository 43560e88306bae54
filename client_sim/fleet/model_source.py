"""Where a fleet's bundle comes from: the reference CNN (seeded, or trained
centrally on the public part and deployed), or the user's model; and the
check that devices can train it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedge.bundle.manifest import MANIFEST_FILE, VerifiedBundle, open_bundle
from fedge.errors import ConfigError
from fedge.task.objective import Objective

Say = Callable[[str], None]


def build_bundle(out: Path, seed: int, smooth_model: bool = False) -> Path:
    """The reference CNN (or its smooth twin), initialised from the seed, as a TFLite bundle."""
    import tensorflow as tf

    from fedge.reference.model import build_reference_model

    tf.keras.utils.set_random_seed(seed)
    model_path = out / "initial.keras"
    build_reference_model(smooth=smooth_model).save(model_path)
    return _convert(model_path, out / "bundle", seed, verify=False)


def deployed_bundle(out: Path, seed: int, public_fraction: float, say: Say) -> Path:
    """The reference CNN trained centrally on the public part, as a bundle."""
    from fedge.reference.train import TrainConfig, train_reference_model

    say(f"training the deployed model on the public {public_fraction:.0%} of the digits")
    trained = train_reference_model(
        out / "deployed.keras",
        TrainConfig(seed=seed, public_fraction=public_fraction),
        progress=False,
    )
    say("converting the deployed model (TFLite with its training artifact)")
    return _convert(trained.model_path, out / "bundle", seed, verify=True)


def _convert(model_path: Path, bundle: Path, seed: int, verify: bool) -> Path:
    from fedge.converters.bundle import convert
    from fedge.converters.options import ConvertOptions

    options = ConvertOptions(targets=("tflite",), verify=verify, seed=seed, strict=True)
    convert(model_path, bundle, options, force=True)
    return bundle


def user_bundle(model: Path, out: Path, seed: int, say: Say) -> Path:
    """``model`` itself if it is a bundle directory; a Keras model converted to one."""
    if model.is_dir() and (model / MANIFEST_FILE).is_file():
        return model
    if not model.exists():
        raise ConfigError(f"no model at {model}")
    say(f"converting {model.name} (TFLite with its training artifact)")
    return _convert(model, out / "bundle", seed, verify=True)


def training_manifest(bundle: Path) -> tuple[VerifiedBundle, Objective]:
    """The verified bundle, and what training minimises; refuses a bundle
    its devices could not train."""
    verified = open_bundle(bundle)
    manifest = verified.manifest
    tflite = manifest.artifacts.get("tflite") or {}
    training = tflite.get("training")
    if not training:
        why = tflite.get("training_skipped") or "it has no TFLite artifact"
        raise ConfigError(
            f"bundle {bundle} has no TFLite training artifact ({why}); devices cannot train "
            "it: convert the model again without --no-training"
        )
    if training.get("verified") is False:
        raise ConfigError(
            f"bundle {bundle}: its training artifact failed parity ({training.get('failure')})"
        )
    return verified, Objective.from_training(training)
