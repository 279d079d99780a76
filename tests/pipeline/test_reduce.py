"""PCA in one pass: the same components and explained variance as Spark MLlib's PCA."""
from __future__ import annotations

import numpy as np
import pytest

from orchard.errors import OrchardError
from orchard.pipeline.reduce import PCA_VECTOR_COLUMN, VECTOR_COLUMN, fit_pca, moments, spark_pca_model


@pytest.fixture(scope="module")
def arrays(spark):
    """120 rows of 12 correlated float32 columns, as `features` (array<float>) in 3 partitions."""
    rng = np.random.default_rng(7)
    data = (rng.normal(size=(120, 12)) @ rng.normal(size=(12, 12)) + 3.0).astype(np.float32)
    frame = spark.createDataFrame([(row.tolist(),) for row in data], "features array<float>").repartition(3)
    return frame, data.astype(np.float64)


def mllib_pca(frame, k: int):
    from pyspark.ml.feature import PCA
    from pyspark.ml.functions import array_to_vector

    vectors = frame.select(array_to_vector("features").alias(VECTOR_COLUMN))
    return PCA(k=k, inputCol=VECTOR_COLUMN, outputCol=PCA_VECTOR_COLUMN).fit(vectors), vectors


def test_moments_are_the_rows_sum_and_gram_matrix(arrays, spark):
    frame, data = arrays
    with_nulls = frame.union(spark.createDataFrame([(None,)], "features array<float>"))
    found = moments(with_nulls, "features", 12)
    assert found.n == 120
    assert np.allclose(found.total, data.sum(axis=0)) and np.allclose(found.gram, data.T @ data)
    assert np.allclose(found.covariance(), np.cov(data, rowvar=False))


def test_one_pass_fit_equals_mllibs_pca_up_to_sign(arrays, tmp_path):
    from pyspark.ml.feature import PCAModel

    frame, _ = arrays
    result = fit_pca(frame, "features", 12, variance=0.9)
    reference, vectors = mllib_pca(frame, 12)
    assert np.allclose(result.explained_variance, reference.explainedVariance.toArray(), atol=1e-9)
    assert result.explained_by_k >= 0.9 > sum(result.explained_variance[: result.k - 1])
    ours, theirs = result.model.pc.toArray(), reference.pc.toArray()[:, : result.k]
    assert ours.shape == (12, result.k) == (12, result.model.getK())
    assert np.allclose(np.abs(np.sum(ours * theirs, axis=0)), 1.0, atol=1e-6)  # same unit vectors, +-
    rows = result.model.transform(vectors).collect()
    inputs, projected = (np.stack([r[c].toArray() for r in rows]) for c in (VECTOR_COLUMN, PCA_VECTOR_COLUMN))
    assert np.allclose(projected, inputs @ ours, atol=1e-6)  # MLlib's transform: no centering
    result.model.write().save(str(tmp_path / "model"))  # saved and loaded like any PCAModel
    assert np.allclose(PCAModel.load(str(tmp_path / "model")).pc.toArray(), ours)


def test_the_fit_is_reproducible_and_signs_follow_the_largest_entry(arrays):
    frame, _ = arrays
    first, again = fit_pca(frame, "features", 12, 0.9, k=4), fit_pca(frame.repartition(5), "features", 12, 0.9, k=4)
    pc = first.model.pc.toArray()
    assert np.allclose(pc, again.model.pc.toArray(), atol=1e-9)
    assert (pc[np.argmax(np.abs(pc), axis=0), np.arange(4)] > 0).all()


def test_same_vectors_have_zero_ratios_and_k_1(spark):
    frame = spark.createDataFrame([([1.0, 2.0, 3.0],)] * 10, "features array<float>")
    result = fit_pca(frame, "features", 3, variance=0.95)
    assert result.k == 1 and result.explained_variance == [0.0, 0.0, 0.0]


def test_too_few_rows_and_other_lengths_are_clear_errors(spark):
    one = spark.createDataFrame([([1.0, 2.0],)], "features array<float>")
    with pytest.raises(OrchardError, match="1 non-null row"):
        fit_pca(one, "features", 2, 0.95)
    mixed = spark.createDataFrame([([1.0, 2.0],), ([1.0, 2.0, 3.0],)], "features array<float>")
    with pytest.raises(OrchardError, match="rows whose length is not 2"):
        fit_pca(mixed, "features", 2, 0.95)


def test_a_spark_pca_model_from_components(spark):
    components = np.linalg.qr(np.random.default_rng(1).normal(size=(1280, 40)))[0]
    model = spark_pca_model(components, np.linspace(0.1, 0.01, 40))
    assert model.getK() == 40 and np.array_equal(model.pc.toArray(), components)
    assert np.allclose(model.explainedVariance.toArray(), np.linspace(0.1, 0.01, 40))
