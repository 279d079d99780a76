"""PCA with Spark MLlib: k chosen by explained variance, the model kept for new images.

VariancePCA (a pyspark.ml Estimator) fits Spark's PCA once with every component, picks k by
explained variance (or takes the k it is given), cuts the fitted model to k components inside
the JVM and returns a VariancePCAModel (a pyspark.ml Model) wrapping that Spark PCAModel.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import (
    DefaultParamsReadable,
    DefaultParamsReader,
    DefaultParamsWritable,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)

from orchard.errors import OrchardError
from orchard.pipeline.featurize import features_origin

log = logging.getLogger(__name__)

VECTOR_COLUMN = "_features_vector"
PCA_VECTOR_COLUMN = "_pca_vector"


@dataclass
class PcaResult:
    model: object  # pyspark.ml.feature.PCAModel with k components
    k: int
    explained_variance: List[float]  # ratio of every component of the full fit, descending
    seconds_full_fit: float = 0.0
    seconds_k_fit: float = 0.0

    @property
    def explained_by_k(self) -> float:
        return float(sum(self.explained_variance[: self.k]))


def choose_k(explained_ratios: List[float], target: float) -> int:
    """Smallest k whose cumulative explained variance reaches `target` (ratios sorted descending)."""
    cumulative = np.cumsum(np.asarray(explained_ratios, dtype=np.float64))
    reached = np.nonzero(cumulative >= target - 1e-12)[0]
    return int(reached[0] + 1) if len(reached) else len(explained_ratios)


ZERO_VARIANCE_RATIO = 1e-9  # total variance below this fraction of the mean's squared norm: zero


SAMPLE_ROWS = 1000  # rows of the cheap first look of has_zero_variance
CLEARLY_SPREAD_RATIO = 1e-3  # a sample this spread settles it (1e6 x ZERO_VARIANCE_RATIO)


def has_zero_variance(vectors) -> bool:
    """True when the vectors (a frame with VECTOR_COLUMN) are all the same, up to float noise:
    their total variance is below ZERO_VARIANCE_RATIO of their mean's squared norm (Spark's PCA
    then gives NaN ratios, or ratios of noise).

    First the SAMPLE_ROWS first rows (one short job): the whole set's sum of squared deviations
    is at least a sample's, so a sample with a relative variance above CLEARLY_SPREAD_RATIO
    (any real set of images: ~0.1) means the whole set is spread too (for up to 1e6 x
    SAMPLE_ROWS rows); only otherwise one pass over every vector decides.
    """
    if _relative_variance(vectors.limit(SAMPLE_ROWS)) > CLEARLY_SPREAD_RATIO:
        return False
    return not _relative_variance(vectors) > ZERO_VARIANCE_RATIO


def _relative_variance(vectors) -> float:
    """Total variance / the mean's squared norm of the vectors (nan when not finite)."""
    from pyspark.ml.stat import Summarizer
    from pyspark.sql import functions as F

    summary = vectors.select(Summarizer.metrics("mean", "variance").summary(F.col(VECTOR_COLUMN)).alias("s")).first().s
    total = float(np.sum(summary.variance.toArray()))
    scale = float(np.sum(np.square(summary.mean.toArray())))
    return total / max(scale, 1e-30) if math.isfinite(total) else math.nan


def fit_pca(vectors, dimension: int, variance: float, k: Optional[int] = None) -> PcaResult:
    """Fit PCA on `vectors` (a frame with VECTOR_COLUMN), once.

    Spark computes every eigenvalue in any fit, so one fit with all components gives the
    explained variance curve; the model kept is that fit cut to the k components needed
    (a second fit with k components is the fallback, and gives the same components).
    The vectors are not cached: converting the cached feature arrays again on each pass of
    the fit costs less than building a cache of vectors (~0.6 s less on the sample).
    """
    from pyspark.ml.feature import PCA

    started = time.perf_counter()
    full = PCA(k=dimension, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors)
    ratios = [float(x) for x in full.explainedVariance.toArray()]
    full_done = time.perf_counter()
    if not all(math.isfinite(x) for x in ratios) or has_zero_variance(vectors):
        log.warning("PCA: the features have zero total variance (all the same): k=1, ratios 0")
        ratios = [0.0] * len(ratios)
        chosen = 1
    else:
        chosen = min(k, dimension) if k else choose_k(ratios, variance)
    model = full if chosen == dimension else first_components(full, chosen)
    if model is None:
        log.info("PCA: refitting with k=%d (could not cut the full model)", chosen)
        model = PCA(k=chosen, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors)
    log.info("PCA: k=%d explains %.4f of the variance", chosen, sum(ratios[:chosen]))
    return PcaResult(
        model=model,
        k=chosen,
        explained_variance=ratios,
        seconds_full_fit=full_done - started,
        seconds_k_fit=time.perf_counter() - full_done,
    )


def first_components(model, k: int):
    """A PCAModel holding the first `k` principal components of `model`, or None.

    pyspark has no public constructor for PCAModel; the JVM class has one (package-private in
    Scala, public in bytecode), reached through py4j. The matrices are cut inside the JVM
    (a round trip of a 1280x1280 matrix through Python costs seconds). None when the
    constructor cannot be reached.
    """
    from pyspark import SparkContext
    from pyspark.ml.feature import PCAModel

    jvm = SparkContext._active_spark_context._jvm
    full = model._java_obj
    rows = full.pc().numRows()
    try:
        first = jvm.java.util.Arrays.copyOfRange  # of column-major values: the first k columns
        pc = jvm.org.apache.spark.ml.linalg.DenseMatrix(rows, k, first(full.pc().toArray(), 0, rows * k))
        explained = jvm.org.apache.spark.ml.linalg.DenseVector(first(full.explainedVariance().toArray(), 0, k))
        java_model = jvm.org.apache.spark.ml.feature.PCAModel(full.uid(), pc, explained)
    except Exception as error:  # py4j: constructor missing or changed in this Spark
        log.debug("PCAModel constructor not reachable: %s", error)
        return None
    cut = PCAModel(java_model)
    cut._set(k=k, inputCol=model.getInputCol(), outputCol=model.getOutputCol())
    cut._transfer_params_to_java()
    return cut


def projected(frame, model, input_col: str = "features", output_col: str = "pca", dimension: Optional[int] = None):
    """`frame` with `output_col` (array<float>, model.k long) = `input_col` (array<float> or
    array<double>) projected by a fitted Spark PCAModel; null where `input_col` is null.

    Null rows go through the model as zero vectors (one pass, no union) and come out null.
    With `dimension`, a row of another length fails the job with a message saying so.
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    dimension = dimension or model.pc.numRows
    source = F.col(input_col)
    zeros = F.array_repeat(F.lit(0.0).cast("float"), dimension)
    checked = F.when(source.isNull(), zeros).when(F.size(source) == dimension, source).otherwise(
        F.raise_error(F.concat(F.lit(f"{input_col} has "), F.size(source).cast("string"),
                               F.lit(f" values; this PCA model was fitted on {dimension}"))))
    vectors = frame.withColumn(VECTOR_COLUMN, array_to_vector(checked))
    out = model.transform(vectors)
    pca = F.when(source.isNull(), F.lit(None)).otherwise(vector_to_array(PCA_VECTOR_COLUMN, "float32"))
    return out.withColumn(output_col, pca.cast("array<float>")).drop(VECTOR_COLUMN, PCA_VECTOR_COLUMN)


def project(frame, model):
    """Add `pca` (array<float>) to a frame with `features`, using a fitted PCAModel."""
    return projected(frame, model)


def reads_only_cached_data(frame) -> bool:
    """True when every source `frame` reads is a persisted DataFrame (Spark's cache)."""
    leaves = frame._jdf.queryExecution().withCachedData().collectLeaves()
    kinds = {leaves.apply(i).getClass().getSimpleName() for i in range(leaves.size())}
    return kinds == {"InMemoryRelation"}


def _input_dimension(frame, column: str) -> int:
    """Length of the arrays in `column`: from its metadata (ImageFeaturizer's), else the first row."""
    from pyspark.sql import functions as F

    origin = features_origin(frame, column)
    if origin and origin.get("dim"):
        return int(origin["dim"])
    first = frame.where(F.col(column).isNotNull()).select(F.size(column).alias("n")).first()
    if first is None:
        raise OrchardError(f"VariancePCA: no non-null {column!r} rows to fit on")
    return int(first["n"])


def _check_array_column(frame, column: str, who: str) -> None:
    from pyspark.sql.types import ArrayType, DoubleType, FloatType

    if column not in frame.columns:
        raise OrchardError(f"{who}: no input column {column!r} (columns: {', '.join(frame.columns)})")
    kind = frame.schema[column].dataType
    if not (isinstance(kind, ArrayType) and isinstance(kind.elementType, (FloatType, DoubleType))):
        raise OrchardError(f"{who}: input column {column!r} must be array<float> or array<double>, "
                           f"got {kind.simpleString()}")


class _VarianceParams(HasInputCol, HasOutputCol):
    variance = Param(Params._dummy(), "variance",
                     "keep the fewest components explaining this fraction of the variance, in (0, 1]",
                     typeConverter=TypeConverters.toFloat)
    k = Param(Params._dummy(), "k", "keep exactly k components (wins over variance)",
              typeConverter=TypeConverters.toInt)

    def getVariance(self) -> float:
        return self.getOrDefault(self.variance)

    def getK(self) -> Optional[int]:
        return self.getOrDefault(self.k) if self.isDefined(self.k) else None


class VariancePCA(Estimator, _VarianceParams, DefaultParamsReadable, DefaultParamsWritable):
    """PCA that keeps the fewest components explaining `variance` of the variance (or exactly `k`).

    inputCol (default "features"): array<float> (or array<double>) of one length d, e.g. 1280
    ImageFeaturizer features; null rows (images that failed) are left out of the fit.
    `fit` runs Spark MLlib's PCA once with all d components (its explained variance gives the
    curve), picks k, and cuts that model to k components inside the JVM; it returns a
    VariancePCAModel adding outputCol (default "pca"): array<float> of length k.

    Params: `variance` (default 0.95, in (0, 1]), `k` (optional, 1..d; wins over variance).
    Raises OrchardError (at `fit`) for a missing or non-array input column, bad params, or
    fewer than 2 non-null rows.
    """

    @keyword_only
    def __init__(self, *, inputCol: str = "features", outputCol: str = "pca", variance: float = 0.95,
                 k: Optional[int] = None) -> None:
        super().__init__()
        self._setDefault(inputCol="features", outputCol="pca", variance=0.95)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "features", outputCol: str = "pca", variance: float = 0.95,
                  k: Optional[int] = None) -> "VariancePCA":
        """Set any of the params; return self."""
        return self._set(**{key: value for key, value in self._input_kwargs.items() if value is not None})

    def setInputCol(self, value: str) -> "VariancePCA":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "VariancePCA":
        return self._set(outputCol=value)

    def setVariance(self, value: float) -> "VariancePCA":
        return self._set(variance=value)

    def setK(self, value: int) -> "VariancePCA":
        return self._set(k=value)

    def _fit(self, dataset) -> "VariancePCAModel":
        from pyspark.errors import IllegalArgumentException
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        column = self.getInputCol()
        _check_array_column(dataset, column, "VariancePCA")
        variance, k = self.getVariance(), self.getK()
        if not 0.0 < variance <= 1.0:
            raise OrchardError(f"VariancePCA: variance must be in (0, 1], got {variance}")
        if k is not None and k < 1:
            raise OrchardError(f"VariancePCA: k must be a positive integer, got {k}")
        dimension = _input_dimension(dataset, column)
        vectors = dataset.where(F.col(column).isNotNull()).select(array_to_vector(column).alias(VECTOR_COLUMN))
        # the fit passes over its input several times: unless the input is read from Spark's
        # cache (as in `orchard run`), cache the vectors, so that the images are featurized once
        cache = not reads_only_cached_data(dataset)
        if cache:
            vectors = vectors.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            result = fit_pca(vectors, dimension, variance, k)
        except IllegalArgumentException as error:  # e.g. fewer than 2 rows, rows of other lengths
            raise OrchardError(f"VariancePCA: Spark could not fit PCA on {column!r}: {error}") from None
        finally:
            if cache:
                vectors.unpersist()
        model = VariancePCAModel(result.model, result.k, result.explained_variance,
                                 features_origin(dataset, column))
        model._resetUid(self.uid)  # a fitted model shares its estimator's uid, as in Spark ML
        return self._copyValues(model)


class VariancePCAModel(Model, HasInputCol, HasOutputCol, MLReadable, MLWritable):
    """A fitted VariancePCA: adds outputCol (array<float>, length `k`) = inputCol projected on
    the first k principal components; null where inputCol is null.

    Attributes: `k` (int), `explainedVariance` (list of float: the ratio of every one of the d
    components of the full fit, descending; the first k are kept), `explainedByK` (their sum),
    `pcaModel` (the inner Spark `pyspark.ml.feature.PCAModel`, k components, reading the
    vector column "_features_vector"; saved and loaded like any PCAModel), `origin` (the model,
    length and sha256 of the features it was fitted on, from ImageFeaturizer's column
    metadata; None when unknown).

    `transform` raises OrchardError when the input column's metadata names another model or
    length than `origin`; a row of another length without metadata fails the Spark job.
    Saved as params + k, ratios and origin (metadata/) and the PCAModel in pcaModel/.
    """

    def __init__(self, pcaModel=None, k: int = 0, explainedVariance: Optional[List[float]] = None,
                 origin: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self._setDefault(inputCol="features", outputCol="pca")
        self.pcaModel = pcaModel
        self.k = int(k)
        self.explainedVariance = [float(x) for x in (explainedVariance or [])]
        self.origin = origin

    @property
    def dimension(self) -> int:
        """d: the length of the input arrays the model was fitted on."""
        return int(self.pcaModel.pc.numRows)

    @property
    def explainedByK(self) -> float:
        return float(sum(self.explainedVariance[: self.k]))

    def setInputCol(self, value: str) -> "VariancePCAModel":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "VariancePCAModel":
        return self._set(outputCol=value)

    def _check_origin(self, dataset, column: str) -> None:
        found = features_origin(dataset, column) or {}
        if not found or not self.origin:
            return
        for key in ("model", "dim"):
            if key in found and key in self.origin and found[key] != self.origin[key]:
                raise OrchardError(
                    f"this PCA model was fitted on {self.origin.get('model')} features of length "
                    f"{self.origin.get('dim')}; {column!r} holds {found.get('model')} features of length "
                    f"{found.get('dim')}: featurize with the same model, or fit a new PCA"
                )

    def _transform(self, dataset):
        column = self.getInputCol()
        _check_array_column(dataset, column, "VariancePCAModel")
        self._check_origin(dataset, column)
        return projected(dataset, self.pcaModel, column, self.getOutputCol(), self.dimension)

    def copy(self, extra=None) -> "VariancePCAModel":
        copied = super().copy(extra)
        copied.pcaModel = self.pcaModel
        return copied

    def write(self) -> "MLWriter":
        return _VariancePCAModelWriter(self)

    @classmethod
    def read(cls) -> "MLReader":
        return _VariancePCAModelReader(cls)


PCA_MODEL_SUBDIR = "pcaModel"


class _VariancePCAModelWriter(MLWriter):
    def __init__(self, instance: VariancePCAModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        extra = {"k": self.instance.k, "explainedVariance": self.instance.explainedVariance,
                 "origin": self.instance.origin}
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sc, extraMetadata=extra)
        self.instance.pcaModel.write().save(os.path.join(path, PCA_MODEL_SUBDIR))


class _VariancePCAModelReader(MLReader):
    def __init__(self, cls) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> VariancePCAModel:
        from pyspark.ml.feature import PCAModel

        metadata = DefaultParamsReader.loadMetadata(path, self.sc)
        inner = PCAModel.load(os.path.join(path, PCA_MODEL_SUBDIR))
        model = self.cls(inner, metadata["k"], metadata["explainedVariance"], metadata.get("origin"))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model
