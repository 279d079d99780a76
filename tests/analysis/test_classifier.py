"""The classifier on orchard's features (orchard.analysis.classifier): train on one split, score the other."""
from __future__ import annotations

import pytest

from orchard.analysis.classifier import evaluate_features
from orchard.errors import OrchardError


def _features(spark, path, rows):
    spark.createDataFrame(rows, "path string, label string, split string, pca array<float>") \
        .write.mode("overwrite").format("delta").save(str(path))
    return str(path)


def test_separable_features_are_classified_and_counted(spark, tmp_path):
    rows = []
    for i in range(12):  # two fruits, far apart in the first component; a row without features
        for label, centre in (("Apple", -5.0), ("Banana", 5.0)):
            split = "Test" if i % 4 == 0 else "Training"
            rows.append((f"{split}/{label}/{i}.jpg", label, split, [centre + 0.1 * i, 0.01 * i]))
    rows.append(("Training/Apple/broken.jpg", "Apple", "Training", None))
    result = evaluate_features(spark, _features(spark, tmp_path / "features", rows))
    assert result["column"] == "pca"
    assert (result["train_rows"], result["test_rows"], result["classes"]) == (18, 6, 2)
    assert result["accuracy"] == 1.0


def test_a_missing_split_is_a_user_error(spark, tmp_path):
    rows = [(f"Training/Apple/{i}.jpg", "Apple", "Training", [float(i)]) for i in range(3)]
    with pytest.raises(OrchardError, match="need rows in both splits 'Training' \\(3\\) and 'Test' \\(0\\)"):
        evaluate_features(spark, _features(spark, tmp_path / "features", rows))
