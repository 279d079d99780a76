"""A classifier on orchard's features: which fruit is this? (Spark MLlib logistic regression)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from orchard.errors import OrchardError
from orchard.table.delta import read_table


def evaluate_features(spark, features_uri: str, column: str = "pca",
                      train_split: str = "Training", test_split: str = "Test",
                      version: Optional[int] = None) -> Dict[str, Any]:
    """Train a logistic regression on `column` of the train split of the features table at
    `features_uri` (its `version`, default the newest); accuracy on the test split."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    table = read_table(spark, features_uri, version).where(F.col(column).isNotNull())
    table = table.withColumn("x", array_to_vector(column)).cache()
    train = table.where(F.col("split") == train_split)
    test = table.where(F.col("split") == test_split)
    n_train, n_test = train.count(), test.count()
    if not n_train or not n_test:
        raise OrchardError(
            f"need rows in both splits {train_split!r} ({n_train}) and {test_split!r} ({n_test})"
        )
    pipeline = Pipeline(stages=[
        StringIndexer(inputCol="label", outputCol="y", handleInvalid="keep"),
        LogisticRegression(featuresCol="x", labelCol="y", maxIter=200, regParam=1e-3,
                           elasticNetParam=0.0, family="multinomial"),
    ])
    model = pipeline.fit(train)
    predictions = model.transform(test)
    accuracy = MulticlassClassificationEvaluator(
        labelCol="y", predictionCol="prediction", metricName="accuracy"
    ).evaluate(predictions)
    table.unpersist()
    return {"column": column, "train_rows": n_train, "test_rows": n_test,
            "classes": train.select("label").distinct().count(), "accuracy": float(accuracy)}
