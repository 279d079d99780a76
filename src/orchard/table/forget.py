"""Erasure: an output's rows of some images removed in one commit per table, and remembered.

`forget(spark, output, patterns)`:
1. records the matching images (path, size, mtime_ms) in the `_orchard/forgotten` table, so
   that later runs skip the same files (same path, size and mtime) while they still exist;
2. deletes their rows from the errors table, then from the features table (one Delta commit
   each; the features commit carries the output's model and PCA model on, like a run's);
3. with `vacuum_hours`, runs Delta's VACUUM on both tables: the data files that no version
   younger than that needs are deleted, so no file on disk holds the rows any more.

Until the vacuum, the rows stay readable in the versions before the forget (time travel); Delta
refuses a retention under its `delta.deletedFileRetentionDuration` (7 days) unless its safety
check is off (`UNSAFE_RETENTION_ENV`, for tests).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from orchard import __version__
from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR, FEATURES_DIR
from orchard.pipeline.grow import bookkeeping_partitions
from orchard.pipeline.killpoints import kill_point, new_run_id
from orchard.pipeline.load import planned_cores
from orchard.pipeline.sessions import child_session
from orchard.storage.fs import error_reason
from orchard.table.delta import ERRORS_SCHEMA, FORGOTTEN_TABLE, INDEX_COLUMNS, OutputTables

log = logging.getLogger(__name__)

DEFAULT_RETAIN_HOURS = 168.0  # Delta's default delta.deletedFileRetentionDuration: 7 days
UNSAFE_RETENTION_ENV = "ORCHARD_TEST_UNSAFE_RETENTION"  # "1": Delta's retention check off (tests only)
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"


@dataclass
class Forgotten:
    """What one `forget` did: images matched, rows removed per table, the new version, their paths."""

    images: int
    features_rows: int
    errors_rows: int
    features_version: int
    paths: List[str]
    vacuumed: bool = False


def matching(frame, patterns: Sequence[str]):
    """Rows of `frame` (with `path`, relative to the input root) whose path is one of `patterns`
    or lies under one of them taken as a folder prefix (`Training/Kiwi` matches `Training/Kiwi/1.jpg`)."""
    from pyspark.sql import functions as F

    exact = [p.strip("/") for p in patterns if p.strip("/")]
    if not exact:
        raise OrchardError("forget: no paths given (paths relative to the input root, or folder prefixes)")
    condition = F.col("path").isin(exact)
    for prefix in exact:
        condition = condition | F.col("path").startswith(prefix + "/")
    return frame.where(condition)


def forget(spark, output: str, patterns: Sequence[str], vacuum_hours: Optional[float] = None) -> Forgotten:
    """Remove the rows of the images matching `patterns` from the output's tables (see the
    module's docstring). Raises OrchardError when the output has no features table, or when
    nothing matches."""
    from pyspark.sql import functions as F

    if vacuum_hours is not None:
        check_retention(vacuum_hours)
    tables = OutputTables(small_jobs(spark), output)
    tables.check_format()
    state = tables.state()
    if state is None:
        raise OrchardError(f"{output}: no features table (not an orchard output, or no finished run)")
    features = tables.read(FEATURES_DIR).select(*INDEX_COLUMNS)
    errors = tables.read(ERRORS_DIR, schema=ERRORS_SCHEMA).select(*INDEX_COLUMNS)
    hits = matching(features.unionByName(errors), patterns).dropDuplicates(["path"]).persist()
    paths = [row["path"] for row in hits.select("path").orderBy("path").collect()]  # an erasure request's few
    images = len(paths)
    if images == 0:
        hits.unpersist()
        raise OrchardError(f"forget: no image of {output} matches {', '.join(patterns[:5])} "
                           f"(paths are relative to the input root, as in the `path` column)")
    metadata: Dict[str, Any] = {"operation": "forget", "run_id": new_run_id(), "orchard_version": __version__,
                                "model": state.model, "pca_model": state.pca_model, "images": images}
    kill_point("start")
    tables.append(FORGOTTEN_TABLE, hits.withColumn("forgotten_at", F.lit(dt.datetime.now(dt.timezone.utc))),
                  metadata)
    kill_point("write")
    errors_rows = tables.delete_paths(ERRORS_DIR, hits, metadata)
    kill_point("commit")
    features_rows = tables.delete_paths(FEATURES_DIR, hits, metadata)
    hits.unpersist()
    result = Forgotten(images=images, features_rows=features_rows, errors_rows=errors_rows,
                       features_version=tables.state_version(FEATURES_DIR), paths=paths)
    if vacuum_hours is not None:
        vacuum(tables, vacuum_hours)
        result.vacuumed = True
    return result


def small_jobs(spark):
    """A child session of `spark` whose shuffles and file listings have a few partitions per core:
    Delta's VACUUM lists a table's folders with `parallelPartitionDiscovery.parallelism` tasks
    (Spark's default 10,000: 80 s for a table of 3 files on 1 core) and its joins use the
    shuffle partitions (default 200)."""
    partitions = str(bookkeeping_partitions(planned_cores(spark)))
    return child_session(spark, {"spark.sql.shuffle.partitions": partitions,
                                 "spark.sql.sources.parallelPartitionDiscovery.parallelism": partitions})


def check_retention(retain_hours: float) -> None:
    """Raise OrchardError, before anything is changed, for a retention under Delta's default
    (168 h) while Delta's check is on: Delta would refuse the vacuum."""
    if retain_hours < 0:
        raise OrchardError(f"--retain-hours must be >= 0, got {retain_hours:g}")
    if retain_hours < DEFAULT_RETAIN_HOURS and os.environ.get(UNSAFE_RETENTION_ENV) != "1":
        raise OrchardError(f"vacuum refused: {retain_hours:g} h is under Delta's retention of {DEFAULT_RETAIN_HOURS:g} h "
                           f"(delta.deletedFileRetentionDuration; concurrent readers and writers may still need "
                           f"those files); nothing was forgotten")


def vacuum(tables: OutputTables, retain_hours: float) -> None:
    """Delta's VACUUM on the features and errors tables, keeping `retain_hours` of history.
    Raises OrchardError (Delta's own reason) for a retention Delta's check refuses."""
    unsafe = os.environ.get(UNSAFE_RETENTION_ENV) == "1"
    if unsafe:
        log.warning("%s=1: Delta's retention check is off (a test setting)", UNSAFE_RETENTION_ENV)
    tables.spark.conf.set(RETENTION_CHECK_CONF, "false" if unsafe else "true")
    try:
        for name in (FEATURES_DIR, ERRORS_DIR):
            tables.vacuum(name, retain_hours)
    except Exception as error:  # py4j / AnalysisException: Delta's retention check
        raise OrchardError(f"vacuum refused by Delta: {error_reason(error)}") from None
    finally:
        tables.spark.conf.unset(RETENTION_CHECK_CONF)
