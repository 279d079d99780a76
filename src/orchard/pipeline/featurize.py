"""ImageFeaturizer: a pyspark.ml Transformer, image bytes (or file paths) -> CNN features.

The work itself runs in Spark's Python workers (orchard.pipeline.inference): Arrow batches of
`arrow_batch_rows(batchSize)` rows, one ONNX Runtime session per Python worker, the model file
shipped to the executors once per SparkContext (`SparkContext.addFile`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from orchard.errors import OrchardError
from orchard.names import DEFAULT_MODEL, PRECISION_FP32, PRECISION_INT8
from orchard.pipeline.config import arrow_batch_rows, check_precision
from orchard.pipeline.inference import (
    DECODE_MS,
    HEIGHT,
    INFER_MS,
    WIDTH,
    FrameColumns,
    partition_featurizer,
    read_bytes,
)
from orchard.pipeline.graph import runnable_path
from orchard.pipeline.models import ModelSpec, resolve_model
from orchard.pipeline.quantize import (
    CALIBRATION_IMAGES,
    Calibration,
    Int8Model,
    calibration_of,
    demo_calibration,
    int8_model,
)
from orchard.pipeline.sessions import with_settings
from orchard.spark.session import task_cpus

ARROW_BATCH_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"
METADATA_KEY = "orchard"  # the features column's metadata: {"orchard": {"model", "dim", "sha256"}}

# Model files shipped with SparkContext.addFile: (application id, file name) -> sha256.
_SHIPPED: Dict[Tuple[str, str], str] = {}


def ship_model(spark_context, path, sha256: str) -> None:
    """`SparkContext.addFile(path)` once per SparkContext; executors find it by file name.

    Raises OrchardError when a different file of the same name was shipped before (Spark
    cannot replace a shipped file within one application).
    """
    key = (spark_context.applicationId, path.name)
    shipped = _SHIPPED.get(key)
    if shipped is None:
        spark_context.addFile(str(path))
        _SHIPPED[key] = sha256
    elif shipped != sha256:
        raise OrchardError(
            f"another model file named {path.name} (sha256 {shipped}) was already shipped to this "
            f"Spark application; Spark cannot replace it: restart Spark to use {path}"
        )


def features_metadata(spec: ModelSpec, sha256: str) -> dict:
    """Column metadata of a features column: which model made it and its length."""
    return {METADATA_KEY: {"model": spec.name, "dim": spec.feature_dim, "sha256": sha256}}


def features_origin(frame, column: str) -> Optional[dict]:
    """{"model", "dim", "sha256"} from `column`'s metadata, or None when it has none."""
    return frame.schema[column].metadata.get(METADATA_KEY)


class ImageFeaturizer(Transformer, HasInputCol, HasOutputCol,
                      DefaultParamsReadable, DefaultParamsWritable):
    """Images -> CNN features (MobileNetV2 by default), as a pyspark.ml Transformer.

    Input: `inputCol` (default "content") holds either the image bytes (binary, as
    `orchard.load_images` or Spark's `binaryFile` source give) or file paths/URIs (string:
    local paths, file:, or what pyarrow reads: s3://, hdfs://, gs://), read by the workers.

    Output: the input's columns (less a binary `inputCol`: the image bytes are not carried
    along) plus

    - `outputCol` (default "features"): array<float>, float32, length 1280 for mobilenet_v2
      (the model's `feature_dim`); null on error rows. Its column metadata records the model
      (name, dim, sha256), which VariancePCAModel checks;
    - `errorCol` (default "error"): string, null when featurized, else the reason (not an
      image, truncated, unreadable path, ...): a bad image never fails the job;
    - `width`, `height`: int, the original image size in pixels (null on error rows);
    - `decode_ms`, `infer_ms`: double, milliseconds per image (reading and decoding, and
      inference), averaged over the image's Arrow batch; infer_ms is 0.0 on error rows.

    Params: `modelName` (a registered model, default "mobilenet_v2"), `modelPath` (its ONNX
    file; default: $ORCHARD_MODEL_DIR, the user cache, then a checked download; or your own
    ONNX model, its input spec read from the graph: see orchard.pipeline.models.resolve_model),
    `featureOutput` (the tensor taken as features, flattened: a graph output or an intermediate
    tensor), `mean`/`std` (float32 inputs: per channel, 0..1 scale, (pixels/255 - mean)/std),
    `batchSize` (images per inference call, default 8), `largestInput` (bytes of the largest
    image when known, e.g. from a listing), `precision` ("fp32", default, or "int8": the model
    statically quantized by ONNX Runtime, see orchard.pipeline.quantize, calibrated on the
    images given to `quantize(calibration)`, else on the first 300 rows of the input (the demo
    set when it has none), and cached; the features' metadata then names the int8 file's
    sha256). Rows go to Python in Arrow batches of max(64, batchSize) rows, fewer when that many
    of the largest image would pass 64 MiB (so memory per task stays bounded whatever the image
    sizes); that setting applies to this transform's own job only (a child
    session: the result DataFrame belongs to it, the caller's session is not changed).

    Raises OrchardError (at `transform`) for an unknown model, a model file that is missing or
    not the registered one, a graph that does not fit (input rank, dtype, no such output), a missing input column or one of another type, output columns
    that already exist, an unknown precision, and int8 calibration images none of which decodes.
    """

    errorCol = Param(Params._dummy(), "errorCol", "error column name (null when featurized)",
                     typeConverter=TypeConverters.toString)
    modelName = Param(Params._dummy(), "modelName", "registered model name (see `orchard models`)",
                      typeConverter=TypeConverters.toString)
    modelPath = Param(Params._dummy(), "modelPath", "ONNX file of the model (optional)",
                      typeConverter=TypeConverters.toString)
    batchSize = Param(Params._dummy(), "batchSize", "images per inference call (a positive integer)",
                      typeConverter=TypeConverters.toInt)
    featureOutput = Param(Params._dummy(), "featureOutput",
                          "tensor taken as features: a graph output or an intermediate tensor (optional)",
                          typeConverter=TypeConverters.toString)
    mean = Param(Params._dummy(), "mean", "float32 inputs: per-channel mean, 0..1 scale (optional)",
                 typeConverter=TypeConverters.toListFloat)
    std = Param(Params._dummy(), "std", "float32 inputs: per-channel standard deviation, 0..1 scale (optional)",
                typeConverter=TypeConverters.toListFloat)
    largestInput = Param(Params._dummy(), "largestInput",
                         "bytes of the largest image, when known: Arrow batches then hold at most 64 MiB of images",
                         typeConverter=TypeConverters.toInt)
    precision = Param(Params._dummy(), "precision", "fp32 (default) or int8 (ONNX Runtime static quantization)",
                      typeConverter=TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol: str = "content", outputCol: str = "features", errorCol: str = "error",
                 modelName: str = DEFAULT_MODEL, modelPath: Optional[str] = None, batchSize: int = 8,
                 featureOutput: Optional[str] = None, mean: Optional[List[float]] = None,
                 std: Optional[List[float]] = None, largestInput: int = 0,
                 precision: str = PRECISION_FP32) -> None:
        super().__init__()
        self._setDefault(inputCol="content", outputCol="features", errorCol="error",
                         modelName=DEFAULT_MODEL, batchSize=8, largestInput=0, precision=PRECISION_FP32)
        self._calibration: Optional[Calibration] = None
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "content", outputCol: str = "features", errorCol: str = "error",
                  modelName: str = DEFAULT_MODEL, modelPath: Optional[str] = None,
                  batchSize: int = 8, featureOutput: Optional[str] = None, mean: Optional[List[float]] = None,
                  std: Optional[List[float]] = None, largestInput: int = 0,
                  precision: str = PRECISION_FP32) -> "ImageFeaturizer":
        """Set any of the params; return self."""
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        return self._set(**kwargs)

    def setInputCol(self, value: str) -> "ImageFeaturizer":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "ImageFeaturizer":
        return self._set(outputCol=value)

    def setErrorCol(self, value: str) -> "ImageFeaturizer":
        return self._set(errorCol=value)

    def getErrorCol(self) -> str:
        return self.getOrDefault(self.errorCol)

    def setModelName(self, value: str) -> "ImageFeaturizer":
        return self._set(modelName=value)

    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def setModelPath(self, value: str) -> "ImageFeaturizer":
        return self._set(modelPath=str(value))

    def getModelPath(self) -> Optional[str]:
        return self.getOrDefault(self.modelPath) if self.isDefined(self.modelPath) else None

    def _optional(self, param: Param):
        return self.getOrDefault(param) if self.isDefined(param) else None

    def getFeatureOutput(self) -> Optional[str]:
        return self._optional(self.featureOutput)

    def getMean(self) -> Optional[List[float]]:
        return self._optional(self.mean)

    def getStd(self) -> Optional[List[float]]:
        return self._optional(self.std)

    def setBatchSize(self, value: int) -> "ImageFeaturizer":
        return self._set(batchSize=value)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def setPrecision(self, value: str) -> "ImageFeaturizer":
        return self._set(precision=value)

    def getPrecision(self) -> str:
        return self.getOrDefault(self.precision)

    def _model(self) -> Tuple[ModelSpec, Path, str]:
        """(spec, file to run, sha256 of the model as given) of the fp32 model."""
        # an unset modelName lets a modelPath be your own model (or whichever registered one it is)
        name = self.getModelName() if self.isSet(self.modelName) else None
        spec, path, sha256 = resolve_model(name, self.getModelPath(), feature_output=self.getFeatureOutput(),
                                           mean=self.getMean(), std=self.getStd())
        return spec, runnable_path(spec, path, sha256), sha256

    def quantize(self, calibration: Calibration) -> Int8Model:
        """Quantize the model to int8 on `calibration` (or take it from the cache) now, on the
        driver; `transform` then runs it (when precision is "int8"). Raises OrchardError."""
        spec, path, sha256 = self._model()
        self._calibration = calibration
        return int8_model(spec, path, sha256, calibration)

    def _int8(self, dataset, columns: FrameColumns, spec: ModelSpec, path: Path, sha256: str) -> Int8Model:
        calibration = self._calibration
        if calibration is None:
            images = input_sample(dataset, columns, CALIBRATION_IMAGES)
            calibration = (calibration_of(images, f"the input's first {len(images)} rows") if images
                           else demo_calibration())
        return int8_model(spec, path, sha256, calibration)

    def _columns(self, dataset) -> FrameColumns:
        from pyspark.sql.types import BinaryType, StringType

        input_col = self.getInputCol()
        if input_col not in dataset.columns:
            raise OrchardError(f"ImageFeaturizer: no input column {input_col!r} (columns: {', '.join(dataset.columns)})")
        kind = dataset.schema[input_col].dataType
        if not isinstance(kind, (BinaryType, StringType)):
            raise OrchardError(f"ImageFeaturizer: input column {input_col!r} must be binary (image bytes) "
                               f"or string (file paths/URIs), got {kind.simpleString()}")
        paths = isinstance(kind, StringType)
        kept = tuple(name for name in dataset.columns if paths or name != input_col)
        columns = FrameColumns(input=input_col, features=self.getOutputCol(), error=self.getErrorCol(),
                               kept=kept, paths=paths)
        clashes = sorted(set(kept) & {columns.features, columns.error, WIDTH, HEIGHT, DECODE_MS, INFER_MS})
        if clashes:
            raise OrchardError(f"ImageFeaturizer: the input already has column(s) {', '.join(clashes)}")
        return columns

    def _output_schema(self, dataset, columns: FrameColumns):
        from pyspark.sql.types import ArrayType, DoubleType, FloatType, IntegerType, StringType, StructField, StructType

        fields = [dataset.schema[name] for name in columns.kept]
        fields += [
            StructField(columns.features, ArrayType(FloatType())),
            StructField(WIDTH, IntegerType()),
            StructField(HEIGHT, IntegerType()),
            StructField(columns.error, StringType()),
            StructField(DECODE_MS, DoubleType()),
            StructField(INFER_MS, DoubleType()),
        ]
        return StructType(fields)

    def _transform(self, dataset):
        from pyspark.sql import functions as F

        columns = self._columns(dataset)
        batch_size = self.getBatchSize()
        if batch_size < 1:
            raise OrchardError(f"ImageFeaturizer: batchSize must be a positive integer, got {batch_size}")
        spec, path, sha256 = self._model()
        if check_precision(self.getPrecision()) == PRECISION_INT8:
            quantized = self._int8(dataset, columns, spec, path, sha256)
            path, sha256 = quantized.path, quantized.sha256
        spark = dataset.sparkSession
        ship_model(spark.sparkContext, path, sha256)
        featurize = partition_featurizer(path.name, spec, batch_size, task_cpus(spark), columns)
        rows = arrow_batch_rows(batch_size, self.getOrDefault(self.largestInput))
        scoped = with_settings(dataset, {ARROW_BATCH_KEY: str(rows)})
        featurized = scoped.mapInPandas(featurize, self._output_schema(dataset, columns))
        tagged = F.col(columns.features).alias(columns.features, metadata=features_metadata(spec, sha256))
        return featurized.withColumn(columns.features, tagged)


def input_sample(dataset, columns: FrameColumns, count: int) -> List[bytes]:
    """The image bytes of the first `count` rows of `dataset` (read from their paths for a path
    column); rows without bytes are left out."""
    rows = dataset.select(columns.input).limit(count).collect()
    values = [row[0] for row in rows]
    if columns.paths:
        values = [read_bytes(location)[0] for location in values]
    return [bytes(value) for value in values if value]
