"""orchard: fruit photos to compact, reusable features on Apache Spark.

Python API (imported on first use, so `import orchard` stays cheap):

    start_spark(master=None, conf=None) -> SparkSession
        Start (or reuse) Spark the way orchard does (default master local[*]).
    stop_spark(spark) -> None
        Stop it (and the JVM orchard launched).
    load_images(spark, uri, partitions=None) -> DataFrame
        path string (relative to uri), label string, split string (null without a split
        folder), content binary (the file's bytes). uri: a folder, hdfs://, s3a://.
    ImageFeaturizer(inputCol="content", outputCol="features", errorCol="error",
                    modelName="mobilenet_v2", modelPath=None, batchSize=8)
        pyspark.ml Transformer: image bytes (binary) or file paths/URIs (string) ->
        features array<float> (float32, 1280 for mobilenet_v2; null on error), error string
        (null when featurized), width/height int (original pixels), decode_ms/infer_ms
        double (milliseconds per image).
    VariancePCA(inputCol="features", outputCol="pca", variance=0.95, k=None)
        pyspark.ml Estimator; fit -> VariancePCAModel.
    VariancePCAModel
        pyspark.ml Model: adds pca array<float> of length k (null where features is null);
        .k, .explainedVariance (every ratio), .pcaModel (the Spark PCAModel).
    run(config: RunConfig, spark=None) -> RunRecord
        `orchard run`: features/ and errors/ (Delta Lake tables), pca_model/, run.json,
        pca_scree.png.
    read_features(uri, table="features", columns=None, storage=None, version=None) -> pandas.DataFrame
        The committed rows of an output's features/ (or errors/) table, read by delta-rs (no
        JVM), at `version` (a table version, or an ISO 8601 time; default the newest): never
        a run still being written. S3 settings come from `storage` (an orchard.storage.Storage;
        default: boto3's usual variables).
    committed_files(uri, table="features", storage=None, version=None) -> list of str
        The URIs of that version's Parquet files (for a reader without Delta support).
    RunConfig, RunRecord (.to_dict() is run.json), OrchardError.

Example:

    import orchard
    from pyspark.ml import Pipeline, PipelineModel

    spark = orchard.start_spark()
    images = orchard.load_images(spark, "data/fruits-360-sample")
    pipeline = Pipeline(stages=[orchard.ImageFeaturizer(), orchard.VariancePCA(variance=0.95)])
    model = pipeline.fit(images.where("split = 'Training'"))
    model.write().overwrite().save("models/fruits")
    PipelineModel.load("models/fruits").transform(images.where("split = 'Test'"))
"""
from __future__ import annotations

import importlib
from typing import Any, List

__version__ = "0.1.0"

# public name -> module defining it
_API = {
    "ImageFeaturizer": "orchard.pipeline.featurize",
    "VariancePCA": "orchard.pipeline.reduce",
    "VariancePCAModel": "orchard.pipeline.reduce",
    "load_images": "orchard.pipeline.load",
    "run": "orchard.api",
    "start_spark": "orchard.api",
    "stop_spark": "orchard.api",
    "RunConfig": "orchard.pipeline.config",
    "RunRecord": "orchard.pipeline.record",
    "OrchardError": "orchard.errors",
    "read_features": "orchard.table.read",
    "committed_files": "orchard.table.read",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'orchard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_API))
