"""The whole chain: list -> read -> preprocess + featurize -> PCA -> Parquet + run.json."""
from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from orchard import __version__, names
from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR, FEATURES_DIR, PCA_MODEL_DIR, RUN_RECORD, SCREE_PLOT, STAGE_PROPERTY
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig
from orchard.pipeline.featurize import ImageFeaturizer, arrow_batch_rows
from orchard.pipeline.load import (
    EMPTY_FILE_REASON,
    choose_partitions,
    file_size,
    list_input,
    planned_cores,
    read_images,
    with_label_and_split,
)
from orchard.pipeline.models import resolve_model
from orchard.pipeline.quantize import listing_calibration, precision_record
from orchard.pipeline.record import RunCounts, RunRecord
from orchard.pipeline.reduce import VariancePCA, VariancePCAModel
from orchard.pipeline.write import (
    Output,
    check_local_input,
    check_local_output,
    parquet_options,
    scree_plot_png,
)
from orchard.spark.eventlog import event_log_conf, event_log_of
from orchard.spark.progress import featurize_progress
from orchard.spark.session import create_session, executor_task_counts, stop_session

log = logging.getLogger(__name__)

UNREAD_FILE_REASON = "listed but not read by Spark (removed or unreadable during the run)"


class StageTimer:
    """Wall-clock seconds per named stage, in order.

    Once `spark_context` is set, the Spark jobs a stage starts carry its name (local property
    `orchard.stage`), so `orchard report` can tell from the event log which stage ran what.
    """

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}
        self.started_at: Dict[str, float] = {}  # epoch seconds, to line up with the event log
        self.spark_context = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self.started_at[name] = round(time.time(), 3)
        if self.spark_context is not None:
            self.spark_context.setLocalProperty(STAGE_PROPERTY, name)
        log.info("stage %s ...", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
            if self.spark_context is not None:
                self.spark_context.setLocalProperty(STAGE_PROPERTY, None)
            log.info("stage %s done in %.1f s", name, self.seconds[name])


def launched_by_spark_submit() -> bool:
    """True inside `spark-submit` (e.g. an EMR step): the master then comes from spark-submit."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def start_spark(config: RunConfig, spark_conf: Dict[str, str]):
    """Start Spark for a run: `spark_conf` (the profile's and the user's settings; its
    `spark.master` wins over config.master), orchard's defaults and the event log."""
    conf = dict(spark_conf)
    master = conf.pop("spark.master", None) or config.master
    if not master and not launched_by_spark_submit():
        master = DEFAULT_MASTER
    on_this_machine = bool(master and master.startswith("local")) or config.profile == "local"
    conf = {**event_log_conf(config.event_log_dir, on_this_machine), **conf}
    return create_session("orchard", master, arrow_batch_rows(config.batch_size), conf, on_this_machine,
                          class_archive_name="run")


def run_pipeline(config: RunConfig, spark=None, spark_conf: Optional[Dict[str, str]] = None) -> RunRecord:
    """Run the pipeline described by `config`; return its record (also written as run.json).

    Uses `spark` (or the active session); else starts Spark with `spark_conf` (default
    config.spark_conf; orchard.api.run adds the profile's), and stops it at the end.
    Raises OrchardError on bad settings, a missing input or model, an existing output.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    owns_session = spark is None and SparkContext._active_spark_context is None
    try:
        return _run(config, spark, config.spark_conf if spark_conf is None else spark_conf)
    finally:
        started = SparkSession.getActiveSession() if owns_session else None
        if started is not None:
            stop_session(started)  # also ends the JVM: the event log is complete on return


def _run(config: RunConfig, spark, spark_conf: Dict[str, str]) -> RunRecord:
    config.validate()
    started_at = dt.datetime.now(dt.timezone.utc)
    timer = StageTimer()
    check_local_input(config.input)
    check_local_output(config.output, config.overwrite)
    with timer.stage(names.STAGE_MODEL):
        spec, model_path, model_sha = resolve_model(config.model, config.model_path, feature_output=config.feature_output,
                                                    mean=config.mean, std=config.std)
    _in_background(_import_later_libraries)  # while the JVM starts, which leaves a core idle
    with timer.stage(names.STAGE_SPARK_START):
        spark = spark or start_spark(config, spark_conf)
    timer.spark_context = spark.sparkContext
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cores = planned_cores(spark)
    with timer.stage(names.STAGE_LIST):
        listing = list_input(spark, config.input)
        partitions = config.partitions or choose_partitions(len(listing.images), cores)
        images = read_images(spark, listing, partitions)
    output = Output(spark, config.output)
    output.prepare(config.overwrite)
    featurizer = ImageFeaturizer(modelName=spec.name, modelPath=str(model_path), batchSize=config.batch_size,
                                 featureOutput=spec.output_name, mean=spec.mean, std=spec.std,
                                 precision=config.precision)
    int8 = None
    if config.precision == names.PRECISION_INT8:  # calibrated on the input, once, on the driver
        with timer.stage(names.STAGE_QUANTIZE):
            int8 = featurizer.quantize(listing_calibration(spark, listing))
    featurized = featurizer.transform(images).persist(StorageLevel.MEMORY_AND_DISK)
    with timer.stage(names.STAGE_FEATURIZE), featurize_progress(spark.sparkContext, len(listing.images)):
        log.info("featurizing %d images in %d partitions on %d cores", len(listing.images), partitions, cores)
        stats = featurized.agg(
            F.count("*").alias("rows"),
            F.count("features").alias("featurized"),
            F.sum("decode_ms").alias("decode_ms"),
            F.sum("infer_ms").alias("infer_ms"),
        ).first()

    with timer.stage(names.STAGE_RECONCILE):
        errors = error_rows(featurized, listing, int(stats["rows"]))
    ok = featurized.where(F.col("error").isNull()).drop("error")
    n_featurized = int(stats["featurized"])
    pca: Optional[VariancePCAModel] = None
    with timer.stage(names.STAGE_PCA_FIT):
        if n_featurized >= 2:
            pca = VariancePCA(variance=config.pca_variance, k=config.pca_k).fit(ok)
        else:
            log.warning("PCA skipped: it needs at least 2 featurized images, got %d", n_featurized)
    # the scree plot (~1 s of matplotlib) is drawn while Spark writes the tables
    scree = _in_background(scree_plot_png, pca.explainedVariance, pca.k, config.pca_variance,
                           f"PCA of {spec.name} features ({n_featurized} images)") if pca else None
    with timer.stage(names.STAGE_WRITE_FEATURES):
        table = pca.transform(ok) if pca else ok.withColumn("pca", F.lit(None).cast("array<float>"))
        table = same_schema_as_before(table, pca is not None)
        table = table.withColumn("model", F.lit(spec.name))
        columns = ("path", "label", "split", "features", "pca", "model", "width", "height", "decode_ms", "infer_ms")
        # one wave of tasks, one file per core: fewer, larger files, and faster than two waves here
        table = table.select(*columns)
        table.coalesce(cores).write.options(**parquet_options(table)).parquet(output.child(FEATURES_DIR))
    with timer.stage(names.STAGE_WRITE_ERRORS):
        errors.write.parquet(output.child(ERRORS_DIR))
        n_errors = errors.count()
    with timer.stage(names.STAGE_WRITE_MODEL):
        if pca:
            pca.pcaModel.write().overwrite().save(output.child(PCA_MODEL_DIR))
            output.write_bytes(SCREE_PLOT, scree.result())
    featurized.unpersist()

    counts = RunCounts(found=listing.found, images=len(listing.images), featurized=n_featurized,
                       errors=int(n_errors), ignored=len(listing.ignored))
    if counts.featurized + counts.errors + counts.ignored != counts.found:
        raise OrchardError(f"internal: counts do not reconcile: {counts}")
    record = RunRecord(
        orchard_version=__version__,
        started_at=started_at.isoformat(timespec="seconds"),
        input=listing.root_uri,
        output=output.uri,
        counts=counts,
        ignored_files=listing.ignored[:100],
        model={"name": spec.name, "sha256": model_sha, "file": str(model_path),
               "feature_dim": spec.feature_dim, "input": spec.input_text(), "output": spec.output_name,
               **precision_record(config.precision, int8)},
        pca=_pca_record(pca, config),
        partitions=partitions,
        cores=cores,
        seconds={**timer.seconds, "total": round(sum(timer.seconds.values()), 3)},
        stage_started_at=timer.started_at,
        udf_seconds={"decode": round((stats["decode_ms"] or 0) / 1000, 3),
                     "inference": round((stats["infer_ms"] or 0) / 1000, 3)},
        master=spark.sparkContext.master,
        executors=executor_task_counts(spark),
        spark=_spark_record(spark),
        versions=_versions(),
        config=config.to_dict(),
    )
    output.write_json(RUN_RECORD, record.to_dict())
    log.info("featurized %d images, %d errors, %d ignored -> %s",
             n_featurized, counts.errors, counts.ignored, output.uri)
    return record


def same_schema_as_before(table, projected: bool):
    """features/'s schema as it was before the API: `features` without ImageFeaturizer's column
    metadata (the model is in the `model` column and run.json) and, when projected, `pca` not
    nullable (every kept row has features, so it has a pca: coalesce says so to Spark)."""
    from pyspark.sql import functions as F

    features = F.col("features")
    table = table.withColumn("features", F.when(features.isNotNull(), features))  # drops the metadata
    if projected:
        never_used = F.array_repeat(F.lit(0.0).cast("float"), 0)
        table = table.withColumn("pca", F.coalesce("pca", never_used))
    return table


def _import_later_libraries() -> None:
    """Import what the PCA and the scree plot need (~0.6 s of Python) ahead of time."""
    import importlib

    import matplotlib

    matplotlib.use("Agg")  # no display needed, as in writing.scree_plot_png
    for module in ("matplotlib.pyplot", "pyspark.ml.feature", "pyspark.ml.functions"):
        importlib.import_module(module)


def _in_background(work: Callable[..., Any], *args: Any) -> Future:
    """Run `work(*args)` in a thread; the result (or error) comes with `.result()`."""
    pool = ThreadPoolExecutor(max_workers=1)
    result = pool.submit(work, *args)
    pool.shutdown(wait=False)  # the thread ends when the work is done
    return result


def error_rows(featurized, listing, rows_read: int):
    """Error rows: decode failures, the listing's problems (links, strays, empty or too large
    files), plus every listed image the scan did not return.

    Each file is read at most once, so when the scan returned as many rows as there are
    listed images, none is missing and the (anti-join) search for the missing is skipped.
    """
    from pyspark.sql import functions as F

    spark = featurized.sparkSession
    unread: List[str] = []
    readable = listing.readable
    if rows_read != len(readable):
        listed = spark.createDataFrame([(path,) for path in readable], "path string")
        unread = [row.path for row in listed.join(featurized.select("path"), "path", "left_anti").collect()]
    reasons = [(path, _unread_reason(spark, listing, path)) for path in unread] + sorted(listing.problems.items())
    errors = featurized.where(F.col("error").isNotNull()).select("path", "error")
    if reasons:
        errors = errors.unionByName(spark.createDataFrame(reasons, "path string, error string"))
    labelled = with_label_and_split(errors, listing.split_layout)
    return labelled.select("path", "label", "split", "error").coalesce(1)


def _unread_reason(spark, listing, path: str) -> str:
    size = file_size(spark, f"{listing.root_uri.rstrip('/')}/{path}")
    return EMPTY_FILE_REASON if size == 0 else UNREAD_FILE_REASON


def _pca_record(pca: Optional[VariancePCAModel], config: RunConfig) -> Dict[str, Any]:
    if not pca:
        return {"k": 0, "skipped": "fewer than 2 featurized images"}
    if not any(pca.explainedVariance):
        return {"k": pca.k, "chosen_by": "zero total variance", "explained_variance": 0.0,
                "warning": "the features have zero total variance (identical images?): "
                           "PCA explains nothing; k = 1", "scree_plot": SCREE_PLOT}
    return {
        "k": pca.k,
        "chosen_by": "pca_k" if config.pca_k else f"explained variance >= {config.pca_variance}",
        "explained_variance": round(pca.explainedByK, 6),
        "explained_variance_ratios": [round(x, 8) for x in pca.explainedVariance[: max(pca.k, 50)]],
        "scree_plot": SCREE_PLOT,
    }


def _spark_record(spark) -> Dict[str, Any]:
    context = spark.sparkContext
    return {
        "event_log": event_log_of(spark),
        "version": spark.version,
        "master": context.master,
        "app_id": context.applicationId,
        "default_parallelism": context.defaultParallelism,
        "event_log_dir": context.getConf().get("spark.eventLog.dir", None)
        if context.getConf().get("spark.eventLog.enabled", "false") == "true" else None,
    }


def _versions() -> Dict[str, str]:
    import numpy
    import onnxruntime
    import pandas
    import PIL
    import pyarrow

    return {
        "python": platform.python_version(),
        "orchard": __version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "pillow": PIL.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "executable": sys.executable,
        "cwd": str(Path.cwd()),
    }
