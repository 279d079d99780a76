"""`orchard train` on the shared sample: accuracy, metrics, and the ONNX export agreeing with Spark."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from orchard.classify.export import read_metadata
from orchard.classify.names import CONFUSION_PNG, METRICS_FILE, MODEL_CARD, ONNX_FILE
from orchard.classify.train import TrainConfig, classification_metrics, spark_probabilities, summary_table, train
from orchard.cli import build_parser
from orchard.errors import OrchardError
from orchard.pipeline.preprocess import preprocess
from tests.conftest import MODEL_FILE, SAMPLE


def test_metrics_from_a_confusion_matrix():
    confusion = np.array([[8, 2, 0], [0, 10, 0], [1, 0, 0]])  # class c: 1 row, never right
    metrics = classification_metrics(confusion, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(18 / 21, abs=1e-6)
    assert metrics["per_class"]["a"] == {"precision": pytest.approx(8 / 9, abs=1e-6), "recall": 0.8,
                                         "f1": pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8), abs=1e-6),
                                         "support": 10}
    assert metrics["per_class"]["c"]["recall"] == 0.0
    f1_b = 2 * (10 / 12) * 1.0 / (10 / 12 + 1.0)
    assert metrics["macro_f1"] == pytest.approx((metrics["per_class"]["a"]["f1"] + f1_b + 0.0) / 3, abs=1e-6)
    assert metrics["most_confused"][0] == {"label": "a", "predicted": "b", "count": 2}


@pytest.mark.parametrize("change, message", [
    ({"on": "pixels"}, "--on must be one of"),
    ({"test_split": "Training"}, "must differ"),
    ({"folds": 1}, "at least 2 folds"),
    ({"reg_params": (-1.0,)}, "non-negative"),
    ({"output": "s3://bucket/model"}, "must be local"),
])
def test_bad_settings_are_refused_before_spark(change, message):
    with pytest.raises(OrchardError, match=message):
        TrainConfig(**{"run": "runs/x", "output": "models/x", **change}).validate()


def test_train_command_options_have_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "predict", "serve"):
        for action in sub.choices[name]._actions:
            assert action.help, f"orchard {name} {action.option_strings or action.dest} has no help"
    args = parser.parse_args(["train", "runs/r", "--output", "m", "--reg-params", "0.01,0.1"])
    assert args.reg_params == (0.01, 0.1) and args.on == "pca" and args.split == "Training"


@pytest.mark.slow
def test_train_on_the_sample(trained_model):
    metrics = json.loads((trained_model / METRICS_FILE).read_text())
    assert len(metrics["classes"]) == 24
    assert metrics["rows"] == {"train": 1440, "test": 480, "test_unknown_class": 0}
    assert metrics["test"]["accuracy"] >= 0.97
    assert metrics["test"]["macro_f1"] >= 0.97
    assert set(metrics["test"]["per_class"]) == set(metrics["classes"])
    for scores in metrics["test"]["per_class"].values():
        assert set(scores) == {"precision", "recall", "f1", "support"} and scores["support"] == 20
    assert np.asarray(metrics["test"]["confusion"]).sum() == 480
    assert len(metrics["cross_validation"]["grid"]) == 4
    assert metrics["cross_validation"]["best_reg_param"] in [g["reg_param"] for g in metrics["cross_validation"]["grid"]]
    assert metrics["left_out_classes"]["classes"] == {}
    assert metrics["model"]["provenance"]["backbone"]["sha256"] == "8fa2195a28ab2e7f2b799de75a5f04451f7033ecbbce15b4d1dc9e45a2d3a703"
    assert metrics["model"]["provenance"]["pca"]["k"] == metrics["dim"]
    assert (trained_model / CONFUSION_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (trained_model / MODEL_CARD).read_text()
    assert f"{metrics['test']['accuracy']:.4f}" in card and "Walnut" in card
    table = summary_table(metrics)  # what `orchard train` prints
    assert f"accuracy {metrics['test']['accuracy']:.4f}" in table
    assert all(f"\n{label} " in table for label in metrics["classes"])


@pytest.mark.slow
def test_pca_in_the_graph_is_sparks_projection(spark, sample_run, trained_model):
    """Spark's PCAModel computes pc^T x without centering: the run's pca column is features · pc."""
    from pyspark.ml.feature import PCAModel

    pc = PCAModel.load(str(sample_run / "pca_model")).pc.toArray()
    rows = spark.read.format("delta").load(str(sample_run / "features")).orderBy("path").limit(50).collect()
    features = np.array([row.features for row in rows], dtype=np.float64)
    stored = np.array([row.pca for row in rows], dtype=np.float64)
    np.testing.assert_allclose(features @ pc, stored, rtol=1e-5, atol=1e-4)
    centered = (features - features.mean(axis=0)) @ pc
    assert np.abs(centered - stored).max() > 1.0  # centering would be visibly different


@pytest.mark.slow
def test_onnx_agrees_with_spark_on_every_test_row(spark, sample_run, trained_model):
    import onnxruntime as ort
    from pyspark.sql import functions as F

    test_rows = spark.read.format("delta").load(str(sample_run / "features")).where(F.col("split") == "Test")
    classes, predicted = spark_probabilities(trained_model, test_rows, "pca")
    rows = sorted(predicted.select("path", "probability", "prediction").collect(), key=lambda r: r.path)
    assert len(rows) == 480
    assert read_metadata(str(trained_model / ONNX_FILE))["classes"] == classes

    session = ort.InferenceSession(str(trained_model / ONNX_FILE), providers=["CPUExecutionProvider"])
    pixels = np.stack([preprocess((SAMPLE / row.path).read_bytes()).array for row in rows])
    onnx_probabilities = np.concatenate([session.run(None, {"image": pixels[i:i + 32]})[0]
                                         for i in range(0, len(rows), 32)])
    spark_probabilities_ = np.array([row.probability.toArray() for row in rows])
    assert (onnx_probabilities.argmax(axis=1) == np.array([int(row.prediction) for row in rows])).all()
    assert np.abs(onnx_probabilities - spark_probabilities_).max() <= 1e-4


@pytest.mark.slow
def test_classes_with_few_images_are_reported_not_silently_dropped(spark, sample_run, tmp_path):
    from pyspark.sql import functions as F

    run = tmp_path / "run"
    shutil.copytree(sample_run, run, ignore=shutil.ignore_patterns("features"))
    features = spark.read.format("delta").load(str(sample_run / "features"))
    walnut_training = (F.col("label") == "Walnut") & (F.col("split") == "Training")
    few = features.where(walnut_training).orderBy("path").limit(2)
    features.where(~walnut_training).unionByName(few).write.format("delta").save(str(run / "features"))

    result = train(spark, TrainConfig(run=str(run), output=str(tmp_path / "model"), reg_params=(1e-3,), folds=2,
                                      model_path=str(MODEL_FILE)))
    assert result.metrics["left_out_classes"] == {"min_images": 5, "classes": {"Walnut": 2}}
    assert "Walnut" not in result.classes and len(result.classes) == 23
    assert result.metrics["rows"]["test_unknown_class"] == 20
    with pytest.raises(OrchardError, match="already exists"):
        train(spark, TrainConfig(run=str(run), output=str(tmp_path / "model"), model_path=str(MODEL_FILE)))
