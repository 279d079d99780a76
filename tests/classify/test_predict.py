"""`orchard predict` on Spark: sample images with bad files mixed in; nothing lost."""
from __future__ import annotations

import json
import shutil

import pytest

from orchard.classify.predict import PREDICT_RECORD, PREDICTIONS_DIR, PredictConfig, predict
from orchard.errors import OrchardError
from tests.conftest import SAMPLE

CLASSES = ("Banana", "Kiwi", "Pineapple", "Walnut")


def mixed_folder(root):
    """4 Test images of each of CLASSES, a not-an-image .jpg, an empty .jpg and a .txt."""
    for name in CLASSES:
        (root / "Test" / name).mkdir(parents=True)
        for image in sorted((SAMPLE / "Test" / name).iterdir())[:4]:
            shutil.copy(image, root / "Test" / name / image.name)
    (root / "Test" / "Kiwi" / "page.jpg").write_text("<html>not a photo</html>")
    (root / "Test" / "Kiwi" / "empty.jpg").write_bytes(b"")
    (root / "Test" / "notes.txt").write_text("not an image name: ignored")
    return root


@pytest.mark.slow
def test_predict_with_bad_files_mixed_in(spark, trained_model, tmp_path, capsys):
    folder = mixed_folder(tmp_path / "photos")
    out = tmp_path / "predicted"
    record = predict(spark, PredictConfig(input=str(folder), model=str(trained_model), output=str(out)))

    assert record["counts"] == {"found": 19, "images": 18, "predicted": 16, "errors": 2, "ignored": 1}
    assert json.loads((out / PREDICT_RECORD).read_text())["counts"] == record["counts"]
    predictions = spark.read.parquet(str(out / PREDICTIONS_DIR)).collect()
    assert len(predictions) == 16
    assert sum(row.predicted == row.label for row in predictions) >= 15  # >= 0.97 of the Test split overall
    assert record["accuracy"]["rows_with_known_label"] == 16
    for row in predictions:
        assert len(row.top_k) == 3 and row.top_k[0].label == row.predicted
        assert row.confidence == row.top_k[0].probability >= row.top_k[1].probability >= row.top_k[2].probability
    errors = {row.path: row.error for row in spark.read.parquet(str(out / "errors")).collect()}
    assert errors == {"Test/Kiwi/page.jpg": "not an image: the file holds HTML data (24 bytes)",
                      "Test/Kiwi/empty.jpg": "empty file (0 bytes)"}
    assert record["ignored_files"] == ["Test/notes.txt"]
    progress_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("orchard: predict")]
    assert progress_lines and "/18 img" in progress_lines[-1]  # off a terminal: plain lines, a final one


def test_predict_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(OrchardError, match="no fruit.onnx"):
        PredictConfig(input=str(SAMPLE), model=str(tmp_path), output=str(tmp_path / "out")).validate()
    with pytest.raises(OrchardError, match="--top-k must be positive"):
        PredictConfig(input=str(SAMPLE), model=str(tmp_path), output=str(tmp_path / "out"), top_k=0).validate()
