"""The Python API: `import orchard`, ImageFeaturizer, VariancePCA, Pipeline save/load, run().

The end-to-end test fits a Pipeline in one Spark, loads it in another (a subprocess: this file
run as a script) and compares its features with `orchard run`'s on the same images: the session's
one run of the sample (tests/fixtures/sample.py), the Pipeline on a few of its classes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import orchard
from orchard.api import spark_conf_for
from orchard.errors import OrchardError
from orchard.local import profiles
from orchard.pipeline.config import RunConfig
from orchard.pipeline.featurize import ImageFeaturizer
from orchard.pipeline.models import get_spec, onnx_session
from orchard.pipeline.preprocess import preprocess
from orchard.pipeline.reduce import VariancePCA, VariancePCAModel, choose_k
from tests.conftest import MODEL_FILE, REPO
from tests.fixtures.processes import run_captured
from tests.fixtures.tables import table_of

SETTING_KEYS = (
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.files.openCostInBytes",
    "spark.sql.sources.parallelPartitionDiscovery.threshold",
)


# ---- import orchard ----------------------------------------------------------------------

def test_import_orchard_is_cheap_and_help_lists_the_api():
    code = ("import sys, pydoc, orchard; assert 'pyspark' not in sys.modules, 'pyspark imported'; "
            "print(sorted(dir(orchard))); print(pydoc.render_doc(orchard, renderer=pydoc.plaintext))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**_env(), "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("ImageFeaturizer", "VariancePCA", "VariancePCAModel", "load_images", "run", "RunConfig",
                 "RunRecord", "OrchardError", "start_spark", "stop_spark"):
        assert f"'{name}'" in result.stdout.splitlines()[0]
        assert name in result.stdout.split("\n", 1)[1]  # help(orchard) shows it


def test_the_exports_are_the_pipeline_classes():
    assert orchard.ImageFeaturizer is ImageFeaturizer and orchard.VariancePCAModel is VariancePCAModel
    assert orchard.RunConfig is RunConfig and orchard.OrchardError is OrchardError
    with pytest.raises(AttributeError):
        orchard.no_such_thing  # noqa: B018


# ---- profiles and Spark settings ---------------------------------------------------------

def test_profile_settings_come_first_and_the_users_win(monkeypatch):
    monkeypatch.setitem(profiles.PROFILES, "lab", lambda: {"spark.master": "spark://lab:7077", "a": "1", "b": "1"})
    config = RunConfig(input="x", output="y", profile="lab", spark_conf={"b": "2", "c": "3"})
    assert spark_conf_for(config) == {"spark.master": "spark://lab:7077", "a": "1", "b": "2", "c": "3"}
    assert spark_conf_for(RunConfig(input="x", output="y", spark_conf={"c": "3"})) == {"c": "3"}
    with pytest.raises(OrchardError, match="unknown profile 'nowhere'"):
        spark_conf_for(RunConfig(input="x", output="y", profile="nowhere"))


# ---- ImageFeaturizer ---------------------------------------------------------------------

def direct_features(files) -> np.ndarray:
    """Features of `files` from ONNX Runtime itself, no Spark."""
    spec = get_spec("mobilenet_v2")
    batch = np.stack([preprocess(Path(f).read_bytes()).array for f in files])
    return onnx_session(str(MODEL_FILE)).run([spec.output_name], {spec.input_name: batch})[0]


@pytest.fixture(scope="module")
def four_images(sample_dir):
    return [sorted((sample_dir / "Training" / label).iterdir())[0] for label in ("Banana", "Lemon", "Kiwi", "Cherry 1")]


def test_featurizer_reads_a_column_of_paths_and_uris(spark, four_images, tmp_path):
    rows = [(str(four_images[0]), 0), (four_images[1].as_uri(), 1), (str(four_images[2]), 2),
            (str(four_images[3]), 3), (str(tmp_path / "missing.jpg"), 4), (None, 5)]
    frame = spark.createDataFrame(rows, "file string, n int")
    before = {key: spark.conf.get(key, None) for key in SETTING_KEYS}
    out = ImageFeaturizer(inputCol="file", batchSize=3).transform(frame)
    assert out.columns == ["file", "n", "features", "width", "height", "error", "decode_ms", "infer_ms"]
    assert dict(out.dtypes)["features"] == "array<float>" and dict(out.dtypes)["width"] == "int"
    got = {row.n: row for row in out.collect()}
    features = np.array([got[n].features for n in range(4)], dtype=np.float32)
    assert features.shape == (4, 1280)
    assert np.abs(features - direct_features(four_images)).max() <= 1e-5
    assert all(got[n].error is None and got[n].width == 100 and got[n].infer_ms > 0 for n in range(4))
    assert got[4].features is None and "could not read" in got[4].error and "missing.jpg" in got[4].error
    assert got[5].features is None and got[5].error == "no path (null)"
    assert {key: spark.conf.get(key, None) for key in SETTING_KEYS} == before


def test_featurizer_error_rows_do_not_break_the_pca(spark, four_images):
    good = [(f.name, f.read_bytes()) for f in four_images]
    bad = [("truncated.jpg", four_images[0].read_bytes()[:300]), ("text.jpg", b"hello"), ("null.jpg", None)]
    frame = spark.createDataFrame(good + bad, "path string, content binary")
    featurized = ImageFeaturizer().transform(frame)
    assert "content" not in featurized.columns  # the image bytes are not carried along
    model = VariancePCA(k=2).fit(featurized)
    rows = {row.path: row for row in model.transform(featurized).collect()}
    assert all(rows[name].error is None and len(rows[name].pca) == 2 for name, _ in good)
    for name, _ in bad:
        assert rows[name].features is None and rows[name].pca is None and rows[name].error
    assert rows["null.jpg"].error == "no image bytes (null)"


def test_featurizer_refuses_what_cannot_work(spark, tmp_path):
    frame = spark.createDataFrame([(1, b"x")], "n int, content binary")
    with pytest.raises(OrchardError, match="no input column 'image'"):
        ImageFeaturizer(inputCol="image").transform(frame)
    with pytest.raises(OrchardError, match="must be binary"):
        ImageFeaturizer(inputCol="n").transform(frame)
    with pytest.raises(OrchardError, match="already has column"):
        ImageFeaturizer(outputCol="n").transform(frame)
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not a model")
    with pytest.raises(OrchardError, match="not an ONNX model"):
        ImageFeaturizer(modelPath=str(not_onnx)).transform(frame)
    with pytest.raises(OrchardError, match="unknown model 'resnet'"):
        ImageFeaturizer(modelName="resnet").transform(frame)


def test_featurizer_params_are_saved_and_loaded(tmp_path):
    featurizer = ImageFeaturizer(inputCol="file", batchSize=4, modelPath=str(MODEL_FILE))
    featurizer.write().save(str(tmp_path / "f"))
    loaded = ImageFeaturizer.load(str(tmp_path / "f"))
    assert (loaded.getInputCol(), loaded.getBatchSize(), loaded.getModelPath(), loaded.getModelName()) == (
        "file", 4, str(MODEL_FILE), "mobilenet_v2")


# ---- VariancePCA ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arrays(spark):
    """120 rows of 12 correlated floats (array<float>), tagged like features of a 12-long model."""
    from pyspark.sql import functions as F

    rng = np.random.default_rng(3)
    data = (rng.normal(size=(120, 12)) @ rng.normal(size=(12, 12))).astype(np.float32)
    frame = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(data)], "id int, features array<float>")
    origin = {"orchard": {"model": "tiny", "dim": 12, "sha256": "0"}}
    return frame.withColumn("features", F.col("features").alias("features", metadata=origin)).persist(), data


def test_variance_pca_with_k(arrays, tmp_path):
    frame, data = arrays
    model = VariancePCA(k=3, outputCol="scores").fit(frame)
    assert model.k == 3 and model.pcaModel.getK() == 3 and len(model.explainedVariance) == 12
    out = model.transform(frame).orderBy("id")
    assert dict(out.dtypes)["scores"] == "array<float>"
    scores = np.array([row.scores for row in out.collect()])
    expected = data.astype(np.float64) @ model.pcaModel.pc.toArray()  # Spark's PCA does not center
    assert scores.shape == (120, 3) and np.abs(scores - expected).max() <= 1e-3 * np.abs(expected).max()
    model.write().save(str(tmp_path / "m"))
    loaded = VariancePCAModel.load(str(tmp_path / "m"))
    assert (loaded.k, loaded.getOutputCol(), loaded.origin["model"]) == (3, "scores", "tiny")
    assert np.allclose(np.array([row.scores for row in loaded.transform(frame).orderBy("id").collect()]), scores)


def test_variance_pca_with_variance(arrays, tmp_path):
    frame, _ = arrays
    estimator = VariancePCA(variance=0.9)
    estimator.write().save(str(tmp_path / "e"))
    model = VariancePCA.load(str(tmp_path / "e")).fit(frame)
    assert model.k == choose_k(model.explainedVariance, 0.9) < 12
    assert model.explainedByK >= 0.9 > sum(model.explainedVariance[: model.k - 1])
    assert {len(row.pca) for row in model.transform(frame).collect()} == {model.k}


def test_the_fit_knows_when_its_input_is_already_cached(arrays, spark):
    from orchard.pipeline.reduce import reads_only_cached_data

    frame, _ = arrays  # persisted: the fit may coalesce it without featurizing on fewer cores
    assert reads_only_cached_data(frame.where("id > 3").drop("id"))
    fresh = spark.createDataFrame([([1.0, 2.0],)], "features array<float>")
    assert not reads_only_cached_data(fresh)  # left as partitioned as it comes


def test_a_model_for_other_features_is_refused(arrays, spark):
    from pyspark.sql import functions as F

    frame, _ = arrays
    model = VariancePCA(k=2).fit(frame)
    other = frame.withColumn("features", F.col("features").alias(
        "features", metadata={"orchard": {"model": "mobilenet_v2", "dim": 1280, "sha256": "1"}}))
    with pytest.raises(OrchardError, match="fitted on tiny features of length 12"):
        model.transform(other)
    untagged = spark.createDataFrame([([1.0] * 5,)], "features array<float>")  # no metadata, 5 long
    with pytest.raises(Exception, match="features has 5 values; this PCA model was fitted on 12"):
        model.transform(untagged).collect()
    with pytest.raises(OrchardError, match="must be array<float> or array<double>"):
        VariancePCA(inputCol="id").fit(frame)
    with pytest.raises(OrchardError, match="could not fit PCA"):
        VariancePCA(k=2).fit(frame.limit(1))


# ---- end to end: Pipeline fitted, saved, loaded in a new Spark; orchard.run ---------------

@pytest.mark.slow
def test_a_saved_pipeline_reproduces_orchard_runs_features(tmp_path, shared_sample_run, sample_subset):
    # `orchard run`'s features: the session's one run of the whole sample; the Pipeline's: a few
    # of its classes (the same relative paths), all their Training and Test images
    run_dir = shared_sample_run.output
    assert shared_sample_run.record.counts.errors == 0, shared_sample_run.record.counts
    script = run_captured([sys.executable, "-m", "tests.test_api", str(tmp_path), str(sample_subset)],
                          timeout=600, env=_env(), cwd=REPO)
    assert script.returncode == 0, script.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["first_before"] == report["first_after"]  # no setting of the caller's session changed
    assert report["second_before"] == report["second_after"]
    assert report["k"] >= 2 and report["origin"]["dim"] == 1280

    by_run = table_of(run_dir, "features", columns=["path", "split", "features"]).to_pandas()
    test_paths = {image.relative_to(sample_subset).as_posix() for image in (sample_subset / "Test").rglob("*.jpg")}
    by_run = by_run[by_run["split"] == "Test"].set_index("path")
    by_run = by_run[by_run.index.isin(test_paths)]  # the subset's Test images, as the run of the sample has them
    by_api = pq.read_table(tmp_path / "test-features").to_pandas().set_index("path")
    assert len(by_api) == len(by_run) == len(test_paths) and by_api["error"].isna().all()
    assert {len(v) for v in by_api["pca"]} == {report["k"]}
    api_features = np.stack(by_api["features"].to_list())
    run_features = np.stack(by_run.loc[by_api.index, "features"].to_list())
    assert np.abs(api_features - run_features).max() <= 1e-5


def _env():
    import os

    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}


def _settings(spark) -> dict:
    return {"sql": {key: spark.conf.get(key, None) for key in SETTING_KEYS},
            "context": sorted(spark.sparkContext.getConf().getAll())}


def _fit_save_load_transform(folder: Path, images_root: Path) -> None:
    """Fit on the Training rows of the images below `images_root`, save, stop Spark; in a new
    Spark, load and transform the Test rows; write them and what the sessions' settings were to
    `folder`."""
    from pyspark.ml import Pipeline, PipelineModel

    spark = orchard.start_spark("local[2]")
    first_before = _settings(spark)
    images = orchard.load_images(spark, str(images_root))
    stages = [orchard.ImageFeaturizer(), orchard.VariancePCA(variance=0.95)]
    Pipeline(stages=stages).fit(images.where("split = 'Training'")).save(str(folder / "model"))
    first_after = _settings(spark)
    orchard.stop_spark(spark)

    spark = orchard.start_spark("local[2]")
    second_before = _settings(spark)
    model = PipelineModel.load(str(folder / "model"))
    test = orchard.load_images(spark, str(images_root)).where("split = 'Test'")
    model.transform(test).select("path", "features", "pca", "error").write.parquet(str(folder / "test-features"))
    report = {"first_before": first_before, "first_after": first_after, "second_before": second_before,
              "second_after": _settings(spark), "k": model.stages[1].k, "origin": model.stages[1].origin}
    (folder / "report.json").write_text(json.dumps(report))
    orchard.stop_spark(spark)


if __name__ == "__main__":
    _fit_save_load_transform(Path(sys.argv[1]), Path(sys.argv[2]))
