"""Batched inference: the batch size changes the speed, never the features."""
from __future__ import annotations

import numpy as np
import pytest

from orchard.pipeline.config import ARROW_BATCH_BYTES, ARROW_BATCH_ROWS, arrow_batch_rows
from orchard.pipeline.inference import infer
from orchard.pipeline.models import get_spec, onnx_session
from orchard.pipeline.preprocess import preprocess


@pytest.fixture(scope="module")
def pixels(sample_dir):
    files = sorted((sample_dir / "Training").rglob("*.jpg"))[::97][:7]
    return [preprocess(path.read_bytes()).array for path in files]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_features_do_not_depend_on_the_batch_size(pixels, model_file, batch_size):
    spec = get_spec("mobilenet_v2")
    session = onnx_session(str(model_file))
    whole = infer(session, spec, pixels, batch_size=len(pixels))
    batched = infer(session, spec, pixels, batch_size=batch_size)
    assert len(batched) == len(pixels) == 7
    assert all(vector.dtype == np.float32 and vector.shape == (1280,) for vector in batched)
    assert np.abs(np.stack(batched) - np.stack(whole)).max() <= 1e-4


def test_an_arrow_batch_holds_at_least_one_inference_batch():
    assert arrow_batch_rows(8) == ARROW_BATCH_ROWS
    assert arrow_batch_rows(ARROW_BATCH_ROWS * 4) == ARROW_BATCH_ROWS * 4


def test_an_arrow_batch_of_large_images_is_bounded_in_bytes():
    assert arrow_batch_rows(8, largest_input=5_000) == ARROW_BATCH_ROWS  # 100x100 JPEGs: rows bound it
    phone_photo = 12 * 1024 * 1024
    rows = arrow_batch_rows(8, largest_input=phone_photo)
    assert rows == ARROW_BATCH_BYTES // phone_photo and rows * phone_photo <= ARROW_BATCH_BYTES
    assert arrow_batch_rows(8, largest_input=ARROW_BATCH_BYTES * 3) == 1  # never below one row


@pytest.mark.slow
def test_the_featurizer_applies_the_byte_bound_to_its_own_job(spark, model_file):
    from orchard.pipeline.featurize import ARROW_BATCH_KEY, ImageFeaturizer

    frame = spark.createDataFrame([("a.jpg", b"not an image")], "path string, content binary")
    featurizer = ImageFeaturizer(modelPath=str(model_file), largestInput=8 * 1024 * 1024)
    featurized = featurizer.transform(frame)
    assert featurized.sparkSession.conf.get(ARROW_BATCH_KEY) == str(ARROW_BATCH_BYTES // (8 * 1024 * 1024))
    assert spark.conf.get(ARROW_BATCH_KEY) != featurized.sparkSession.conf.get(ARROW_BATCH_KEY)
    assert featurized.collect()[0].error  # and the job runs
