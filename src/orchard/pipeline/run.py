"""The whole chain: list -> read -> preprocess + featurize -> PCA -> Delta tables + run.json."""
from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import platform
import re
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

from orchard import __version__, names
from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR, FEATURES_DIR, RUN_RECORD, SCREE_PLOT, STAGE_PROPERTY
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig, arrow_batch_rows
from orchard.pipeline.grow import (
    INDEX_SCHEMA,
    Changes,
    bookkeeping_partitions,
    check_same_model,
    chunks,
    compare,
    default_chunk_images,
    first_run_chunks,
    listed_files,
    load_pca_model,
    pca_model_name,
    to_do,
)
from orchard.pipeline.killpoints import kill_point, new_run_id
from orchard.pipeline.load import (
    EMPTY_FILE_REASON,
    LOCATION_COLUMN,
    choose_partitions,
    file_size,
    images_to_featurize,
    list_input,
    planned_cores,
    with_label_and_split,
)
from orchard.pipeline.models import resolve_model
from orchard.pipeline.record import RunCounts, RunRecord
from orchard.pipeline.sessions import child_session
from orchard.pipeline.write import (
    Output,
    check_local_input,
    check_local_output,
    scree_plot_png,
)
from orchard.spark.eventlog import event_log_conf, event_log_of
from orchard.spark.gateway import java_error_messages
from orchard.spark.progress import featurize_progress
from orchard.spark.session import create_session, executor_task_counts, stop_session
from orchard.table.delta import (
    ERRORS_SCHEMA,
    FORGOTTEN_TABLE,
    INDEX_COLUMNS,
    STAGED_TABLE,
    OutputTables,
    TableState,
)

if TYPE_CHECKING:  # imported when a run needs them (pyspark.ml, pandas: ~1 s), while the input is listed
    from orchard.pipeline.reduce import VariancePCAModel

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ("path", "label", "split", "features", "pca", "model", "width", "height", "decode_ms", "infer_ms",
                   "size", "mtime_ms")
ERROR_COLUMNS = ("path", "label", "split", "error", "size", "mtime_ms")
UNREAD_FILE_REASON = "listed but not read by Spark (removed or unreadable during the run)"


class StageTimer:
    """Wall-clock seconds per named stage, in the order they started.

    Once `spark_context` is set, the Spark jobs a stage starts carry its name (local property
    `orchard.stage`, set per thread), so `orchard report` can tell from the event log which
    stage ran what. Stages may overlap (the small writes run beside the features' write): the
    run's total is the wall time from the first stage's start to the last one's end.
    """

    def __init__(self) -> None:
        self._starting = threading.Lock()  # stages start in several threads: one order for both dicts
        self.seconds: Dict[str, float] = {}
        self.started_at: Dict[str, float] = {}  # epoch seconds, to line up with the event log
        self.spark_context = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        with self._starting:
            started = time.perf_counter()
            self.started_at[name] = round(time.time(), 3)
            self.seconds[name] = 0.0  # set on exit; here, so that the stages stay in start order
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

    def total(self) -> float:
        """Wall seconds from the first stage's start to the last stage's end (0.0 before any)."""
        if not self.started_at:
            return 0.0
        ends = [self.started_at[name] + self.seconds.get(name, 0.0) for name in self.started_at]
        return round(max(ends) - min(self.started_at.values()), 3)


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
    Raises OrchardError on bad settings, a missing input or model, an existing output, a full
    disk (the last committed output is then left as it was).
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    owns_session = spark is None and SparkContext._active_spark_context is None
    try:
        return _run(config, spark, config.spark_conf if spark_conf is None else spark_conf)
    except Exception as error:
        conflict = delta_conflict(error)
        if conflict:
            raise OrchardError(
                f"another writer committed to {config.output} while this run was writing (Delta: {conflict}): this "
                f"run's features were not committed (its chunks are staged); run it again with --update") from None
        unreadable = unreadable_log(error)
        if unreadable:
            raise OrchardError(
                f"cannot read the Delta log of {config.output} ({unreadable}): this run wrote nothing, and no "
                f"committed data file was touched; repair the log entry named (restore it, or delete the newest "
                f"entry to go back one version) and run again") from None
        if disk_full(error):
            raise OrchardError(
                f"no space left on the device of {config.output}: the run stopped before its commit, so the "
                f"output is still the last committed run (or absent); free some space and run again (with "
                f"--update or --resume the chunks already committed are kept)") from None
        raise
    finally:
        started = SparkSession.getActiveSession() if owns_session else None
        if started is not None:
            stop_session(started)  # also ends the JVM: the event log is complete on return


DELTA_CONFLICT = re.compile(r"\b(Concurrent\w*Exception|MetadataChangedException|ProtocolChangedException)\b")


def delta_conflict(error: BaseException) -> Optional[str]:
    """The name of Delta's conflict exception when `error` is one (another transaction committed
    first: Delta's optimistic concurrency control, "Concurrency control" in Delta's docs), else None."""
    for message in [str(error), *java_error_messages(error)]:
        match = DELTA_CONFLICT.search(message)
        if match:
            return match.group(1)
    return None


def unreadable_log(error: BaseException) -> Optional[str]:
    """The first Java message naming a `_delta_log/` file when `error` is a failure to read a
    table's Delta log (a torn or corrupt entry), else None."""
    for message in java_error_messages(error) or [str(error)]:
        if "_delta_log/" in message and "Exception" in message:
            return message.splitlines()[0][:400]
    return None


def disk_full(error: BaseException) -> bool:
    """True when `error` (Python's, or Java's through py4j) is "no space left on device" (ENOSPC)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return any("No space left on device" in message for message in java_error_messages(error))


def _run(config: RunConfig, spark, spark_conf: Dict[str, str]) -> RunRecord:
    config.validate()
    started_at = dt.datetime.now(dt.timezone.utc)
    timer = StageTimer()
    growing = config.update or config.resume
    check_local_input(config.input)
    if not growing:
        check_local_output(config.output, config.overwrite)
    with timer.stage(names.STAGE_MODEL):
        spec, model_path, model_sha = resolve_model(config.model, config.model_path, feature_output=config.feature_output,
                                                    mean=config.mean, std=config.std)
    model_info = {"name": spec.name, "sha256": model_sha, "feature_dim": spec.feature_dim,
                  "input": spec.input_text(), "output": spec.output_name, "precision": config.precision}
    with timer.stage(names.STAGE_SPARK_START):
        spark = spark or start_spark(config, spark_conf)
    # Not earlier: pyspark forks the JVM's launcher with a preexec_fn, and CPython's fork then takes
    # logging's lock, then the import lock; a thread importing at that moment can hold the import
    # lock and wait for logging's (setuptools' distutils hack logs from inside a find_spec): a
    # deadlock, seen in CI as a run stuck at spark_start.
    _in_background(_import_later_libraries)  # while the input is listed (the driver's Python is idle)
    timer.spark_context = spark.sparkContext
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    cores = planned_cores(spark)
    # the run's own jobs in a child session (the caller's settings untouched): small bookkeeping shuffles
    spark = child_session(spark, {"spark.sql.shuffle.partitions": str(bookkeeping_partitions(cores))})
    output = Output(spark, config.output)
    tables = OutputTables(spark, output.uri, output.storage)
    tables.check_format()
    previous = tables.state()
    output.prepare(config.overwrite or growing)
    kill_point("start")
    run_id = new_run_id()
    base = previous if growing else None
    check_same_model(base, model_info)
    staged = _staged_table(tables, growing, model_info)
    resumed = staged["chunks"] if staged else 0
    with timer.stage(names.STAGE_LIST):
        listing = list_input(spark, config.input)
        listed, n_forgotten = _without_forgotten(tables, listed_files(spark, listing))
        listed = listed.persist()
        # a first run: everything readable is to do, no Spark job needed
        first = base is None and staged is None and not n_forgotten
        known = todo = None
        if first:
            changes, n_todo = Changes(new=listing.n_readable), listing.n_readable
        else:
            base_index = committed_index(tables, base.version) if base else spark.createDataFrame([], INDEX_SCHEMA)
            known = base_index
            if staged:  # a killed run's chunks: their files are done, unless changed since
                staged_index = staged["rows"].select(*INDEX_COLUMNS)
                known = base_index.join(staged_index.select("path"), "path", "left_anti").unionByName(staged_index)
            changes = compare(listed, base_index) if base else Changes(new=listing.n_readable - n_forgotten)
            todo = to_do(listed, known).persist()
            n_todo = todo.count()
        chunk_images = config.chunk_images or default_chunk_images(cores)
        partitions = config.partitions or choose_partitions(max(1, min(n_todo, chunk_images)), cores)
    from orchard.pipeline.featurize import ImageFeaturizer
    from orchard.pipeline.quantize import listing_calibration, precision_record

    featurizer = ImageFeaturizer(modelName=spec.name, modelPath=str(model_path), batchSize=config.batch_size,
                                 featureOutput=spec.output_name, mean=spec.mean, std=spec.std,
                                 largestInput=listing.largest_image, precision=config.precision)
    int8 = None
    if config.precision == names.PRECISION_INT8:  # calibrated once, on the driver: an update on its base's images
        with timer.stage(names.STAGE_QUANTIZE):
            calibration_paths = base.model.get("calibration_paths") if base else None
            int8 = featurizer.quantize(listing_calibration(spark, listing, paths=calibration_paths))
        model_info.update(int8_sha256=int8.sha256, calibration_paths=list(int8.calibration.paths))
        check_same_model(base, model_info)
    in_one_go = n_todo <= chunk_images  # one featurize job, written with the tables: no staging
    single = first and in_one_go  # every listed image read once: the read count alone reconciles
    warming = _in_background(_load_projection_classes, spark)  # while the images are featurized
    with timer.stage(names.STAGE_FEATURIZE), featurize_progress(spark.sparkContext, n_todo):
        log.info("featurizing %d of %d images in %d partitions on %d cores (%s)", n_todo, listing.n_images,
                 partitions, cores, "one chunk" if in_one_go else f"chunks of {chunk_images}")
        if in_one_go:
            featurized = _featurized_in_one_go(spark, featurizer, listing, listed, todo if not first else None,
                                               n_todo, partitions)
            if staged:  # a killed run's chunks, still true of the files
                old = _staged_rows(tables, listed)
                featurized = old if featurized is None else featurized.unionByName(old)
        else:
            paths = first_run_chunks(listing, chunk_images) if first else chunks(todo, n_todo, chunk_images)
            _featurize_in_chunks(spark, featurizer, listing, listed, paths, tables,
                                 {"run_id": run_id, "model": model_info}, partitions)
            featurized = _staged_rows(tables, listed)
        featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK) if featurized is not None else None
        stats = _featurize_stats(featurized)
        kill_point("featurize")

    with timer.stage(names.STAGE_RECONCILE):
        wanted = listed if first else listed.join(known, ["path", "size", "mtime_ms"], "left_anti")
        unread = unread_paths(wanted, featurized, int(stats["rows"]), n_todo if single else None)
        errors = error_rows(featurized, listing, unread)
    ok = featurized.where(F.col("error").isNull()).drop("error") if featurized is not None else None
    n_featurized = int(stats["featurized"])
    kept = _kept_rows(tables, base, listed) if base else None
    warming.exception()  # waits (done long ago); a failed warm-up only means the projection loads them itself
    with timer.stage(names.STAGE_PCA_FIT):
        pca, pca_name, refit = _pca_for(spark, config, tables, base, ok, n_featurized, kept, spec, model_sha, run_id)
    total_ok = n_featurized + (kept["count"] if kept else 0)
    entry = {"run_id": run_id, "started_at": started_at.isoformat(timespec="seconds"),
             "mode": "update" if base else ("overwrite" if previous is not None and config.overwrite else "full"),
             **changes.to_dict(), "featurized_now": n_todo, "resumed_chunks": resumed,
             "model_sha256": model_sha, "pca_model": pca_name, "pca_refit": bool(refit)}
    metadata = {"operation": "run", "run_id": run_id, "orchard_version": __version__, "model": model_info,
                "pca_model": pca_name, "run": entry}
    kill_point("write")
    with timer.stage(names.STAGE_WRITE_FEATURES):
        upserts, deletes, replace = _features_change(spec, pca, ok, kept, refit)
        # the scree plot (~1 s of matplotlib, holding the GIL) is drawn while Spark writes
        scree = _in_background(scree_plot_png, pca.explainedVariance, pca.k, config.pca_variance,
                               f"PCA of {spec.name} features ({total_ok} images)") if pca and refit else None
        # the errors table and the PCA model (small jobs, mostly driver work) in two threads, both
        # before the features' commit, which names the model
        new_errors = errors.join(F.broadcast(_index_of_read(listed, unread)), "path", "left")
        small = [_in_background(_write_errors, timer, tables, kept["errors"].unionByName(new_errors) if kept
                                else new_errors, metadata),
                 _in_background(_write_pca_model, timer, pca.pcaModel if pca and refit else None,
                                tables.table_uri(pca_name) if pca and refit else "")]
        (n_errors, errors_version), _ = [writing.result() for writing in small]
        kill_point("commit")
        if replace:
            tables.overwrite(FEATURES_DIR, upserts.coalesce(cores), metadata)
        else:
            tables.merge(FEATURES_DIR, upserts, deletes, metadata)
        features_version = tables.state_version(FEATURES_DIR)
    if featurized is not None:
        featurized.unpersist()

    counts = RunCounts(found=listing.found, images=listing.n_images, featurized=total_ok,
                       errors=int(n_errors), ignored=listing.ignored_count, forgotten=n_forgotten)
    if counts.featurized + counts.errors + counts.ignored + counts.forgotten != counts.found:
        raise OrchardError(f"internal: counts do not reconcile: {counts}")
    history = ([e["orchard"]["run"] for e in base.history if e["orchard"] and e["orchard"].get("run")]
               if base else []) + [entry]
    record = RunRecord(
        orchard_version=__version__,
        started_at=started_at.isoformat(timespec="seconds"),
        input=listing.root_uri,
        output=output.uri,
        counts=counts,
        ignored_files=listing.ignored,
        model={"name": spec.name, "sha256": model_sha, "file": str(model_path),
               "feature_dim": spec.feature_dim, "input": spec.input_text(), "output": spec.output_name,
               **precision_record(config.precision, int8)},
        pca=_pca_record(pca, config) if refit or not pca else {**_pca_record(pca, config), "model": pca_name},
        partitions=partitions,
        cores=cores,
        seconds={**timer.seconds, "total": timer.total()},
        stage_started_at=timer.started_at,
        udf_seconds={"decode": round((stats["decode_ms"] or 0) / 1000, 3),
                     "inference": round((stats["infer_ms"] or 0) / 1000, 3)},
        master=spark.sparkContext.master,
        executors=executor_task_counts(spark),
        spark=_spark_record(spark),
        versions=_versions(),
        config=config.to_dict(),
        history=history,
        table={"features_version": features_version, "errors_version": errors_version},
    )
    plot = scree.result() if scree is not None else None
    # run.json names the table version it describes: a kill before this line leaves the previous
    # run's record, naming the previous version (`orchard history` reads the tables themselves)
    output.write_json(RUN_RECORD, record.to_dict())
    if plot is not None:
        output.write_bytes(SCREE_PLOT, plot)
    listed.unpersist()
    if todo is not None:
        todo.unpersist()
    tables.remove(STAGED_TABLE)  # the chunks are in the committed table now (and no cached plan reads them)
    log.info("featurized %d images (%d now), %d errors, %d ignored -> %s (features version %d)",
             total_ok, n_featurized, counts.errors, counts.ignored, output.uri, features_version)
    return record


def _without_forgotten(tables: OutputTables, listed) -> Tuple[Any, int]:
    """(`listed` without the files `orchard forget` removed (same path, size and mtime_ms),
    how many were left out); `listed` itself when nothing was ever forgotten."""
    if not tables.is_table(FORGOTTEN_TABLE):
        return listed, 0
    forgotten = tables.read(FORGOTTEN_TABLE).select(*INDEX_COLUMNS)
    n = listed.join(forgotten, list(INDEX_COLUMNS), "left_semi").count()
    if n:
        log.info("leaving out %d image(s) removed by `orchard forget`", n)
    return (listed.join(forgotten, list(INDEX_COLUMNS), "left_anti"), int(n)) if n else (listed, 0)


def committed_index(tables: OutputTables, version: Optional[int] = None):
    """DataFrame(path, size, mtime_ms) of the images the tables hold (at `version` of the
    features table; the errors table as it is): every featurized image and every decode failure."""
    from pyspark.sql import functions as F

    features = tables.read(FEATURES_DIR, version).select(*INDEX_COLUMNS)
    errors = tables.read(ERRORS_DIR, schema=ERRORS_SCHEMA).where(F.col("size").isNotNull()).select(*INDEX_COLUMNS)
    return features.unionByName(errors.join(features.select("path"), "path", "left_anti"))


def _index_of_read(listed, unread):
    """DataFrame(path, size, mtime_ms) of the listed images the run read (not `unread`): the
    error rows of these carry their size and mtime_ms, so the next update does not retry them."""
    return listed.join(unread, "path", "left_anti") if unread is not None else listed


def _staged_table(tables: OutputTables, growing: bool, model: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The staged chunks of a killed run, for an --update or --resume with the same model:
    {"rows": DataFrame, "chunks": commits}; None otherwise (a full run removes them)."""
    if not tables.is_table(STAGED_TABLE):
        return None
    state = tables.state(STAGED_TABLE) if growing else None
    same = state is not None and all(state.model.get(key) == model.get(key) for key in ("sha256", "input", "output"))
    if not same:
        log.info("removing the staged chunks of an earlier run (%s)", "a full run" if not growing else "another model")
        tables.remove(STAGED_TABLE)
        return None
    chunks_ = sum(1 for entry in state.history if entry["operation"] == "WRITE")
    return {"rows": tables.read(STAGED_TABLE), "chunks": chunks_}


def _featurize_in_chunks(spark, featurizer, listing, listed, path_chunks: Iterator[List[str]], tables: OutputTables,
                         metadata: Dict[str, Any], partitions: int) -> None:
    """Featurize each chunk of paths; each chunk's rows (with the listed size and mtime_ms) are
    one commit of the staged table, so that a killed run loses at most the chunk in flight."""
    from pyspark.sql import functions as F

    for number, paths in enumerate(path_chunks):
        rows = _featurized(spark, featurizer, listing, partitions, paths)
        # the size and mtime as listed (what the next run compares); broadcast: the features are not shuffled
        tables.append(STAGED_TABLE, rows.join(F.broadcast(listed), "path"), {**metadata, "chunk": number})
        kill_point("featurize")


def _featurized_in_one_go(spark, featurizer, listing, listed, todo, n_todo: int, partitions: int):
    """The featurizer's rows (with the listed size and mtime_ms) of every readable image
    (`todo` None: a first run) or of `todo`'s paths (at most a chunk: collected); None when
    there is nothing to do."""
    from pyspark.sql import functions as F

    if todo is not None and n_todo == 0:
        return None
    paths = [row["path"] for row in todo.select("path").collect()] if todo is not None else None
    rows = _featurized(spark, featurizer, listing, partitions, paths)
    return rows.join(F.broadcast(listed), "path", "left")


def _featurized(spark, featurizer, listing, partitions: int, paths: Optional[List[str]] = None):
    """The featurizer's rows for the listing's readable images (or `paths`): read by the Python
    workers from their local paths, or by Spark (see load.images_to_featurize)."""
    images, column = images_to_featurize(spark, listing, partitions, paths)
    return featurizer.copy({featurizer.inputCol: column}).transform(images).drop(LOCATION_COLUMN)


def _staged_rows(tables: OutputTables, listed):
    """The staged chunks' rows still true of the files (same size and mtime as listed now, one
    per path), or None."""
    from pyspark.sql import functions as F

    if not tables.is_table(STAGED_TABLE):
        return None
    rows = tables.read(STAGED_TABLE).join(F.broadcast(listed), ["path", "size", "mtime_ms"], "left_semi")
    return rows.dropDuplicates(["path"])


def _features_change(spec, pca: Optional[VariancePCAModel], ok, kept, refit: bool):
    """(rows to write, paths to delete or None, replace the table?): a full run or a PCA refit
    replaces the table with every row (new and kept) projected with `pca`; an update adds the
    new rows, projected with the kept PCA, and deletes the rows of removed or changed images."""
    from pyspark.sql import functions as F

    parts = [ok.select(*[c for c in FEATURE_COLUMNS if c not in ("pca", "model")])] if ok is not None else []
    replace = kept is None or refit
    if kept is not None and refit:
        parts.append(kept["rows"].drop("pca", "model"))
    if not parts:  # nothing featurized: an empty frame of the table's columns
        parts = [kept["rows"].drop("pca", "model").limit(0)] if kept is not None else []
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    table = pca.transform(table) if pca else table.withColumn("pca", F.lit(None).cast("array<float>"))
    table = same_schema_as_before(table, pca is not None).withColumn("model", F.lit(spec.name)).select(*FEATURE_COLUMNS)
    deletes = None
    if kept is not None and not replace:
        deletes = kept["stale"].join(table.select("path"), "path", "left_anti")
    return table, deletes, replace


def _featurize_stats(featurized) -> Dict[str, Any]:
    """rows, featurized (rows with features), decode_ms and infer_ms summed (an action: it runs the featurizer)."""
    from pyspark.sql import functions as F

    if featurized is None:
        return {"rows": 0, "featurized": 0, "decode_ms": 0.0, "infer_ms": 0.0}
    return featurized.agg(
        F.count("*").alias("rows"),
        F.count("features").alias("featurized"),
        F.sum("decode_ms").alias("decode_ms"),
        F.sum("infer_ms").alias("infer_ms"),
    ).first().asDict()


def _kept_rows(tables: OutputTables, base: TableState, listed) -> Dict[str, Any]:
    """The base version's rows still true of the input (same path, size and mtime): `rows`,
    their `count`, the error rows to keep (decode failures; the listing's problems are
    recomputed), and `stale`: DataFrame(path) of the rows of removed or changed images."""
    features = tables.read(FEATURES_DIR, base.version)
    rows = features.join(listed, list(INDEX_COLUMNS), "left_semi")
    stale = features.select("path").join(rows.select("path"), "path", "left_anti")
    errors = tables.read(ERRORS_DIR, schema=ERRORS_SCHEMA).join(listed, list(INDEX_COLUMNS), "left_semi")
    return {"rows": rows, "count": rows.count(), "errors": errors, "stale": stale}


def _pca_for(spark, config: RunConfig, tables: OutputTables, base: Optional[TableState], ok, n_new: int, kept,
             spec, sha256: str, run_id: str):
    """(model or None, its folder name, fitted now?): --pca-model, the base run's model, or a
    new fit (first run, --refit-pca, or a base without a model) on every kept and new row."""
    from orchard.pipeline.featurize import features_metadata
    from orchard.pipeline.reduce import VariancePCA

    if config.pca_model:  # projects every row; saved in this output too (self-contained)
        model = load_pca_model(spark, config.pca_model, spec.feature_dim, spec.name)
        return model, pca_model_name(tables, run_id), True
    if base and base.pca_model and not config.refit_pca:
        model = load_pca_model(spark, tables.uri, spec.feature_dim, spec.name, version=base.version)
        return model, base.pca_model, False
    parts = ([ok.select("features")] if ok is not None else []) + ([kept["rows"].select("features")] if kept else [])
    rows = parts[0].unionByName(parts[1]) if len(parts) == 2 else (parts[0] if parts else None)
    n = n_new + (kept["count"] if kept else 0)
    if n < 2:
        log.warning("PCA skipped: it needs at least 2 featurized images, got %d", n)
        return None, None, True
    if kept:  # rows read back from the table carry no model metadata: tag them like the featurizer's
        rows = rows.withColumn("features", rows["features"].alias("features", metadata=features_metadata(spec, sha256)))
    model = VariancePCA(variance=config.pca_variance, k=config.pca_k).fit(rows)
    return model, pca_model_name(tables, run_id), True


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


def _write_errors(timer: StageTimer, tables: OutputTables, errors, metadata: Dict[str, Any]) -> Tuple[int, int]:
    """Replace the errors table with `errors` (stage write_errors): (rows committed, as read
    back from the table for the run's reconciliation; the table's new version)."""
    with timer.stage(names.STAGE_WRITE_ERRORS):
        tables.overwrite(ERRORS_DIR, errors.select(*ERROR_COLUMNS).coalesce(1), metadata)
        return int(tables.read(ERRORS_DIR).count()), tables.state_version(ERRORS_DIR)


def _write_pca_model(timer: StageTimer, pca_model, uri: str) -> None:
    """Save a newly fitted Spark PCAModel at `uri` (stage write_model); nothing when None."""
    with timer.stage(names.STAGE_WRITE_MODEL):
        if pca_model is not None:
            pca_model.write().save(uri)


def _import_later_libraries() -> None:
    """Import what featurizing, the PCA and the scree plot need (~1.5 s of Python: pyspark.ml,
    pandas, matplotlib) ahead of time, while the input is listed (this module imports none of them)."""
    import importlib

    import matplotlib

    matplotlib.use("Agg")  # no display needed, as in writing.scree_plot_png
    for module in ("orchard.pipeline.featurize", "orchard.pipeline.reduce", "matplotlib.pyplot",
                   "pyspark.ml.feature", "pyspark.ml.functions"):
        importlib.import_module(module)


def _load_projection_classes(spark) -> None:
    """Analyse a one-row plan using MLlib's array_to_vector, so that the JVM loads what the
    projection needs (~1 s of Scala reflection on first use) during the featurize job, which
    keeps the driver idle, rather than when the features are written."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    spark.range(1).select(array_to_vector(F.array(F.lit(0.0))))


def _in_background(work: Callable[..., Any], *args: Any) -> Future:
    """Run `work(*args)` in a thread; the result (or error) comes with `.result()`."""
    pool = ThreadPoolExecutor(max_workers=1)
    result = pool.submit(work, *args)
    pool.shutdown(wait=False)  # the thread ends when the work is done
    return result


def unread_paths(wanted, featurized, rows_read: int, n_wanted: Optional[int]):
    """DataFrame(path) of the images in `wanted` (DataFrame with `path`) that the scan did not
    return (removed or emptied after the listing), or None when there are none.

    Each file is read at most once, so when `n_wanted` (None: unknown) equals the rows read,
    none is missing and the (anti-join) search is skipped.
    """
    if n_wanted is not None and rows_read == n_wanted:
        return None
    if featurized is None:
        return wanted.select("path")
    return wanted.select("path").join(featurized.select("path"), "path", "left_anti")


def error_rows(featurized, listing, unread=None):
    """Error rows: decode failures (the `error` column of `featurized`, None: no rows read),
    the listing's problems (links, strays, empty or too large files), plus every image of
    `unread` (DataFrame(path): listed, not returned by the scan) with its reason.

    Returns DataFrame(path, label, split, error string), one partition.
    """
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = featurized.sparkSession if featurized is not None else SparkSession.getActiveSession()
    missing = [row.path for row in unread.collect()] if unread is not None else []
    reasons = [(path, _unread_reason(spark, listing, path)) for path in missing] + sorted(listing.problems.items())
    errors = spark.createDataFrame([], "path string, error string")
    if featurized is not None:
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
