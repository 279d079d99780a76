"""`orchard serve --precision int8`: fruit.onnx with its backbone quantized, its head kept float."""
import numpy as np
import onnx

from orchard.classify.names import ONNX_FILE
from orchard.pipeline.preprocess import preprocess
from orchard.pipeline.quantize import DEMO_DIR, reduce_range_recommended
from orchard.serve.model import FruitModel, int8_fruit_model


def test_the_int8_model_answers_like_the_fp32_one(tiny_model, monkeypatch):
    monkeypatch.setattr("orchard.serve.model.CALIBRATION_IMAGES", 16)  # the service takes all 160: slower
    pixels = np.stack([preprocess(f.read_bytes()).array for f in sorted(DEMO_DIR.rglob("*.jpg"))[::20]])
    fp32, int8 = FruitModel(tiny_model), FruitModel(tiny_model, precision="int8")
    assert int8.classes == fp32.classes and int8.id == fp32.id  # the same trained model
    assert (fp32.info["precision"], int8.info["precision"]) == ("fp32", "int8")
    assert int8.info["int8_sha256"] != fp32.sha256
    low, high = int8.predict(pixels), fp32.predict(pixels)
    assert low.shape == high.shape == (len(pixels), 3)
    np.testing.assert_allclose(low.sum(axis=1), 1.0, rtol=1e-5)
    # probabilities within 0.2 with VNNI; without it (AVX2, reduce_range) int8 drifts more: 0.40 measured
    assert np.abs(low - high).max() < (0.5 if reduce_range_recommended() else 0.2) and not np.array_equal(low, high)
    quantized = onnx.load(str(int8_fruit_model(tiny_model / ONNX_FILE).path))  # cached
    ops = {node.op_type for node in quantized.graph.node}
    assert "QLinearConv" in ops and "Softmax" in ops  # the backbone in int8, the classifier as it was
