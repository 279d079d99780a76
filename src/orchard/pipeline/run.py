"""The whole chain: list -> read -> preprocess + featurize -> PCA -> Parquet + run.json."""
from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import platform
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
from orchard.pipeline.commit import INDEX_DIR, STAGED_DIR, Commit, CommitLog, kill_point, new_run_id
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig, arrow_batch_rows
from orchard.pipeline.grow import (
    INDEX_SCHEMA,
    Changes,
    base_commit,
    bookkeeping_partitions,
    check_same_model,
    chunks,
    compare,
    default_chunk_images,
    files_holding,
    first_run_chunks,
    listed_files,
    load_pca_model,
    pca_model_name,
    read_parquet,
    to_do,
    write_parts,
)
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
    parquet_options,
    scree_plot_png,
)
from orchard.spark.eventlog import event_log_conf, event_log_of
from orchard.spark.gateway import java_error_messages
from orchard.spark.progress import featurize_progress
from orchard.spark.session import create_session, executor_task_counts, stop_session

if TYPE_CHECKING:  # imported when a run needs them (pyspark.ml, pandas: ~1 s), while the input is listed
    from orchard.pipeline.reduce import VariancePCAModel

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ("path", "label", "split", "features", "pca", "model", "width", "height", "decode_ms", "infer_ms")
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
    commits = CommitLog(output.storage, output.uri)
    previous = commits.latest()
    output.prepare(config.overwrite or growing)
    if previous is not None:  # a killed run's leftovers (files no commit names)
        commits.remove_strays(previous)
    run_id = new_run_id()
    base = base_commit(previous, growing)
    check_same_model(base, model_info)
    staged = list(previous.staged) if growing and previous is not None else []
    resumed = len(staged)
    with timer.stage(names.STAGE_LIST):
        listing = list_input(spark, config.input)
        listed = listed_files(spark, listing).persist()
        first = not base and not staged  # a first run: everything readable is to do, no Spark job needed
        known = todo = None
        if first:
            changes, n_todo = Changes(new=listing.n_readable), listing.n_readable
        else:
            base_index = read_parquet(spark, commits, base.files["index"] if base else [], INDEX_SCHEMA)
            known = base_index
            if staged:  # a killed run's chunks: their files are done, unless changed since
                staged_index = read_parquet(spark, commits, staged, None).select("path", "size", "mtime_ms")
                known = base_index.join(staged_index.select("path"), "path", "left_anti").unionByName(staged_index)
            changes = compare(listed, base_index) if base else Changes(new=listing.n_readable)
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
    single = first and n_todo <= chunk_images  # a first run in one go: no staging
    warming = _in_background(_load_projection_classes, spark)  # while the images are featurized
    with timer.stage(names.STAGE_FEATURIZE), featurize_progress(spark.sparkContext, n_todo):
        log.info("featurizing %d of %d images in %d partitions on %d cores (%s)", n_todo, listing.n_images,
                 partitions, cores, "one chunk" if single else f"chunks of {chunk_images}")
        if single:
            featurized = _featurized(spark, featurizer, listing, partitions)
            featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK)
        else:
            paths = first_run_chunks(listing, chunk_images) if first else chunks(todo, n_todo, chunk_images)
            previous = _featurize_in_chunks(spark, featurizer, listing, listed, paths, commits, previous, run_id,
                                            staged, partitions)
            featurized = _staged_rows(spark, commits, staged, listed)
        stats = _featurize_stats(featurized)
        kill_point("featurize")

    with timer.stage(names.STAGE_RECONCILE):
        wanted = listed if first else listed.join(known, ["path", "size", "mtime_ms"], "left_anti")
        unread = unread_paths(wanted, featurized, int(stats["rows"]), n_todo if single else None)
        errors = error_rows(featurized, listing, unread)
    ok = featurized.where(F.col("error").isNull()).drop("error") if featurized is not None else None
    n_featurized = int(stats["featurized"])
    kept = _kept_rows(spark, commits, base, listed) if base else None
    warming.exception()  # waits (done long ago); a failed warm-up only means the projection loads them itself
    with timer.stage(names.STAGE_PCA_FIT):
        pca, pca_name, refit = _pca_for(spark, config, commits, output, base, ok, n_featurized, kept, spec,
                                        model_sha, run_id)
    total_ok = n_featurized + (kept["count"] if kept else 0)
    with timer.stage(names.STAGE_WRITE_FEATURES):
        feature_files, table = _features_table(spec, pca, ok, kept, refit)
        # the scree plot (~1 s of matplotlib, holding the GIL) is drawn while Spark writes; only
        # once the plan above is built, whose many py4j calls would each wait for the GIL
        scree = _in_background(scree_plot_png, pca.explainedVariance, pca.k, config.pca_variance,
                               f"PCA of {spec.name} features ({total_ok} images)") if pca and refit else None
        # the errors and the index, and the PCA model (small jobs, mostly driver work), written
        # by two more threads while the features are: their tasks take a core as one frees
        small = [_in_background(_write_errors_and_index, timer, spark, output, commits,
                                kept["errors"].unionByName(errors) if kept else errors,
                                listed.join(unread, "path", "left_anti") if unread is not None else listed),
                 _in_background(_write_pca_model, timer, pca.pcaModel if pca and refit else None,
                                output.child(pca_name) if pca and refit else "")]
        try:
            if table is not None:  # one wave of tasks, one file per core: fewer, larger files, faster than two
                feature_files += write_parts(table.coalesce(cores), output.storage, commits, FEATURES_DIR,
                                             parquet_options(table))
        except BaseException:
            for writing in small:
                writing.exception()  # let the small writes end before the error goes up
            raise
    (error_files, n_errors, index_files), _ = [writing.result() for writing in small]
    if featurized is not None:
        featurized.unpersist()
    kill_point("write")

    counts = RunCounts(found=listing.found, images=listing.n_images, featurized=total_ok,
                       errors=int(n_errors), ignored=listing.ignored_count)
    if counts.featurized + counts.errors + counts.ignored != counts.found:
        raise OrchardError(f"internal: counts do not reconcile: {counts}")
    history = list(base.history) if base else []
    history.append({
        "run_id": run_id, "started_at": started_at.isoformat(timespec="seconds"),
        "mode": "update" if base else ("overwrite" if previous is not None and config.overwrite else "full"),
        **changes.to_dict(), "featurized_now": n_todo, "resumed_chunks": resumed,
        "model_sha256": model_sha, "pca_model": pca_name, "pca_refit": bool(refit),
    })
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
    )
    extra = [RUN_RECORD] + ([SCREE_PLOT] if pca and (refit or output.storage.exists(output.child(SCREE_PLOT)))
                            else [])
    commit = Commit(run_id=run_id, complete=True,
                    files={FEATURES_DIR: feature_files, ERRORS_DIR: error_files, "index": index_files},
                    pca_model=pca_name, model=model_info, history=history, extra_files=extra)
    plot = scree.result() if scree is not None else None
    kill_point("commit")
    commits.write(commit, previous)
    output.write_json(RUN_RECORD, record.to_dict())  # run.json and the plot: written after the commit
    if plot is not None:
        output.write_bytes(SCREE_PLOT, plot)
    commits.remove_strays(commit)  # the replaced run's files, once the new one is committed
    listed.unpersist()
    if todo is not None:
        todo.unpersist()
    log.info("featurized %d images (%d now), %d errors, %d ignored -> %s",
             total_ok, n_featurized, counts.errors, counts.ignored, output.uri)
    return record


def _featurize_in_chunks(spark, featurizer, listing, listed, path_chunks: Iterator[List[str]], commits: CommitLog,
                         previous: Optional[Commit], run_id: str, staged: List[str], partitions: int) -> Optional[Commit]:
    """Featurize each chunk of paths; each chunk is written under _orchard/staged/ (its rows
    with the listed size and mtime_ms) and named by a new in-progress commit, so that a killed
    run loses at most the chunk in flight. Appends to `staged`; returns the last commit."""
    from pyspark.sql import functions as F

    for paths in path_chunks:
        rows = _featurized(spark, featurizer, listing, partitions, paths)
        # the size and mtime as listed (what the next run compares); broadcast: the features are not shuffled
        rows = rows.join(F.broadcast(listed), "path")
        folder = f"{STAGED_DIR}/{run_id}-{len(staged):05d}"
        rows.write.parquet(commits.child(folder))
        staged.append(folder)
        previous = commits.write(_in_progress(previous, run_id, staged), previous)
        kill_point("featurize")
    return previous


def _featurized(spark, featurizer, listing, partitions: int, paths: Optional[List[str]] = None):
    """The featurizer's rows for the listing's readable images (or `paths`): read by the Python
    workers from their local paths, or by Spark (see load.images_to_featurize)."""
    images, column = images_to_featurize(spark, listing, partitions, paths)
    return featurizer.copy({featurizer.inputCol: column}).transform(images).drop(LOCATION_COLUMN)


def _staged_rows(spark, commits: CommitLog, staged: List[str], listed):
    """The staged chunks' rows still true of the files (same size and mtime as listed now), or None."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if not staged:
        return None
    rows = read_parquet(spark, commits, staged, None).join(F.broadcast(listed), ["path", "size", "mtime_ms"], "left_semi")
    return rows.drop("size", "mtime_ms").persist(StorageLevel.MEMORY_AND_DISK)


def _features_table(spec, pca: Optional[VariancePCAModel], ok, kept, refit: bool):
    """(the kept features/ files left as they are, the rows to write or None): the new rows
    (and the kept rows that must be rewritten: all of them after a PCA refit, else those
    sharing a file with a removed or changed image) projected with `pca`, in FEATURE_COLUMNS."""
    from pyspark.sql import functions as F

    feature_files = list(kept["features"]) if kept and not refit else []
    parts = [ok.select(*[c for c in FEATURE_COLUMNS if c not in ("pca", "model")])] if ok is not None else []
    if kept and (refit or kept["rewrite"]):
        parts.append(kept["rows"] if refit else kept["rewrite_rows"])
    if not parts:
        return feature_files, None
    table = parts[0]
    for part in parts[1:]:
        table = table.unionByName(part)
    table = pca.transform(table) if pca else table.withColumn("pca", F.lit(None).cast("array<float>"))
    table = same_schema_as_before(table, pca is not None)
    return feature_files, table.withColumn("model", F.lit(spec.name)).select(*FEATURE_COLUMNS)


def _in_progress(previous: Optional[Commit], run_id: str, staged: List[str]) -> Commit:
    """A commit that keeps the previous live view and records the staged chunks of `run_id`."""
    base = previous or Commit()
    return Commit(run_id=base.run_id, complete=base.complete, files=base.files, pca_model=base.pca_model,
                  model=base.model, staged_run=run_id, staged=list(staged), history=base.history,
                  extra_files=base.extra_files)


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


def _kept_rows(spark, commits: CommitLog, base: Commit, listed) -> Dict[str, Any]:
    """The base run's rows still true of the input (same path, size and mtime): its feature
    files to keep as they are, the rows to rewrite from files that also hold a removed or
    changed path, its error rows (decode failures; the listing's problems are recomputed) and counts."""
    from pyspark.sql import functions as F

    index = read_parquet(spark, commits, base.files["index"], INDEX_SCHEMA)
    same = index.join(listed, ["path", "size", "mtime_ms"], "left_semi").select("path")
    gone = index.select("path").join(same, "path", "left_anti")
    features = read_parquet(spark, commits, base.files[FEATURES_DIR], None)
    names = {commits.child(name): name for name in base.files[FEATURES_DIR]}
    with_file = features.withColumn("_file", F.input_file_name())
    touched = {_relative_name(uri, names) for uri in files_holding(with_file, gone)}
    untouched = [name for name in base.files[FEATURES_DIR] if name not in touched]
    rows = features.join(F.broadcast(same), "path", "left_semi").drop("pca", "model")
    rewrite_rows = read_parquet(spark, commits, sorted(touched), None).join(F.broadcast(same), "path", "left_semi") \
        .drop("pca", "model") if touched else None
    errors = read_parquet(spark, commits, base.files[ERRORS_DIR], "path string, label string, split string, error string")
    return {"features": untouched, "rewrite": bool(touched), "rewrite_rows": rewrite_rows, "rows": rows,
            "errors": errors.join(same, "path", "left_semi"), "count": rows.count()}


def _relative_name(uri: str, names: Dict[str, str]) -> str:
    from urllib.parse import unquote, urlparse

    if uri in names:
        return names[uri]
    path = unquote(urlparse(uri).path)
    for full, name in names.items():
        if unquote(urlparse(full).path) == path:
            return name
    raise OrchardError(f"internal: {uri} is not a committed file")


def _pca_for(spark, config: RunConfig, commits: CommitLog, output, base: Optional[Commit], ok, n_new: int, kept,
             spec, sha256: str, run_id: str):
    """(model or None, its folder name, fitted now?): --pca-model, the base run's model, or a
    new fit (first run, --refit-pca, or a base without a model) on every kept and new row."""
    from orchard.pipeline.featurize import features_metadata
    from orchard.pipeline.reduce import VariancePCA

    if config.pca_model:  # projects every row; saved in this output too (self-contained)
        model = load_pca_model(spark, config.pca_model, spec.feature_dim, spec.name)
        return model, pca_model_name(output.storage, commits, run_id), True
    if base and base.pca_model and not config.refit_pca:
        model = load_pca_model(spark, output.uri, spec.feature_dim, spec.name)
        return model, base.pca_model, False
    parts = ([ok.select("features")] if ok is not None else []) + ([kept["rows"].select("features")] if kept else [])
    rows = parts[0].unionByName(parts[1]) if len(parts) == 2 else (parts[0] if parts else None)
    n = n_new + (kept["count"] if kept else 0)
    if n < 2:
        log.warning("PCA skipped: it needs at least 2 featurized images, got %d", n)
        return None, None, True
    if kept:  # rows read back from Parquet carry no model metadata: tag them like the featurizer's
        rows = rows.withColumn("features", rows["features"].alias("features", metadata=features_metadata(spec, sha256)))
    model = VariancePCA(variance=config.pca_variance, k=config.pca_k).fit(rows)
    return model, pca_model_name(output.storage, commits, run_id), True


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


def _write_errors_and_index(timer: StageTimer, spark, output: Output, commits: CommitLog, errors,
                            index) -> Tuple[List[str], int, List[str]]:
    """Write the error rows and the index (stage write_errors): (error files, error rows
    written, index files). The error rows are counted as read back from their files, for the
    run's reconciliation."""
    with timer.stage(names.STAGE_WRITE_ERRORS):
        error_files = write_parts(errors.coalesce(1), output.storage, commits, ERRORS_DIR)
        n_errors = read_parquet(spark, commits, error_files, "path string").count() if error_files else 0
        index_files = write_parts(index.coalesce(1), output.storage, commits, INDEX_DIR)
    return error_files, int(n_errors), index_files


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
