"""One ONNX graph for the whole chain: uint8 pixels -> backbone features -> PCA -> logistic
regression -> class probabilities, built with the `onnx` library on the backbone's own graph.

The added nodes compute what Spark computes, in float64 as Spark does:

    pca    = float32(features · pc)          Spark's PCAModel: pc^T x, no centering; a run
                                             stores the projection as array<float>
    margin = pca · W^T + b                   LogisticRegressionModel: coefficientMatrix W
                                             [classes, dim], interceptVector b
    probabilities = float32(softmax(margin))

Without PCA (a model trained `--on features`) the first step is left out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from orchard.classify.names import (
    INPUT_NAME,
    META_CLASSES,
    META_INPUT,
    META_METRICS,
    META_PROVENANCE,
    OUTPUT_NAME,
)
from orchard.errors import OrchardError
from orchard.pipeline.models import ModelSpec

PREFIX = "fruit/"  # names of the added nodes and tensors


@dataclass
class Classifier:
    """A fitted logistic regression in plain arrays (what Spark's model holds)."""

    classes: List[str]  # class names, index = Spark's label index
    coefficients: np.ndarray  # float64 [classes, dim]
    intercepts: np.ndarray  # float64 [classes]
    pc: Optional[np.ndarray] = None  # float64 [feature_dim, dim]: PCA components (None: no PCA)

    def check(self, feature_dim: int) -> None:
        """Raise OrchardError when the shapes do not chain."""
        n, dim = self.coefficients.shape
        if n != len(self.classes) or self.intercepts.shape != (n,):
            raise OrchardError(f"classifier shapes disagree: {len(self.classes)} classes, coefficients "
                               f"{self.coefficients.shape}, intercepts {self.intercepts.shape}")
        rows = feature_dim if self.pc is None else self.pc.shape[1]
        if self.pc is not None and self.pc.shape[0] != feature_dim:
            raise OrchardError(f"PCA components have {self.pc.shape[0]} rows, the backbone gives {feature_dim} features")
        if dim != rows:
            raise OrchardError(f"the classifier reads {dim} values, its input has {rows}")


def backbone_features(backbone, spec: ModelSpec):
    """The backbone graph cut to its features output (the ImageNet head, if any, removed)."""
    from onnx.utils import Extractor

    outputs = [o.name for o in backbone.graph.output]
    if spec.output_name not in outputs:
        raise OrchardError(f"the backbone has no output {spec.output_name!r} (outputs: {', '.join(outputs)})")
    if outputs == [spec.output_name]:
        return backbone
    return Extractor(backbone).extract_model([spec.input_name], [spec.output_name])


def _rename_input(model, old: str, new: str) -> None:
    if old == new:
        return
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
    for value in model.graph.input:
        if value.name == old:
            value.name = new


def fruit_model(backbone, spec: ModelSpec, classifier: Classifier, metadata: Dict[str, Any]):
    """The ONNX ModelProto of the whole chain.

    backbone: the backbone's ModelProto (input uint8 [N, size, size, 3], output float32
    [N, feature_dim]); its input is renamed INPUT_NAME, the single output is OUTPUT_NAME
    (float32 [N, classes]). metadata: {"provenance": ..., "metrics": ...} (JSON-able), stored
    with the class names in metadata_props. Raises OrchardError when shapes do not chain or
    the result does not pass onnx.checker.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classifier.check(spec.feature_dim)
    model = backbone_features(backbone, spec)
    _rename_input(model, spec.input_name, INPUT_NAME)
    graph = model.graph
    features = spec.output_name

    def initializer(name: str, array: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float64), PREFIX + name))
        return PREFIX + name

    def node(op: str, inputs: List[str], output: str, **attributes: Any) -> str:
        graph.node.append(helper.make_node(op, inputs, [PREFIX + output], name=PREFIX + output, **attributes))
        return PREFIX + output

    x = node("Cast", [features], "features_f64", to=TensorProto.DOUBLE)
    if classifier.pc is not None:
        projected = node("MatMul", [x, initializer("pc", classifier.pc)], "pca_f64")
        stored = node("Cast", [projected], "pca", to=TensorProto.FLOAT)  # a run stores array<float>
        x = node("Cast", [stored], "pca_as_read", to=TensorProto.DOUBLE)
    margins = node("MatMul", [x, initializer("coefficients_t", classifier.coefficients.T)], "margins_linear")
    margins = node("Add", [margins, initializer("intercepts", classifier.intercepts)], "margins")
    softmax = node("Softmax", [margins], "probabilities_f64", axis=-1)
    graph.node.append(helper.make_node("Cast", [softmax], [OUTPUT_NAME], name=PREFIX + "probabilities",
                                       to=TensorProto.FLOAT))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", len(classifier.classes)]))
    graph.name = "orchard_fruit"
    model.producer_name = "orchard"
    model.doc_string = (f"uint8 RGB pixels [N, {spec.image_size}, {spec.image_size}, 3] -> {spec.name} features -> "
                        f"{'PCA -> ' if classifier.pc is not None else ''}logistic regression -> "
                        f"probabilities of {len(classifier.classes)} classes")
    del model.metadata_props[:]
    props = {
        META_CLASSES: classifier.classes,
        META_INPUT: {"layout": spec.layout, "dtype": spec.dtype, "size": spec.image_size},
        META_PROVENANCE: metadata.get("provenance", {}),
        META_METRICS: metadata.get("metrics", {}),
    }
    onnx.helper.set_model_props(model, {key: json.dumps(value, sort_keys=True) for key, value in props.items()})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OrchardError(f"the exported ONNX graph is not valid: {error}") from None
    return model


def read_metadata(path: str) -> Dict[str, Any]:
    """{"classes", "input", "provenance", "metrics"} of an exported model file, read with ONNX
    Runtime (no onnx needed). Raises OrchardError when the file lacks orchard's metadata."""
    import onnxruntime as ort

    try:
        props = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    except Exception as error:  # not an ONNX file, unreadable
        raise OrchardError(f"could not load {path} with ONNX Runtime: {error}") from None
    return metadata_of(props, path)


def metadata_of(props: Dict[str, str], where: str = "the model") -> Dict[str, Any]:
    """Decode orchard's metadata_props (JSON values) of an exported model."""
    keys = {"classes": META_CLASSES, "input": META_INPUT, "provenance": META_PROVENANCE, "metrics": META_METRICS}
    if META_CLASSES not in props:
        raise OrchardError(f"{where} is not an orchard fruit model (no {META_CLASSES} in its metadata)")
    return {name: json.loads(props.get(key, "{}")) for name, key in keys.items()}
