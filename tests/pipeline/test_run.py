"""End to end on the shared sample: counts, features against a direct ONNX Runtime run, PCA, quality."""
import json

import numpy as np
import pytest

from orchard.pipeline.config import RunConfig
from orchard.pipeline.inference import to_model_input
from orchard.pipeline.models import get_spec, onnx_session
from orchard.pipeline.run import StageTimer, run_pipeline
from orchard.pipeline.preprocess import preprocess
from orchard.pipeline.reduce import choose_k
from orchard.table.read import open_table
from tests.fixtures.tables import table_of

pytestmark = pytest.mark.slow

RUN_JSON_KEYS = [  # run.json's keys, in order, as they were before the RunRecord
    "orchard_version", "started_at", "input", "output", "counts", "ignored_files", "model", "pca",
    "partitions", "cores", "seconds", "stage_started_at", "udf_seconds", "master", "executors",
    "spark", "versions", "config", "history",  # history: added by runs that grow
    "table",  # the Delta table versions the run committed
]


@pytest.fixture(scope="module")
def sample_run(shared_sample_run):
    """(output, record) of the session's one run of the sample (tests/fixtures/sample.py:
    `orchard.run`, i.e. run_pipeline, with the default settings and the shared model)."""
    return shared_sample_run.output, shared_sample_run.record


def test_counts_reconcile_and_match_the_dataset(sample_run):
    output, record = sample_run
    counts = record.to_dict()["counts"]
    assert counts == {"found": 1920, "images": 1920, "featurized": 1920, "errors": 0, "ignored": 0, "forgotten": 0}
    on_disk = json.loads((output / "run.json").read_text())
    assert on_disk == json.loads(json.dumps(record.to_dict()))  # run.json is the record, key for key
    assert list(on_disk) == RUN_JSON_KEYS
    assert on_disk["model"]["sha256"] == get_spec("mobilenet_v2").sha256
    assert set(on_disk["seconds"]) >= {"spark_start", "list", "featurize", "pca_fit", "write_features"}
    assert on_disk["config"]["input"].endswith("fruits-360-sample")
    assert table_of(output, "errors").num_rows == 0


def test_small_writes_overlap_the_features_write_and_total_is_wall_time(sample_run):
    _, record = sample_run
    started, seconds = record.stage_started_at, record.seconds
    stages = [name for name in seconds if name != "total"]
    assert stages == sorted(stages, key=started.get)  # in start order
    features_end = started["write_features"] + seconds["write_features"]
    for small in ("write_errors", "write_model"):  # in threads of their own
        assert started["write_features"] <= started[small] < features_end
    ends = [started[name] + seconds[name] for name in stages]
    assert seconds["total"] == pytest.approx(max(ends) - min(started.values()), abs=0.002)
    assert seconds["total"] < sum(seconds[name] for name in stages)


def test_the_report_counts_the_images_of_the_featurize_stage(sample_run):
    """`orchard report`'s records per task are Spark's task metrics (rows read from files or from
    a shuffle): the run's featurize stage must show its 1,920 images, not zero."""
    from orchard.analysis.eventlog import load_event_log
    from orchard.analysis.metrics import analyse

    _, record = sample_run
    run = record.to_dict()
    analysis = analyse(load_event_log(run["spark"]["event_log"]), run)
    featurize = [stage for stage in analysis.stages if stage.phase == "featurize"]
    # the test session's log may hold other tests' runs too: this run's featurizing stage is
    # among them (the stage before it deals the paths out: it reads no rows Spark counts)
    assert 1920 in {stage.records for stage in featurize}


def test_stage_timer_total_counts_overlapping_stages_once():
    import threading
    import time

    def beside() -> None:
        with timer.stage("beside"):
            time.sleep(0.05)

    timer = StageTimer()
    with timer.stage("first"):
        worker = threading.Thread(target=beside)
        worker.start()
        time.sleep(0.01)
        with timer.stage("second"):
            time.sleep(0.1)
        worker.join()
    assert list(timer.seconds) == ["first", "beside", "second"]  # start order
    assert timer.seconds["beside"] >= 0.05 and timer.seconds["second"] >= 0.1
    assert timer.total() == pytest.approx(timer.seconds["first"], abs=0.002)
    assert timer.total() < sum(timer.seconds.values())
    assert StageTimer().total() == 0.0


def test_schema_paths_labels_and_splits(sample_run):
    output, _ = sample_run
    table = table_of(output, "features")
    assert table.column_names == ["path", "label", "split", "features", "pca", "model", "width", "height",
                                  "decode_ms", "infer_ms", "size", "mtime_ms"]
    # the table's schema (Delta's, every column nullable) has no column metadata (the featurizer's
    # is dropped), and every row has its pca
    delta_schema = json.loads(open_table(str(output)).schema().to_json())
    assert all(field["metadata"] == {} for field in delta_schema["fields"])
    assert table.column("pca").null_count == 0 and table.column("size").null_count == 0
    frame = table.select(["path", "label", "split", "width"]).to_pandas()
    assert frame["path"].is_unique and len(frame) == 1920
    assert "Training/Apple Braeburn/0_100.jpg" in set(frame["path"])  # real spaces, not %20
    assert frame["label"].nunique() == 24
    assert frame.groupby("split").size().to_dict() == {"Test": 480, "Training": 1440}
    first = frame[frame["path"] == "Training/Apple Braeburn/0_100.jpg"].iloc[0]
    assert (first["label"], first["split"], first["width"]) == ("Apple Braeburn", "Training", 100)


def test_features_equal_a_direct_onnx_runtime_run(sample_run, sample_dir, model_file):
    output, _ = sample_run
    frame = table_of(output, "features", columns=["path", "features"]).to_pandas()
    chosen = frame.sort_values("path").iloc[::48]  # 40 images across classes and splits
    spec = get_spec("mobilenet_v2")
    pixels = [preprocess((sample_dir / path).read_bytes()).array for path in chosen["path"]]
    direct = onnx_session(str(model_file)).run(
        [spec.output_name], {spec.input_name: to_model_input(pixels, spec)})[0]
    spark_features = np.stack(chosen["features"].to_list())
    assert spark_features.shape == (40, 1280)
    assert np.abs(spark_features - direct).max() <= 1e-4


def test_pca_k_is_the_smallest_reaching_the_target(sample_run):
    output, record = sample_run
    pca = record.pca
    ratios = pca["explained_variance_ratios"]
    assert pca["k"] == choose_k(ratios, 0.95)
    assert sum(ratios[: pca["k"]]) >= 0.95 > sum(ratios[: pca["k"] - 1])
    lengths = {len(v) for v in table_of(output, "features", columns=["pca"]).column("pca").to_pylist()}
    assert lengths == {pca["k"]}
    assert (output / "pca_scree.png").read_bytes().startswith(b"\x89PNG")


def test_saved_pca_model_reproduces_the_pca_column(sample_run, spark):
    from pyspark.ml.feature import PCAModel

    from orchard.pipeline.reduce import project

    output, _ = sample_run
    model = PCAModel.load(str(output / "pca_model"))
    table = spark.read.format("delta").load(str(output / "features")).limit(50)
    again = project(table.withColumnRenamed("pca", "pca_written"), model).toPandas()
    written, recomputed = np.stack(again["pca_written"]), np.stack(again["pca"])
    assert np.abs(written - recomputed).max() <= 1e-4


def test_logistic_regression_on_pca_scores_at_least_97_percent(sample_run, spark):
    from orchard.analysis.classifier import evaluate_features

    output, _ = sample_run
    result = evaluate_features(spark, str(output / "features"), column="pca")
    print(result)
    assert (result["train_rows"], result["test_rows"], result["classes"]) == (1440, 480, 24)
    assert result["accuracy"] >= 0.97


def test_fixed_k_and_no_output_clobbering(spark, sample_dir, model_file, tmp_path):
    from orchard.errors import OrchardError

    subset = tmp_path / "subset" / "Training"
    for label in ("Banana", "Lemon"):
        (subset / label).mkdir(parents=True)
        for image in sorted((sample_dir / "Training" / label).iterdir())[:6]:
            (subset / label / image.name).write_bytes(image.read_bytes())
    output = tmp_path / "out"
    config = RunConfig(input=str(tmp_path / "subset"), output=str(output), model_path=str(model_file), pca_k=3)
    record = run_pipeline(config, spark=spark)
    assert record.pca_k == 3 and record.counts.featurized == 12
    with pytest.raises(OrchardError, match="already exists; pass --overwrite"):
        run_pipeline(config, spark=spark)
    config.overwrite = True
    assert run_pipeline(config, spark=spark).counts.featurized == 12


def test_original_size_images(spark, model_file, tmp_path):
    """Fruits-360 'original size' photos (130-875 px wide): featurized, original sizes recorded."""
    from tests.conftest import DATA

    output = tmp_path / "original"
    config = RunConfig(input=str(DATA / "fruits-360-original-sample"), output=str(output),
                       model_path=str(model_file), pca_k=5)
    record = run_pipeline(config, spark=spark)
    assert record.counts.featurized == 100 and record.counts.errors == 0
    frame = table_of(output, "features", columns=["label", "split", "width", "height"]).to_pandas()
    assert frame["label"].nunique() == 10 and set(frame["split"]) == {"Training"}
    assert frame["width"].nunique() > 50 and frame["width"].max() > 448
