"""`orchard predict`: which fruit is in each image, for any number of images, on Spark.

The exported fruit.onnx runs in Spark's Python workers through ImageFeaturizer's machinery
(orchard.pipeline.inference: Arrow batches, one ONNX Runtime session per worker, the same
decoding and error reasons), its "features" being the class probabilities. The output follows
`orchard run`'s rules: every listed file ends as a prediction, an error row with a reason, or
an ignored file, and the counts reconcile.

    OUTPUT/predictions/  Parquet: path, label (null when the layout has none), split,
                         predicted, confidence (float), top_k (array<struct<label, probability>>)
    OUTPUT/errors/       Parquet: path, label, split, error
    OUTPUT/predict.json  counts, the model, accuracy on the rows whose label the model knows
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from orchard import __version__
from orchard.classify.export import read_metadata
from orchard.classify.names import INPUT_NAME, ONNX_FILE, OUTPUT_NAME
from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR
from orchard.pipeline.config import arrow_batch_rows
from orchard.pipeline.featurize import ARROW_BATCH_KEY, ship_model
from orchard.pipeline.grow import listed_files
from orchard.pipeline.inference import (
    DECODE_MS,
    HEIGHT,
    INFER_MS,
    WIDTH,
    FrameColumns,
    partition_featurizer,
)
from orchard.pipeline.load import LOCATION_COLUMN, choose_partitions, images_to_featurize, list_input, planned_cores
from orchard.pipeline.models import ModelSpec, sha256_of
from orchard.pipeline.record import RunCounts
from orchard.pipeline.run import error_rows, unread_paths  # the same reconciliation as `orchard run`
from orchard.pipeline.sessions import with_settings
from orchard.pipeline.write import Output, check_local_input, check_local_output
from orchard.spark.progress import featurize_progress
from orchard.spark.session import task_cpus

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
PREDICT_RECORD = "predict.json"
PROBABILITIES = "_probabilities"


@dataclass
class PredictConfig:
    """input: a folder of images (any Hadoop URI; <root>/<Split>/<Class>/<image>,
    <root>/<Class>/<image>); model: a local model folder; output: any Hadoop URI."""

    input: str
    model: str
    output: str
    top_k: int = 3
    batch_size: int = 8
    partitions: Optional[int] = None
    overwrite: bool = False

    def validate(self) -> None:
        if self.top_k < 1:
            raise OrchardError(f"--top-k must be positive, got {self.top_k}")
        if self.batch_size < 1:
            raise OrchardError(f"--batch-size must be positive, got {self.batch_size}")
        if self.partitions is not None and self.partitions < 1:
            raise OrchardError(f"--partitions must be positive, got {self.partitions}")
        if not (Path(self.model) / ONNX_FILE).is_file():
            raise OrchardError(f"no {ONNX_FILE} in {self.model}: train one with `orchard train RUN --output "
                               f"{self.model}`")


def shippable_model(model_dir: Path) -> Path:
    """fruit.onnx as `fruit-<sha256 prefix>.onnx` (a copy in a temporary folder): Spark ships
    files by name, and two models both named fruit.onnx cannot be shipped to one application."""
    source = model_dir / ONNX_FILE
    target = Path(tempfile.mkdtemp(prefix="orchard-predict-")) / f"fruit-{sha256_of(source)[:16]}.onnx"
    shutil.copyfile(source, target)
    return target


def fruit_spec(path: Path, classes: List[str], size: int) -> ModelSpec:
    """A ModelSpec for ImageFeaturizer's worker code: the "features" are the probabilities."""
    return ModelSpec(name="fruit", file_name=path.name, sha256=sha256_of(path), url="", input_name=INPUT_NAME,
                     output_name=OUTPUT_NAME, image_size=size, layout="NHWC", dtype="uint8",
                     feature_dim=len(classes), description="orchard fruit classifier")


def scored_schema():
    from pyspark.sql.types import ArrayType, DoubleType, FloatType, IntegerType, StringType, StructField, StructType

    return StructType([
        StructField("path", StringType()), StructField("label", StringType()), StructField("split", StringType()),
        StructField(PROBABILITIES, ArrayType(FloatType())), StructField(WIDTH, IntegerType()),
        StructField(HEIGHT, IntegerType()), StructField("error", StringType()),
        StructField(DECODE_MS, DoubleType()), StructField(INFER_MS, DoubleType()),
    ])


def with_answers(frame, classes: List[str], top_k: int):
    """path, label, split, predicted, confidence, top_k from PROBABILITIES (Spark SQL, no UDF)."""
    from pyspark.sql import functions as F

    names = F.array(*[F.lit(name) for name in classes])
    pairs = F.transform(F.col(PROBABILITIES), lambda p, i: F.struct(p.alias("probability"),
                                                                    F.element_at(names, i + 1).alias("label")))
    ranked = F.slice(F.sort_array(pairs, asc=False), 1, top_k)  # by probability, then label
    top = F.transform(ranked, lambda s: F.struct(s["label"].alias("label"), s["probability"].alias("probability")))
    return (frame.withColumn("top_k", top)
            .select("path", "label", "split", F.col("top_k")[0]["label"].alias("predicted"),
                    F.col("top_k")[0]["probability"].alias("confidence"), "top_k"))


def predict(spark, config: PredictConfig) -> Dict[str, Any]:
    """Predict every image below config.input; write predictions/, errors/, predict.json under
    config.output; return the predict.json record. Raises OrchardError for a missing input or
    model, or an existing output (without overwrite)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    config.validate()
    started = time.perf_counter()
    model_dir = Path(config.model)
    meta = read_metadata(str(model_dir / ONNX_FILE))
    classes, size = list(meta["classes"]), int(meta["input"].get("size", 224))
    check_local_input(config.input)
    check_local_output(config.output, config.overwrite)
    listing = list_input(spark, config.input)
    partitions = config.partitions or choose_partitions(listing.n_readable, planned_cores(spark))
    images, column = images_to_featurize(spark, listing, partitions)
    output = Output(spark, config.output)
    output.prepare(config.overwrite)

    path = shippable_model(model_dir)
    spec = fruit_spec(path, classes, size)
    ship_model(spark.sparkContext, path, spec.sha256)
    columns = FrameColumns(input=column, features=PROBABILITIES, error="error", kept=("path", "label", "split"),
                           paths=column == LOCATION_COLUMN)
    score = partition_featurizer(spec.file_name, spec, config.batch_size, task_cpus(spark), columns)
    scoped = with_settings(images, {ARROW_BATCH_KEY: str(arrow_batch_rows(config.batch_size))})
    scored = scoped.mapInPandas(score, scored_schema()).persist(StorageLevel.MEMORY_AND_DISK)
    with featurize_progress(spark.sparkContext, listing.n_images, "predict"):
        rows_read = scored.count()

    unread = unread_paths(listed_files(spark, listing), scored, rows_read, listing.n_readable)
    errors = error_rows(scored, listing, unread)
    answers = with_answers(scored.where(F.col("error").isNull()), classes, config.top_k)
    answers.write.parquet(output.child(PREDICTIONS_DIR))
    errors.write.parquet(output.child(ERRORS_DIR))
    written = spark.read.parquet(output.child(PREDICTIONS_DIR))
    stats = written.agg(F.count("*").alias("rows"),
                        F.sum(F.col("label").isin(classes).cast("int")).alias("known"),
                        F.sum((F.col("label") == F.col("predicted")).cast("int")).alias("right")).first()
    n_errors = spark.read.parquet(output.child(ERRORS_DIR)).count()
    scored.unpersist()

    counts = RunCounts(found=listing.found, images=listing.n_images, featurized=int(stats["rows"]),
                       errors=int(n_errors), ignored=listing.ignored_count)
    if counts.featurized + counts.errors + counts.ignored != counts.found:
        raise OrchardError(f"internal: counts do not reconcile: {counts}")
    known = int(stats["known"] or 0)
    record = {
        "orchard_version": __version__,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input": listing.root_uri,
        "output": output.uri,
        "model": {"dir": str(model_dir.resolve()), "sha256": spec.sha256, "classes": len(classes)},
        "counts": {("predicted" if k == "featurized" else k): v for k, v in asdict(counts).items()
                   if k != "forgotten"},  # predictions have no erasure record
        "ignored_files": listing.ignored,
        "accuracy": {"rows_with_known_label": known,
                     "accuracy": round(int(stats["right"] or 0) / known, 6) if known else None},
        "partitions": partitions,
        "seconds": round(time.perf_counter() - started, 3),
    }
    output.write_json(PREDICT_RECORD, record)
    log.info("predicted %d images, %d errors, %d ignored -> %s", counts.featurized, counts.errors, counts.ignored,
             output.uri)
    return record
