"""The int8 path: a quantized model whose features stay close to fp32's, its cache, its settings."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchard.cli import build_parser
from orchard.errors import OrchardError
from orchard.pipeline.config import RunConfig
from orchard.pipeline.inference import infer
from orchard.pipeline.models import onnx_session, resolve_model, sha256_of
from orchard.pipeline.preprocess import preprocess
from orchard.pipeline.quantize import (
    DEMO_DIR,
    QuantSettings,
    cache_key,
    calibration_of,
    demo_calibration,
    int8_model,
    reduce_range_recommended,
    spread,
)
from orchard.pipeline.run import run_pipeline
from tests.fixtures.tables import table_of

DEMO_FILES = sorted(DEMO_DIR.rglob("*.jpg"))


@pytest.fixture(scope="module")
def quantized(model_file, tmp_path_factory):
    """(spec, fp32 file, sha256, int8 model) quantized on 16 demo images, in a cache of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHARD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        spec, path, sha256 = resolve_model(None, str(model_file))
        return spec, path, sha256, int8_model(spec, path, sha256, demo_calibration(16))


def test_int8_features_stay_close_to_fp32(quantized):
    spec, path, sha256, int8 = quantized
    pixels = [preprocess(f.read_bytes()).array for f in spread(DEMO_FILES[1::2], 8)]  # not the calibration images
    fp32 = np.stack(infer(onnx_session(str(path)), spec, pixels, 8))
    low = np.stack(infer(onnx_session(str(int8.path)), spec, pixels, 8))
    assert low.shape == fp32.shape == (8, 1280) and low.dtype == np.float32
    cosine = (fp32 * low).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(low, axis=1))
    # measured with VNNI: >= 0.97 (mean 0.98, min 0.89 over the 1,920 of the sample); on an AVX2
    # CPU without it (reduce_range): mean 0.89, min 0.75 over 64 demo images
    assert cosine.min() > (0.7 if reduce_range_recommended() else 0.9), cosine
    assert not np.array_equal(fp32, low)  # it is another model


def test_the_int8_file_is_cached_and_recorded(quantized, monkeypatch):
    spec, path, sha256, int8 = quantized
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(int8.path.parents[2]))  # the fixture's cache
    assert int8.path.name.endswith(".int8.onnx") and int8.path.parent.name == "int8"
    assert int8.sha256 != sha256 and int8.fp32_sha256 == sha256
    assert int8.path.stat().st_size < path.stat().st_size / 2  # int8 weights
    modified = int8.path.stat().st_mtime_ns
    again = int8_model(spec, path, sha256, demo_calibration(16))  # the same key: the cached file
    assert again.path == int8.path and again.path.stat().st_mtime_ns == modified and again.sha256 == int8.sha256
    record = int8.record()
    assert record["int8_sha256"] == int8.sha256
    assert record["quantization"]["calibration_images"] == 16
    assert record["quantization"]["per_channel"] is True
    assert (record["quantization"]["activations"], record["quantization"]["weights"]) == ("uint8", "int8")
    json.dumps(record)  # goes into run.json


def test_the_cache_key_changes_with_the_calibration_set_and_settings():
    first = calibration_of([f.read_bytes() for f in DEMO_FILES[:4]], "a")
    same = calibration_of([f.read_bytes() for f in DEMO_FILES[:4]], "another source, the same images")
    other = calibration_of([f.read_bytes() for f in DEMO_FILES[1:5]], "a")
    assert first.digest == same.digest != other.digest
    settings = QuantSettings()
    key = cache_key("ab" * 32, first.digest, settings)
    assert key == cache_key("ab" * 32, same.digest, settings)
    assert key != cache_key("ab" * 32, other.digest, settings)
    assert key != cache_key("cd" * 32, first.digest, settings)
    assert key != cache_key("ab" * 32, first.digest, QuantSettings(format="QDQ"))


def test_calibration_images_that_do_not_decode_are_a_clear_error(model_file):
    spec, path, sha256 = resolve_model(None, str(model_file))
    with pytest.raises(OrchardError, match="no calibration image could be decoded"):
        int8_model(spec, path, sha256, calibration_of([b"not an image"], "junk"))


def test_reduce_range_only_on_x86_without_vnni(tmp_path):
    def cpu(flags: str) -> bool:
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
        return reduce_range_recommended(tmp_path / "cpuinfo")

    assert cpu("avx2 avx512f avx512bw") is True
    assert cpu("avx2 avx512f avx512bw avx512_vnni") is False
    assert cpu("avx2 avx_vnni") is False
    assert cpu("avx2") is True  # AVX2 alone: the same saturating u8s8 kernels
    assert cpu("neon asimd") is False  # not x86
    assert reduce_range_recommended(tmp_path / "missing") is False


def test_spread_picks_evenly_in_order():
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread([1, 2], 5) == [1, 2]


def test_an_unknown_precision_is_a_clear_error():
    with pytest.raises(OrchardError, match="unknown precision 'int4'; choose one of: fp32, int8"):
        RunConfig(input="in", output="out", precision="int4").validate()


def test_the_cli_offers_the_precisions_only(capsys):
    parser = build_parser()
    assert parser.parse_args(["run", "--input", "a", "--output", "b", "--precision", "int8"]).precision == "int8"
    assert parser.parse_args(["serve", "models/fruit", "--precision", "int8"]).precision == "int8"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--input", "a", "--output", "b", "--precision", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_in_int8_records_its_precision_and_int8_model(spark, sample_dir, model_file, tmp_path):
    source = sorted((sample_dir / "Training").iterdir())[:3]
    for folder in source:
        (tmp_path / "in" / "Training" / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:4]:
            shutil.copy(image, tmp_path / "in" / "Training" / folder.name / image.name)
    config = RunConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model_path=str(model_file),
                       precision="int8", pca_k=2)
    record = run_pipeline(config, spark=spark)
    model = json.loads((tmp_path / "out" / "run.json").read_text())["model"]
    assert record.counts.featurized == 12
    assert model["precision"] == "int8" and model["sha256"] != model["int8_sha256"]
    assert sha256_of(Path(model["int8_file"])) == model["int8_sha256"]
    assert model["quantization"]["calibration_images"] == 12  # the input's images
    assert "the input" in model["quantization"]["calibration"]
    assert record.seconds["quantize"] > 0 and "quantize" in record.stage_started_at
    features = np.array(table_of(tmp_path / "out", "features").column("features").to_pylist())
    assert features.shape == (12, 1280) and np.isfinite(features).all()


@pytest.mark.slow
def test_the_featurizer_in_int8_calibrates_on_its_input_and_keeps_the_setting(spark, model_file, tmp_path):
    from orchard.pipeline.featurize import ImageFeaturizer, features_origin

    images = spark.read.format("binaryFile").load([str(f) for f in DEMO_FILES[::20]])
    featurizer = ImageFeaturizer(modelPath=str(model_file), precision="int8")
    featurized = featurizer.transform(images)
    rows = featurized.select("features", "error").collect()
    assert len(rows) == len(DEMO_FILES[::20]) and all(r.error is None and len(r.features) == 1280 for r in rows)
    int8_files = list((tmp_path / "cache" / "models" / "int8").glob("*.int8.onnx"))
    assert len(int8_files) == 1 and features_origin(featurized, "features")["sha256"] == sha256_of(int8_files[0])
    featurizer.write().save(str(tmp_path / "featurizer"))
    assert ImageFeaturizer.load(str(tmp_path / "featurizer")).getPrecision() == "int8"
    with pytest.raises(OrchardError, match="unknown precision"):
        ImageFeaturizer(modelPath=str(model_file), precision="fp16").transform(images)
