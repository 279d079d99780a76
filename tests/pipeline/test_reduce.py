"""PCA: one fit, cut to k components, is the model a k-component fit gives."""
from __future__ import annotations

import numpy as np
import pytest

from orchard.pipeline.reduce import PCA_VECTOR_COLUMN, VECTOR_COLUMN, first_components, fit_pca


@pytest.fixture(scope="module")
def vectors(spark):
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(7)
    data = rng.normal(size=(120, 12)) @ rng.normal(size=(12, 12))  # correlated columns
    return spark.createDataFrame([(Vectors.dense(row),) for row in data], [VECTOR_COLUMN])


def projections(model, frame) -> np.ndarray:
    return np.stack([row[0].toArray() for row in model.transform(frame).select(PCA_VECTOR_COLUMN).collect()])


def test_cut_model_equals_a_k_component_fit(vectors, tmp_path):
    from pyspark.ml.feature import PCA, PCAModel

    full = PCA(k=12, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors)
    fitted = PCA(k=4, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors)
    cut = first_components(full, 4)
    assert cut is not None and cut.getK() == 4 and cut.pc.numCols == 4
    assert np.allclose(cut.pc.toArray(), fitted.pc.toArray())
    assert np.allclose(cut.explainedVariance.toArray(), fitted.explainedVariance.toArray())
    assert np.allclose(projections(cut, vectors), projections(fitted, vectors))
    cut.write().save(str(tmp_path / "model"))  # saved and loaded like any PCAModel
    loaded = PCAModel.load(str(tmp_path / "model"))
    assert loaded.getK() == 4 and np.allclose(projections(loaded, vectors), projections(fitted, vectors))


def test_fit_pca_picks_k_by_variance_and_keeps_every_ratio(vectors):
    result = fit_pca(vectors, dimension=12, variance=0.9)
    assert len(result.explained_variance) == 12
    assert abs(sum(result.explained_variance) - 1.0) < 1e-9
    assert result.explained_by_k >= 0.9 > sum(result.explained_variance[: result.k - 1])
    assert result.model.getK() == result.k == result.model.pc.numCols
