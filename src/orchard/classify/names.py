"""File names of a model folder (`orchard train --output MODEL_DIR`) and the keys of the ONNX
model's metadata, shared by train, export, predict and serve."""
from __future__ import annotations

ONNX_FILE = "fruit.onnx"  # the whole chain: uint8 pixels -> class probabilities
METRICS_FILE = "metrics.json"
CONFUSION_PNG = "confusion.png"
MODEL_CARD = "README.md"
SPARK_MODEL_DIR = "spark_model"  # the Spark LogisticRegressionModel (and its class names)

# The ONNX graph's input and output names.
INPUT_NAME = "image"  # uint8 [N, 224, 224, 3] RGB pixels, as orchard.pipeline.preprocess makes them
OUTPUT_NAME = "probabilities"  # float32 [N, classes]

# metadata_props keys of fruit.onnx (values are JSON text).
META_CLASSES = "orchard.classes"  # list of class names, in output order
META_PROVENANCE = "orchard.provenance"  # run, backbone, pca, training
META_METRICS = "orchard.metrics"  # accuracy, macro_f1, ... on the test split
META_INPUT = "orchard.input"  # {"layout", "dtype", "size"}
