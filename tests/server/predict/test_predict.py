"""Model as a service: ``POST /v1/models/{name}/predict`` on a real ``fedge serve``.

The server runs the TFLite artifact of the bundle it serves; its numbers are
compared with the same flatbuffer run here in ``tf.lite.Interpreter``. Bad
requests get a 4xx with a stable code, and the data directory is byte for
byte the same afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import requests
import yaml
from jsonschema import Draft202012Validator

from fedge.bundle.manifest import Manifest, open_bundle
from fedge.converters.bundle import convert
from fedge.converters.options import ConvertOptions
from fedge.server.config import load_config
from fedge.server.errors import ConfigurationError
from fedge.server.predict.codec import PredictResult, predict_body
from tests.helpers.live_server import running
from tests.helpers.stores import Stores
from tests.server.releases.test_bundle_serving import enrol, snapshot

SPEC_PATH = Path(__file__).resolve().parents[3] / "server" / "openapi.yaml"
PREDICT = "/v1/models/{name}/predict"
Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Bundle:
    path: Path
    bundle_id: str
    manifest: Manifest

    def tflite(self, feed: dict[str, Array]) -> dict[str, Array]:
        """The bundle's flatbuffer run here, as a device that embeds it would."""
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(self.path / "tflite" / "model.tflite"))
        runner = interpreter.get_signature_runner("serving_default")
        outputs: dict[str, Array] = runner(**feed)
        return outputs


def _bundle(model: Any, root: Path) -> Bundle:
    model.save(root / "model.keras")
    options = ConvertOptions(targets=("tflite",), verify=False, tflite_training=False)
    convert(root / "model.keras", root / "bundle", options)
    opened = open_bundle(root / "bundle")
    return Bundle(root / "bundle", opened.bundle_id, opened.manifest)


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A small CNN: an 8x8 grey image in, three class probabilities out."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    image = tf.keras.Input((8, 8, 1), name="image")
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    probs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return _bundle(tf.keras.Model(image, probs, name="pixels"), tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def mixed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Two inputs (token ids into a 10-word embedding, float features) and two outputs."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(6)
    tokens = tf.keras.Input((4,), dtype="int32", name="tokens")
    features = tf.keras.Input((2, 3), name="features")
    embedded = tf.keras.layers.Flatten(name="flat_tokens")(
        tf.keras.layers.Embedding(10, 2, name="embed")(tokens)
    )
    flat = tf.keras.layers.Flatten(name="flat_features")(features)
    hidden = tf.keras.layers.Dense(5, activation="tanh", name="hidden")(
        tf.keras.layers.Concatenate(name="join")([embedded, flat])
    )
    score = tf.keras.layers.Dense(2, name="score")(hidden)
    probs = tf.keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
    model = tf.keras.Model([tokens, features], [score, probs], name="mixed")
    return _bundle(model, tmp_path_factory.mktemp("mixed"))


@dataclass
class Server:
    url: str
    data_dir: Path
    token: str
    model: str
    stores: Stores

    def predict(
        self,
        body: Any = None,
        data: bytes | None = None,
        token: str | None = "device",
        model: str | None = None,
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'device' else token}"
        if data is None:
            data = json.dumps(body).encode()  # allow_nan: NaN is sent as written
        return requests.post(
            f"{self.url}/v1/models/{model or self.model}/predict",
            data=data,
            headers=headers,
            timeout=120,
        )


@contextmanager
def _serve(
    root: Path, args: list[str], stores: Stores, environ: dict[str, str] | None = None
) -> Iterator[Server]:
    """``fedge serve`` with a round that stays open (nothing changes by
    itself), on the store kind of ``stores``."""
    log = root / "server.log"
    data_dir = root / "data"
    args = [*args, "--deadline", "3600", *stores.serve_args(data_dir)]
    with running(data_dir, args, log, environ=environ) as live:
        (model,) = requests.get(f"{live.url}/v1/models", timeout=30).json()["models"]
        yield Server(live.url, data_dir, enrol(live.url), model["name"], stores)


@pytest.fixture(scope="module")
def image_server(
    image_bundle: Bundle, stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # Eight predictions of one device at once (the thread-safety test): the
    # per-device cap (1 by default, tests/server/abuse) is raised here.
    environ = {**os.environ, "FEDGE_PREDICT_CONCURRENCY": "8", "FEDGE_PREDICT_PER_DEVICE": "8"}
    root = tmp_path_factory.mktemp("image_server")
    with _serve(root, ["--model", str(image_bundle.path)], stores, environ) as server:
        yield server


@pytest.fixture(scope="module")
def mixed_server(
    mixed_bundle: Bundle, stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    environ = {**os.environ, "FEDGE_MAX_PREDICT_BATCH": "4"}
    root = tmp_path_factory.mktemp("mixed_server")
    with _serve(root, ["--model", str(mixed_bundle.path)], stores, environ) as server:
        yield server


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def images(rows: int, seed: int = 0) -> Array:
    return np.random.default_rng(seed).random((rows, 8, 8, 1), dtype=np.float32)


def mixed_inputs(rows: int, seed: int = 0) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {
        "tokens": rng.integers(0, 10, (rows, 4), dtype=np.int32),
        "features": rng.normal(size=(rows, 2, 3)).astype(np.float32),
    }


def outputs_of(response: requests.Response) -> dict[str, Array]:
    assert response.status_code == 200, response.text
    return PredictResult.from_json(response.json()).outputs


def assert_error(response: requests.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body


def assert_documented(spec: dict[str, Any], response: requests.Response) -> None:
    """The response is one the OpenAPI document lists, with its schema."""
    documented = spec["paths"][PREDICT]["post"]["responses"][str(response.status_code)]
    if "$ref" in documented:
        documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[-1]]
    schema = documented["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": spec["components"]}).validate(response.json())


# --- predictions ------------------------------------------------------------


def test_batches_match_the_bundle_s_tflite_run_in_process(
    image_server: Server, image_bundle: Bundle
) -> None:
    # Batches of different sizes one after the other: the interpreter is
    # resized for each, and every row gets its own outputs.
    for rows, seed in ((32, 1), (1, 2), (7, 3)):
        batch = images(rows, seed)

        got = outputs_of(image_server.predict({"inputs": {"image": batch.tolist()}}))

        expected = image_bundle.tflite({"image": batch})
        assert list(got) == ["probs"]
        assert got["probs"].shape == (rows, 3)
        np.testing.assert_allclose(got["probs"], expected["probs"], rtol=0, atol=1e-6)


def test_the_response_names_the_bundle_and_is_as_documented(
    image_server: Server, image_bundle: Bundle, spec: dict[str, Any]
) -> None:
    response = image_server.predict({"inputs": {"image": images(2).tolist()}})

    assert response.status_code == 200, response.text
    assert response.json()["bundle_id"] == image_bundle.bundle_id
    assert response.json()["version"] == image_bundle.manifest.version
    assert_documented(spec, response)


def test_a_one_input_model_takes_a_bare_batch(image_server: Server) -> None:
    batch = images(3, seed=4).tolist()

    named = outputs_of(image_server.predict({"inputs": {"image": batch}}))
    bare = outputs_of(image_server.predict({"inputs": batch}))

    np.testing.assert_array_equal(bare["probs"], named["probs"])


def test_whole_numbers_are_taken_for_a_float_input(
    image_server: Server, image_bundle: Bundle
) -> None:
    batch = np.arange(2 * 64).reshape(2, 8, 8, 1) % 3  # ints: 0, 1, 2

    got = outputs_of(image_server.predict({"inputs": {"image": batch.tolist()}}))

    expected = image_bundle.tflite({"image": batch.astype(np.float32)})
    np.testing.assert_allclose(got["probs"], expected["probs"], rtol=0, atol=1e-6)


def test_concurrent_requests_each_get_their_own_rows(
    image_server: Server, image_bundle: Bundle
) -> None:
    # waitress answers on several threads; a TFLite interpreter is not
    # thread-safe, so each request must have one to itself.
    batches = [images(1 + i % 5, seed=100 + i) for i in range(24)]

    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda b: image_server.predict({"inputs": {"image": b.tolist()}}), batches)
        )

    for batch, answer in zip(batches, answers, strict=True):
        expected = image_bundle.tflite({"image": batch})["probs"]
        np.testing.assert_allclose(outputs_of(answer)["probs"], expected, rtol=0, atol=1e-6)


def test_a_two_input_model_works_by_name(mixed_server: Server, mixed_bundle: Bundle) -> None:
    inputs = mixed_inputs(3, seed=7)
    body = {"inputs": {name: array.tolist() for name, array in inputs.items()}}

    got = outputs_of(mixed_server.predict(body))

    expected = mixed_bundle.tflite(inputs)
    assert sorted(got) == ["probs", "score"]
    for name in ("score", "probs"):
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6, err_msg=name)


def test_the_client_codec_sends_what_the_server_reads(
    mixed_server: Server, mixed_bundle: Bundle
) -> None:
    inputs = mixed_inputs(2, seed=8)

    got = outputs_of(mixed_server.predict(predict_body(inputs)))

    expected = mixed_bundle.tflite(inputs)
    np.testing.assert_allclose(got["score"], expected["score"], rtol=0, atol=1e-6)


# --- refused requests -----------------------------------------------------

ROW = np.zeros((8, 8, 1)).tolist()
NOT_FINITE_BODY = b'{"inputs": {"image": [' + json.dumps(ROW).replace("0.0", "1e999", 1).encode()


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        pytest.param(b"not json", 400, "bad_json", (), id="not-json"),
        pytest.param([ROW], 400, "bad_json", ("object",), id="not-an-object"),
        pytest.param({}, 400, "bad_json", ("inputs",), id="no-inputs"),
        pytest.param({"inputs": {"image": [ROW]}, "x": 1}, 400, "bad_json", ("x",), id="extra"),
        pytest.param({"inputs": "image"}, 400, "bad_json", ("inputs",), id="inputs-a-string"),
        pytest.param(
            {"inputs": {"img": [ROW]}},
            400,
            "unknown_input",
            ("'img'", "'image'", "(batch, 8, 8, 1)"),
            id="wrong-name",
        ),
        pytest.param({"inputs": {}}, 400, "missing_input", ("'image'",), id="missing"),
        pytest.param(
            {"inputs": {"image": [np.zeros((8, 7, 1)).tolist()]}},
            422,
            "bad_shape",
            ("'image'", "(batch, 8, 8, 1)"),
            id="wrong-shape",
        ),
        pytest.param(
            {"inputs": {"image": ROW}},
            422,
            "bad_shape",
            ("'image'", "(batch, 8, 8, 1)"),
            id="no-batch-axis",
        ),
        pytest.param(
            {"inputs": {"image": [ROW, ROW[:7]]}},
            422,
            "bad_shape",
            ("'image'", "(batch, 8, 8, 1)"),
            id="ragged",
        ),
        pytest.param(
            {"inputs": {"image": [np.zeros((8, 8, 1, 1)).tolist()]}},
            422,
            "bad_shape",
            ("'image'",),
            id="too-deep",
        ),
        pytest.param({"inputs": {"image": []}}, 422, "bad_shape", ("row",), id="empty-batch"),
        pytest.param(
            {"inputs": {"image": [np.full((8, 8, 1), "0.5").tolist()]}},
            422,
            "bad_dtype",
            ("'image'", "string"),
            id="strings",
        ),
        pytest.param(
            {"inputs": {"image": [np.full((8, 8, 1), True).tolist()]}},
            422,
            "bad_dtype",
            ("'image'", "boolean"),
            id="booleans",
        ),
        pytest.param(
            {"inputs": {"image": [np.full((8, 8, 1), None).tolist()]}},
            422,
            "bad_dtype",
            ("'image'", "null"),
            id="nulls",
        ),
        pytest.param(
            {"inputs": {"image": [np.full((8, 8, 1), np.nan).tolist()]}},
            400,
            "bad_json",
            ("NaN",),
            id="nan",
        ),
        pytest.param(NOT_FINITE_BODY + b"]}}", 422, "not_finite", ("'image'",), id="1e999"),
        pytest.param(
            {"inputs": {"image": [np.full((8, 8, 1), 1e39).tolist()]}},
            422,
            "out_of_range",
            ("'image'", "float32"),
            id="beyond-float32",
        ),
        pytest.param(
            {"inputs": {"image": [ROW] * 257}},
            413,
            "batch_too_large",
            ("257", "256"),
            id="batch-over-256",
        ),
        pytest.param(
            b'{"inputs": {"image": [' + b" " * (3 << 20) + b"]}}",
            413,
            "payload_too_large",
            (),
            id="body-over-the-limit",
        ),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    image_server: Server,
    spec: dict[str, Any],
    body: Any,
    status: int,
    code: str,
    words: tuple[str, ...],
) -> None:
    before = snapshot(image_server.data_dir, image_server.stores)

    if isinstance(body, bytes):
        response = image_server.predict(data=body)
    else:
        response = image_server.predict(body)

    assert_error(response, status, code, *words)
    assert_documented(spec, response)
    assert snapshot(image_server.data_dir, image_server.stores) == before


def test_a_device_token_is_required(image_server: Server) -> None:
    body = {"inputs": [ROW]}

    assert_error(image_server.predict(body, token=None), 401, "unauthorized")
    assert_error(image_server.predict(body, token="not-a-token"), 401, "unauthorized")


def test_another_model_name_is_not_found(image_server: Server) -> None:
    response = image_server.predict({"inputs": [ROW]}, model="other")

    assert_error(response, 404, "unknown_model", "'other'")


def tokens_and_features(tokens: Any, features: Any) -> dict[str, Any]:
    return {"inputs": {"tokens": tokens, "features": features}}


FEATURES = np.zeros((1, 2, 3)).tolist()


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        pytest.param({"inputs": [[0, 1, 2, 3]]}, 400, "bad_json", ("tokens",), id="bare-batch"),
        pytest.param(
            {"inputs": {"tokens": [[0, 1, 2, 3]]}},
            400,
            "missing_input",
            ("'features'", "(batch, 2, 3)"),
            id="missing",
        ),
        pytest.param(
            tokens_and_features([[0, 1, 2, 3], [3, 2, 1, 0]], FEATURES),
            422,
            "bad_shape",
            ("'tokens'", "'features'", "2", "1"),
            id="unequal-batches",
        ),
        pytest.param(
            tokens_and_features([[0, 1.5, 2, 3]], FEATURES),
            422,
            "bad_dtype",
            ("'tokens'", "int32", "whole"),
            id="fraction-for-int",
        ),
        pytest.param(
            tokens_and_features([[0, 1, 2, 2**40]], FEATURES),
            422,
            "out_of_range",
            ("'tokens'", "int32"),
            id="beyond-int32",
        ),
        pytest.param(
            tokens_and_features([[0, 1, 2, 10]], FEATURES),
            422,
            "prediction_failed",
            ("'tokens'", "10"),
            id="token-outside-the-vocabulary",
        ),
        pytest.param(
            tokens_and_features([[0, 1, 2, 3]] * 5, FEATURES * 5),
            413,
            "batch_too_large",
            ("5", "4"),
            id="over-max-predict-batch",
        ),
    ],
)
def test_bad_requests_for_a_two_input_model(
    mixed_server: Server,
    spec: dict[str, Any],
    body: Any,
    status: int,
    code: str,
    words: tuple[str, ...],
) -> None:
    before = snapshot(mixed_server.data_dir, mixed_server.stores)

    response = mixed_server.predict(body)

    assert_error(response, status, code, *words)
    assert_documented(spec, response)
    assert snapshot(mixed_server.data_dir, mixed_server.stores) == before


def test_whole_floats_are_taken_for_an_int_input(
    mixed_server: Server, mixed_bundle: Bundle
) -> None:
    inputs = mixed_inputs(1, seed=9)
    body = tokens_and_features(inputs["tokens"].astype(float).tolist(), inputs["features"].tolist())

    got = outputs_of(mixed_server.predict(body))

    np.testing.assert_allclose(got["probs"], mixed_bundle.tflite(inputs)["probs"], atol=1e-6)


def test_a_server_without_a_bundle_answers_no_release(tmp_path: Path, spec: dict[str, Any]) -> None:
    # The built-in reference weights: no bundle, so nothing to run.
    with _serve(tmp_path, [], Stores("sqlite")) as server:
        response = server.predict({"inputs": [ROW]})

        assert_error(response, 404, "no_release", "bundle", "push")
        assert_documented(spec, response)


# --- settings and the codec -------------------------------------------------


def test_max_predict_batch_defaults_to_256_and_must_be_positive() -> None:
    assert load_config(environ={}).max_predict_batch == 256
    assert load_config(environ={"FEDGE_MAX_PREDICT_BATCH": "4"}).max_predict_batch == 4

    with pytest.raises(ConfigurationError, match="max_predict_batch"):
        load_config(environ={}, overrides={"max_predict_batch": 0})


def test_a_result_decodes_null_as_nan() -> None:
    wire = {"outputs": {"y": [[1.5, None]]}, "bundle_id": "b" * 64, "version": "1"}

    result = PredictResult.from_json(wire)

    assert result.bundle_id == "b" * 64
    np.testing.assert_array_equal(result.outputs["y"], np.array([[1.5, np.nan]]))
    assert json.loads(json.dumps(result.to_json())) == wire


def test_a_full_batch_fits_the_predict_route_and_only_that_route(image_server: Server) -> None:
    # 256 rows of 8x8 floats: about 0.3 MB of JSON, over every other route's
    # bound (the largest update or 64 KiB) but within predict's own.
    body = json.dumps({"inputs": {"image": images(256).tolist()}}).encode()
    assert len(body) > 256 * 1024

    accepted = image_server.predict(data=body)
    elsewhere = requests.post(
        f"{image_server.url}/v1/devices",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )

    assert accepted.status_code == 200, accepted.text
    assert len(outputs_of(accepted)["probs"]) == 256
    assert_error(elsewhere, 413, "payload_too_large")
