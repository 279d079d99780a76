"""PCA with Spark MLlib: k chosen by explained variance, the model kept for new images."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

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


def with_vectors(frame):
    """Add the MLlib vector column PCA reads (array<float> -> DenseVector, no Python UDF)."""
    from pyspark.ml.functions import array_to_vector

    return frame.withColumn(VECTOR_COLUMN, array_to_vector("features"))


def fit_pca(vectors, dimension: int, variance: float, k: Optional[int] = None) -> PcaResult:
    """Fit PCA on `vectors` (a cached frame with VECTOR_COLUMN).

    Spark computes every eigenvalue in any fit, so one fit with all components gives the
    explained variance curve; a second fit keeps the k components that are needed.
    """
    import time

    from pyspark.ml.feature import PCA

    started = time.perf_counter()
    vectors = vectors.persist()  # both fits read the vectors: convert the arrays once
    full = PCA(k=dimension, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors)
    ratios = [float(x) for x in full.explainedVariance.toArray()]
    full_done = time.perf_counter()
    chosen = min(k, dimension) if k else choose_k(ratios, variance)
    model = full if chosen == dimension else PCA(
        k=chosen, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN
    ).fit(vectors)
    vectors.unpersist()
    log.info("PCA: k=%d explains %.4f of the variance", chosen, sum(ratios[:chosen]))
    return PcaResult(
        model=model,
        k=chosen,
        explained_variance=ratios,
        seconds_full_fit=full_done - started,
        seconds_k_fit=time.perf_counter() - full_done,
    )


def project(frame, model):
    """Add `pca` (array<float>) to a frame with `features`, using a fitted PCAModel."""
    from pyspark.ml.functions import vector_to_array

    projected = model.transform(with_vectors(frame))
    return projected.withColumn("pca", vector_to_array(PCA_VECTOR_COLUMN, "float32")).drop(
        VECTOR_COLUMN, PCA_VECTOR_COLUMN
    )
