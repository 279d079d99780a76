"""PCA in Spark: k chosen by explained variance, the model kept for new images.

VariancePCA (a pyspark.ml Estimator) accumulates the features' covariance in one Spark job
(X^T X summed over Arrow batches on the executors), decomposes it on the driver, picks k by
explained variance (or takes the k it is given) and returns a VariancePCAModel (a pyspark.ml
Model) wrapping Spark MLlib's PCAModel built from the first k components: projection, save and
load are MLlib's.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from pyspark import keyword_only
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
from orchard.spark.gateway import active_context, java_doubles

log = logging.getLogger(__name__)

VECTOR_COLUMN = "_features_vector"
PCA_VECTOR_COLUMN = "_pca_vector"


@dataclass
class PcaResult:
    model: object  # pyspark.ml.feature.PCAModel with k components
    k: int
    explained_variance: List[float]  # ratio of every one of the d components, descending

    @property
    def explained_by_k(self) -> float:
        return float(sum(self.explained_variance[: self.k]))


def choose_k(explained_ratios: List[float], target: float) -> int:
    """Smallest k whose cumulative explained variance reaches `target` (ratios sorted descending)."""
    cumulative = np.cumsum(np.asarray(explained_ratios, dtype=np.float64))
    reached = np.nonzero(cumulative >= target - 1e-12)[0]
    return int(reached[0] + 1) if len(reached) else len(explained_ratios)


ZERO_VARIANCE_RATIO = 1e-9  # total variance below this fraction of the mean's squared norm: zero


@dataclass
class Moments:
    """What one pass over the vectors gives: n rows, their sum (d,) and X^T X (d, d), float64."""

    n: int
    total: np.ndarray
    gram: np.ndarray

    def covariance(self) -> np.ndarray:
        """The sample covariance (d, d): (X^T X - n mean mean^T) / (n - 1), as Spark's
        RowMatrix.computeCovariance defines it."""
        mean = self.total / self.n
        return (self.gram - self.n * np.outer(mean, mean)) / (self.n - 1)


def moments(frame, column: str, dimension: int) -> Moments:
    """Moments of the non-null arrays in `column` (array<float> or array<double>, `dimension`
    long), in one Spark job.

    Each task accumulates n, the sum and X^T X (float64, a BLAS syrk through numpy) over its
    Arrow batches and sends them once (the upper triangle of X^T X: d (d + 1) / 2 doubles,
    6.6 MB for d = 1280); the driver adds the tasks' moments. An input read from Spark's cache
    is first coalesced to one partition per core (no shuffle), so that there are no more
    partial moments to send than cores. A row of another length fails the job (ValueError in
    the worker; fit_pca turns it into an OrchardError).
    """
    import pyarrow as pa
    from pyspark.sql import functions as F

    upper = np.triu_indices(dimension)

    def partial(batches):
        n, total, gram = 0, np.zeros(dimension), np.zeros((dimension, dimension))
        for batch in batches:
            values = batch.column(0)
            if len(values) == 0:
                continue
            flat = values.flatten().to_numpy(zero_copy_only=False)
            if flat.size != len(values) * dimension:
                raise ValueError(f"{column} has rows whose length is not {dimension}")
            rows = flat.reshape(len(values), dimension).astype(np.float64)
            n, total, gram = n + len(rows), total + rows.sum(axis=0), gram + rows.T @ rows
        yield pa.RecordBatch.from_pydict({"n": [n], "total": [total.tobytes()], "gram": [gram[upper].tobytes()]})

    rows = frame.where(F.col(column).isNotNull()).select(column)
    if reads_only_cached_data(rows):
        rows = rows.coalesce(rows.sparkSession.sparkContext.defaultParallelism)
    found = Moments(0, np.zeros(dimension), np.zeros((dimension, dimension)))
    for row in rows.mapInArrow(partial, "n long, total binary, gram binary").collect():
        found.n += row.n
        found.total += np.frombuffer(row.total, dtype=np.float64)
        found.gram[upper] += np.frombuffer(row.gram, dtype=np.float64)
    found.gram = np.triu(found.gram) + np.triu(found.gram, 1).T
    return found


def reads_only_cached_data(frame) -> bool:
    """True when every source `frame` reads is a persisted DataFrame (Spark's cache)."""
    leaves = frame._jdf.queryExecution().withCachedData().collectLeaves()
    kinds = {leaves.apply(i).getClass().getSimpleName() for i in range(leaves.size())}
    return kinds == {"InMemoryRelation"}


def principal_components(found: Moments):
    """(components (d, d), explained variance ratios (d,)), descending, of the covariance.

    As Spark's PCA: the eigenvectors of the sample covariance, ratios = eigenvalues / their sum
    (RowMatrix.computePrincipalComponentsAndExplainedVariance). Eigenvalues below 0 (float noise
    of a rank-deficient covariance) count as 0. Each component's sign is set so that its
    largest-magnitude entry is positive (sklearn's svd_flip convention), so a fit is reproducible.
    All ratios are 0 when the total variance is below ZERO_VARIANCE_RATIO of the mean's squared
    norm (all vectors the same, up to float noise).
    """
    covariance = found.covariance()
    values, vectors = np.linalg.eigh(covariance)
    values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    largest = np.argmax(np.abs(vectors), axis=0)
    vectors = vectors * np.sign(vectors[largest, np.arange(vectors.shape[1])])
    total, scale = float(values.sum()), float(np.sum(np.square(found.total / found.n)))
    if not math.isfinite(total) or not total > ZERO_VARIANCE_RATIO * max(scale, 1e-30):
        return vectors, np.zeros_like(values)
    return vectors, values / total


def fit_pca(frame, column: str, dimension: int, variance: float, k: Optional[int] = None) -> PcaResult:
    """Fit PCA on the non-null arrays of `column` (d = `dimension` long) in one pass.

    MLlib's PCA.fit passes over its input twice and boxes every row into a vector; here one
    Spark job accumulates X^T X in Arrow batches (`moments`), the driver decomposes the d x d
    covariance, picks k (`variance`, or `k`), and builds Spark's PCAModel from the first k
    components, so transform, save and load stay MLlib's. Zero total variance: k = 1, ratios 0.
    Raises OrchardError for fewer than 2 rows or rows of another length.
    """
    try:
        found = moments(frame, column, dimension)
    except Exception as error:
        if "whose length is not" in str(error):
            raise OrchardError(f"VariancePCA: {column!r} has rows whose length is not {dimension}") from None
        raise
    if found.n < 2:
        raise OrchardError(f"VariancePCA: could not fit PCA on {column!r}: {found.n} non-null row(s), need 2")
    components, ratios = principal_components(found)
    if not ratios.any():
        log.warning("PCA: the features have zero total variance (all the same): k=1, ratios 0")
        chosen = 1
    else:
        chosen = min(k, dimension) if k else choose_k(list(ratios), variance)
    model = spark_pca_model(components[:, :chosen], ratios[:chosen])
    log.info("PCA: k=%d explains %.4f of the variance", chosen, float(ratios[:chosen].sum()))
    return PcaResult(
        model=model,
        k=chosen,
        explained_variance=[float(x) for x in ratios],
    )


def spark_pca_model(components: np.ndarray, ratios: np.ndarray):
    """A pyspark.ml.feature.PCAModel (input VECTOR_COLUMN, output PCA_VECTOR_COLUMN) with the
    given components (d, k) and explained variance ratios (k,).

    pyspark has no public constructor for PCAModel; the JVM class has one (package-private in
    Scala, public in bytecode), reached through py4j. The matrix travels as one byte array
    (a py4j list of d x k doubles would take seconds). Raises OrchardError when this Spark has
    no such constructor.
    """
    from pyspark.ml.feature import PCAModel

    jvm = active_context()._jvm
    rows, k = components.shape
    try:
        pc = jvm.org.apache.spark.ml.linalg.DenseMatrix(rows, k, java_doubles(_f8_bytes(components.ravel(order="F"))))
        explained = jvm.org.apache.spark.ml.linalg.DenseVector(java_doubles(_f8_bytes(ratios)))
        java_model = jvm.org.apache.spark.ml.feature.PCAModel(PCAModel._randomUID(), pc, explained)
    except Exception as error:  # py4j: constructor missing or changed in this Spark
        raise OrchardError(f"this Spark has no PCAModel constructor orchard can reach: {error}") from None
    model = PCAModel(java_model)
    model._set(k=k, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN)
    model._transfer_params_to_java()
    return model


def _f8_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def pc_shape(model) -> Tuple[int, int]:
    """(d, k): the shape of a Spark PCAModel's components, asked of the JVM (reading `model.pc`
    copies the d x k matrix into Python: ~1 s for 1280 x 215)."""
    pc = model._java_obj.pc()
    return int(pc.numRows()), int(pc.numCols())


def projected(frame, model, input_col: str = "features", output_col: str = "pca", dimension: Optional[int] = None):
    """`frame` with `output_col` (array<float>, model.k long) = `input_col` (array<float> or
    array<double>) projected by a fitted Spark PCAModel; null where `input_col` is null.

    Null rows go through the model as zero vectors (one pass, no union) and come out null.
    With `dimension`, a row of another length fails the job with a message saying so.
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    dimension = dimension or pc_shape(model)[0]
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
    `fit` passes over the input once (`fit_pca`: the covariance from X^T X accumulated in
    Arrow batches, decomposed on the driver, as Spark's PCA defines components and explained
    variance), picks k, and returns a VariancePCAModel adding outputCol (default "pca"):
    array<float> of length k, through Spark's PCAModel (which, like MLlib, does not center).

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
        column = self.getInputCol()
        _check_array_column(dataset, column, "VariancePCA")
        variance, k = self.getVariance(), self.getK()
        if not 0.0 < variance <= 1.0:
            raise OrchardError(f"VariancePCA: variance must be in (0, 1], got {variance}")
        if k is not None and k < 1:
            raise OrchardError(f"VariancePCA: k must be a positive integer, got {k}")
        result = fit_pca(dataset, column, _input_dimension(dataset, column), variance, k)
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
        return pc_shape(self.pcaModel)[0]

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
