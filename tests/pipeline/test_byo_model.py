"""Bring your own model: an ONNX graph built here (64x64 NCHW float32 input, mean/std scaling
outside the graph, a named intermediate tensor as the features), its input spec read from the
graph, the tensor exposed in a cached copy, `orchard run --model-path` featurizing with it, the
registry's download path for such a model, and the graphs that do not fit."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchard.errors import OrchardError
from orchard.pipeline import models
from orchard.pipeline.graph import runnable_path
from orchard.pipeline.inference import infer, to_model_input
from orchard.pipeline.models import MIRROR_ENV, MODEL_DIR_ENV, REGISTRY, ModelSpec, onnx_session, resolve_model
from orchard.pipeline.preprocess import preprocess
from tests.fixtures.tables import table_of
from tests.pipeline.test_models import http_folder  # noqa: F401  (a fixture: a real HTTP server)
from tests.test_cli import assert_one_clear_line, orchard

SIZE = 64
MEAN = [0.5, 0.4, 0.3]
STD = [0.2, 0.25, 0.3]
CHANNELS, POOL = 4, 8  # "pooled": [N, 4, 8, 8] -> 256 features per image
FEATURES = "pooled"
rng = np.random.default_rng(16)
WEIGHT = rng.normal(size=(CHANNELS, 3)).astype(np.float32)
BIAS = rng.normal(size=CHANNELS).astype(np.float32) * 0.1
DENSE = rng.normal(size=(CHANNELS, 10)).astype(np.float32)


def build_model(path: Path, input_shape=(None, 3, SIZE, SIZE), dtype=None) -> Path:
    """pixels -> 1x1 Conv -> Relu -> AveragePool 8x8 ("pooled") -> GlobalAveragePool -> Gemm -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = TensorProto.FLOAT if dtype is None else dtype
    nodes = [
        helper.make_node("Conv", ["pixels", "w", "b"], ["mixed"], kernel_shape=[1, 1], name="mix"),
        helper.make_node("Relu", ["mixed"], ["active"], name="relu"),
        helper.make_node("AveragePool", ["active"], [FEATURES], kernel_shape=[POOL, POOL], strides=[POOL, POOL],
                         name="pool"),
        helper.make_node("GlobalAveragePool", [FEATURES], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "dense"], ["logits"], name="classifier"),
    ]
    shape = ["N" if d is None else d for d in input_shape]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("pixels", dtype, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(WEIGHT.reshape(CHANNELS, 3, 1, 1), "w"),
                     numpy_helper.from_array(BIAS, "b"), numpy_helper.from_array(DENSE, "dense")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def numpy_features(pixels: np.ndarray) -> np.ndarray:
    """What the graph's "pooled" tensor is for uint8 [64, 64, 3] pixels, in numpy (float64)."""
    x = (pixels.astype(np.float64) / 255.0 - MEAN) / STD  # [H, W, 3]
    mixed = np.einsum("hwc,oc->ohw", x, WEIGHT.astype(np.float64)) + BIAS[:, None, None]
    active = np.maximum(mixed, 0.0)
    pooled = active.reshape(CHANNELS, SIZE // POOL, POOL, SIZE // POOL, POOL).mean(axis=(2, 4))
    return pooled.reshape(-1)


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return build_model(tmp_path / "tiny.onnx")


def test_input_spec_is_read_from_the_graph_and_the_tensor_exposed(tiny_model):
    spec, path, sha = resolve_model(None, str(tiny_model), feature_output=FEATURES, mean=MEAN, std=STD)
    assert (spec.name, spec.input_name, spec.layout, spec.dtype, spec.image_size) == (
        "tiny", "pixels", "NCHW", "float32", SIZE)
    assert (spec.output_name, spec.feature_dim, spec.expose, spec.fixed_batch) == (FEATURES, 256, True, None)
    assert path == tiny_model and sha == models.sha256_of(tiny_model)
    exposed = runnable_path(spec, path, sha)
    assert exposed != tiny_model and exposed.is_file()
    assert [o.name for o in onnx_session(str(exposed)).get_outputs()] == [FEATURES]


def test_features_equal_numpy_for_any_batch_size(tiny_model, sample_dir):
    spec, path, sha = resolve_model(None, str(tiny_model), feature_output=FEATURES, mean=MEAN, std=STD)
    files = sorted((sample_dir / "Training").rglob("*.jpg"))[::151][:5]
    pixels = [preprocess(file.read_bytes(), SIZE).array for file in files]
    batch = to_model_input(pixels, spec)
    assert batch.shape == (5, 3, SIZE, SIZE) and batch.dtype == np.float32
    session = onnx_session(str(runnable_path(spec, path, sha)))
    expected = np.stack([numpy_features(p) for p in pixels])
    for batch_size in (1, 2, 5):
        got = np.stack(infer(session, spec, pixels, batch_size))
        assert got.shape == (5, 256) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-5


def test_without_feature_output_the_graph_output_is_taken(tiny_model):
    spec = resolve_model("mine", str(tiny_model))[0]
    assert (spec.name, spec.output_name, spec.feature_dim, spec.expose, spec.mean) == ("mine", "logits", 10, False, None)


def test_a_fixed_batch_of_one_is_fed_one_image_at_a_time(tmp_path):
    path = build_model(tmp_path / "one.onnx", input_shape=(1, 3, SIZE, SIZE))
    spec, path, sha = resolve_model(None, str(path), feature_output=FEATURES)
    assert spec.fixed_batch == 1
    pixels = [np.full((SIZE, SIZE, 3), value, dtype=np.uint8) for value in (0, 100, 200)]
    features = infer(onnx_session(str(runnable_path(spec, path, sha))), spec, pixels, batch_size=8)
    assert len(features) == 3 and not np.allclose(features[0], features[2])


@pytest.mark.parametrize("shape,dtype,options,message", [
    ((None, 3, SIZE), None, {}, "has rank 3"),
    ((None, 5, SIZE, SIZE), None, {}, "no 3-channel (RGB) axis"),
    ((None, 3, None, None), None, {}, "fixed square image size"),
    ((None, 3, SIZE, 32), None, {}, "fixed square image size"),
    ((None, 3, SIZE, SIZE), 7, {}, "element type 7"),  # int64
    ((None, SIZE, SIZE, 3), 2, {"mean": [0.5]}, "--mean/--std apply to float32 inputs only"),  # uint8 NHWC
    ((None, 3, SIZE, SIZE), None, {"feature_output": "nope"}, "no tensor 'nope'"),
])
def test_a_model_that_does_not_fit_is_one_clear_error(tmp_path, shape, dtype, options, message):
    path = build_model(tmp_path / "bad.onnx", input_shape=shape, dtype=dtype)
    with pytest.raises(OrchardError) as caught:
        resolve_model(None, str(path), **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_file_that_is_no_onnx_graph_says_so(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07" + b"\xff" * 50)
    with pytest.raises(OrchardError, match="checksum mismatch with every registered model.*cannot be read"):
        resolve_model(None, str(path))


def test_cli_bad_output_name_is_one_line_before_spark_starts(tmp_path, tiny_model, sample_dir):
    result = orchard("run", "--input", str(sample_dir), "--output", str(tmp_path / "o"),
                     "--model-path", str(tiny_model), "--feature-output", "nope", "--mean", "0.5,0.4,0.3")
    assert_one_clear_line(result, "no tensor 'nope'", "logits")
    assert not (tmp_path / "o").exists()


def test_registered_zoo_models_name_their_sources():
    for name in ("vgg16", "resnet50"):
        spec = REGISTRY[name]
        assert spec.url.startswith("https://github.com/onnx/models/raw/main/validated/vision/classification/")
        assert spec.url.endswith("/" + spec.file_name) and spec.file_name in spec.source
        assert len(spec.sha256) == 64 and spec.sha256[:8] in spec.source
        assert (spec.layout, spec.dtype, spec.image_size, spec.expose) == ("NCHW", "float32", 224, True)
        assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)


def test_a_registered_intermediate_output_model_downloads_from_the_mirror(
        tiny_model, http_folder, tmp_path, monkeypatch):  # noqa: F811
    folder, url = http_folder
    shutil.copyfile(tiny_model, folder / "tiny-zoo.onnx")
    spec = ModelSpec(name="tiny_zoo", file_name="tiny-zoo.onnx", sha256=models.sha256_of(tiny_model),
                     url="https://example.invalid/tiny-zoo.onnx", input_name="pixels", output_name=FEATURES,
                     image_size=SIZE, layout="NCHW", dtype="float32", feature_dim=256, description="test",
                     mean=tuple(MEAN), std=tuple(STD), expose=True)
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    monkeypatch.delenv(MODEL_DIR_ENV)
    monkeypatch.setenv(MIRROR_ENV, url)
    fitted, path, sha = resolve_model("tiny_zoo")
    assert path == tmp_path / "cache" / "models" / "tiny-zoo.onnx" and sha == spec.sha256
    assert fitted == dataclasses.replace(spec)  # the graph agrees with the registered spec
    assert runnable_path(fitted, path, sha).is_file()
    (folder / "tiny-zoo.onnx").unlink()  # a second resolution comes from the cache
    assert resolve_model("tiny_zoo")[1] == path


@pytest.mark.slow
def test_orchard_run_featurizes_the_sample_with_your_own_model(tmp_path, tiny_model, sample_dir):
    subset = tmp_path / "subset"
    for label in ("Banana", "Kiwi", "Lemon"):
        target = subset / "Training" / label
        target.mkdir(parents=True)
        for image in sorted((sample_dir / "Training" / label).iterdir())[:6]:
            shutil.copyfile(image, target / image.name)
    output = tmp_path / "out"
    result = orchard("run", "--input", str(subset), "--output", str(output), "--model-path", str(tiny_model),
                     "--feature-output", FEATURES, "--mean", ",".join(map(str, MEAN)),
                     "--std", ",".join(map(str, STD)), "--pca-k", "3", "--batch-size", "4", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((output / "run.json").read_text())
    assert record["counts"]["featurized"] == 18 and record["counts"]["errors"] == 0
    assert record["model"]["name"] == "tiny" and record["model"]["feature_dim"] == 256
    assert record["model"]["output"] == FEATURES
    assert record["model"]["input"] == f"NCHW float32 {SIZE}, mean {MEAN}, std {STD}"
    table = table_of(output, "features").to_pydict()
    assert len(table["path"]) == 18 and set(table["model"]) == {"tiny"}
    for location, features in zip(table["path"], table["features"]):  # paths relative to the input
        expected = numpy_features(preprocess((subset / location).read_bytes(), SIZE).array)
        assert np.abs(np.asarray(features) - expected).max() <= 1e-5, location
