"""The exported ONNX graph computes backbone -> PCA -> logistic regression exactly (no Spark)."""
from __future__ import annotations

import numpy as np
import pytest

from orchard.classify.export import Classifier, fruit_model, metadata_of, read_metadata
from orchard.classify.names import INPUT_NAME, META_CLASSES, OUTPUT_NAME
from orchard.errors import OrchardError
from orchard.pipeline.models import get_spec
from tests.conftest import MODEL_FILE


def random_classifier(classes: int = 5, dim: int = 7, pca: bool = True, seed: int = 0) -> Classifier:
    rng = np.random.default_rng(seed)
    return Classifier(classes=[f"fruit {i}" for i in range(classes)],
                      coefficients=rng.normal(size=(classes, dim)), intercepts=rng.normal(size=classes),
                      pc=rng.normal(scale=0.1, size=(1280, dim)) if pca else None)


def softmax(margins: np.ndarray) -> np.ndarray:
    shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("pca", [True, False])
def test_graph_computes_the_chain_as_spark_does(tmp_path, pca):
    import onnx
    import onnxruntime as ort

    spec = get_spec("mobilenet_v2")
    classifier = random_classifier(pca=pca, dim=7 if pca else 1280)
    model = fruit_model(onnx.load(str(MODEL_FILE)), spec, classifier, {"provenance": {"run": "r"}})
    onnx.save(model, str(tmp_path / "fruit.onnx"))
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)

    session = ort.InferenceSession(str(tmp_path / "fruit.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]  # the ImageNet head is gone
    probabilities = session.run(None, {INPUT_NAME: pixels})[0]

    backbone = ort.InferenceSession(str(MODEL_FILE), providers=["CPUExecutionProvider"])
    features = backbone.run([spec.output_name], {spec.input_name: pixels})[0].astype(np.float64)
    x = (features @ classifier.pc).astype(np.float32).astype(np.float64) if pca else features  # pc^T x, no centering
    expected = softmax(x @ classifier.coefficients.T + classifier.intercepts)
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 5)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_metadata_holds_classes_and_provenance(tmp_path):
    import onnx

    classifier = random_classifier()
    model = fruit_model(onnx.load(str(MODEL_FILE)), get_spec("mobilenet_v2"), classifier,
                        {"provenance": {"backbone": {"sha256": "abc"}}, "metrics": {"accuracy": 0.99}})
    onnx.save(model, str(tmp_path / "fruit.onnx"))
    meta = read_metadata(str(tmp_path / "fruit.onnx"))
    assert meta["classes"] == classifier.classes
    assert meta["provenance"] == {"backbone": {"sha256": "abc"}}
    assert meta["metrics"] == {"accuracy": 0.99}
    assert meta["input"] == {"layout": "NHWC", "dtype": "uint8", "size": 224}


def test_shapes_that_do_not_chain_are_refused():
    import onnx

    classifier = random_classifier(dim=7)
    classifier.pc = classifier.pc[:, :6]
    with pytest.raises(OrchardError, match="reads 7 values, its input has 6"):
        fruit_model(onnx.load(str(MODEL_FILE)), get_spec("mobilenet_v2"), classifier, {})


def test_a_model_without_orchard_metadata_is_refused():
    with pytest.raises(OrchardError, match="not an orchard fruit model"):
        metadata_of({"other": "1"})
    assert metadata_of({META_CLASSES: '["a", "b"]'})["classes"] == ["a", "b"]
