"""Names shared across orchard's systems, defined once: the pipeline's stages, the output's
folder and file names, the default model and the Spark local property that tags jobs by stage."""
from __future__ import annotations

DEFAULT_MODEL = "mobilenet_v2"

# Stages of `orchard run`, in order; their seconds are in run.json's `seconds`.
STAGE_MODEL = "model"
STAGE_SPARK_START = "spark_start"
STAGE_LIST = "list"
STAGE_QUANTIZE = "quantize"  # only with --precision int8: calibrate and quantize the model (or find it cached)
STAGE_FEATURIZE = "featurize"
STAGE_RECONCILE = "reconcile"
STAGE_PCA_FIT = "pca_fit"
STAGE_WRITE_FEATURES = "write_features"
STAGE_WRITE_ERRORS = "write_errors"
STAGE_WRITE_MODEL = "write_model"
STAGES = (STAGE_MODEL, STAGE_SPARK_START, STAGE_LIST, STAGE_QUANTIZE, STAGE_FEATURIZE, STAGE_RECONCILE, STAGE_PCA_FIT,
          STAGE_WRITE_FEATURES, STAGE_WRITE_ERRORS, STAGE_WRITE_MODEL)

# Precisions of the model's arithmetic (`--precision`): float32 as given, or int8 quantized.
PRECISION_FP32 = "fp32"
PRECISION_INT8 = "int8"
PRECISIONS = (PRECISION_FP32, PRECISION_INT8)

# Local property the pipeline sets on every Spark job it starts: the stage's name.
STAGE_PROPERTY = "orchard.stage"

# What a run writes under --output.
FEATURES_DIR = "features"
ERRORS_DIR = "errors"
PCA_MODEL_DIR = "pca_model"
RUN_RECORD = "run.json"
SCREE_PLOT = "pca_scree.png"
