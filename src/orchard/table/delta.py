"""An output's Delta Lake tables, written and read through Spark.

    <output>/features/           Delta table: one row per featurized image (+ its size, mtime_ms)
    <output>/errors/             Delta table: one row per image that could not be featurized
    <output>/_orchard/staged/    Delta table: featurized chunks of a run not finished yet
    <output>/_orchard/forgotten/ Delta table: images removed by `orchard forget`

Every write is one Delta commit (Delta's transaction log, `_delta_log/`): a reader (Spark,
delta-rs, DuckDB, Athena) sees a table's previous version until the commit, then the new one,
never half of a write; a killed run leaves the committed versions as they were. Each orchard
commit carries its run's metadata as the commit's `userMetadata` (JSON: `ORCHARD_KEY` -> run
id, operation, model, PCA model folder), so every version names the PCA model its `pca`
column was projected with (`orchard history`).

The features table is the output's commit point. The errors table is committed by the same
run just before it; the input index is the `path, size, mtime_ms` of both tables' rows.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.names import FEATURES_DIR
from orchard.pipeline.sessions import bind, child_session
from orchard.spark.delta import USER_METADATA_CONF, has_delta
from orchard.storage.fs import Storage, error_reason, join

log = logging.getLogger(__name__)

STAGED_TABLE = "_orchard/staged"
FORGOTTEN_TABLE = "_orchard/forgotten"
LEGACY_COMMITS = "_orchard/commits"  # outputs of orchard before Delta tables (orchard convert)
ORCHARD_KEY = "orchard"  # the key of orchard's metadata in a commit's userMetadata
INDEX_COLUMNS = ("path", "size", "mtime_ms")
ERRORS_SCHEMA = "path string, label string, split string, error string, size long, mtime_ms long"
FORGOTTEN_SCHEMA = "path string, size long, mtime_ms long, forgotten_at timestamp"


def commit_metadata(metadata: Dict[str, Any]) -> str:
    """The userMetadata text of an orchard commit: {"orchard": metadata} as compact JSON."""
    return json.dumps({ORCHARD_KEY: metadata}, separators=(",", ":"), default=str, sort_keys=True)


def orchard_metadata(user_metadata: Optional[str]) -> Optional[Dict[str, Any]]:
    """orchard's metadata from a commit's userMetadata, or None (another writer's commit)."""
    if not user_metadata:
        return None
    try:
        value = json.loads(user_metadata)
    except ValueError:
        return None
    return value.get(ORCHARD_KEY) if isinstance(value, dict) and isinstance(value.get(ORCHARD_KEY), dict) else None


@dataclass
class TableState:
    """A table's newest version and orchard's metadata of the newest orchard commit at or below it."""

    version: int
    metadata: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)  # every commit, oldest first

    @property
    def model(self) -> Dict[str, Any]:
        return dict(self.metadata.get("model") or {})

    @property
    def pca_model(self) -> Optional[str]:
        return self.metadata.get("pca_model")


def quoted(uri: str) -> str:
    """`uri` as a Spark SQL path identifier: delta.`uri` (backticks doubled)."""
    return "delta.`" + uri.replace("`", "``") + "`"


def read_table(spark, table_uri: str, version: Optional[int] = None):
    """The rows of the Delta table at `table_uri` (at `version`, default the newest) as a Spark
    DataFrame. Raises OrchardError when there is no Delta table there."""
    from pyspark.errors import AnalysisException

    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", int(version))
    try:
        return reader.load(table_uri)
    except AnalysisException as error:
        raise OrchardError(f"{table_uri}: not a readable Delta table ({error_reason(error)})") from None


class OutputTables:
    """The Delta tables of the output `uri`, through the SparkSession `spark` (which must have
    Delta: orchard's sessions do, orchard.spark.delta)."""

    def __init__(self, spark, uri: str, storage: Optional[Storage] = None):
        if not has_delta(spark):
            raise OrchardError("this SparkSession has no Delta Lake: start it with orchard.start_spark, or add "
                               "io.delta:delta-spark to spark.jars.packages and its SQL extension "
                               "(io.delta.sql.DeltaSparkSessionExtension)")
        self.spark = spark
        self.storage = storage or Storage(spark=spark)
        self.uri = self.storage.qualify(uri).rstrip("/")

    def table_uri(self, name: str) -> str:
        return join(self.uri, name)

    def is_table(self, name: str) -> bool:
        return self.storage.exists(join(self.table_uri(name), "_delta_log"))

    def check_format(self) -> None:
        """Raise OrchardError when the output is one of orchard's pre-Delta outputs."""
        if self.storage.exists(self.table_uri(LEGACY_COMMITS)) and not self.is_table(FEATURES_DIR):
            raise OrchardError(f"{self.uri} is an output of an earlier orchard (Parquet folders and "
                               f"{LEGACY_COMMITS}/): convert it once with `orchard convert {self.uri} NEW_OUTPUT`")

    def state(self, name: str = FEATURES_DIR, version: Optional[int] = None) -> Optional[TableState]:
        """The table's newest version (or `version`) and orchard's metadata; None when no table."""
        if not self.is_table(name):
            return None
        rows = self.spark.sql(f"DESCRIBE HISTORY {quoted(self.table_uri(name))}") \
            .select("version", "timestamp", "operation", "operationMetrics", "userMetadata").collect()
        history = [{"version": int(r["version"]), "timestamp": r["timestamp"], "operation": r["operation"],
                    "metrics": dict(r["operationMetrics"] or {}), "orchard": orchard_metadata(r["userMetadata"])}
                   for r in sorted(rows, key=lambda r: r["version"])]
        if version is not None:
            if not any(entry["version"] == version for entry in history):
                raise OrchardError(f"{self.table_uri(name)} has no version {version} "
                                   f"(versions {history[0]['version']}-{history[-1]['version']})")
            history = [entry for entry in history if entry["version"] <= version]
        metadata = next((entry["orchard"] for entry in reversed(history) if entry["orchard"]), {})
        return TableState(version=history[-1]["version"], metadata=metadata, history=history)

    def state_version(self, name: str) -> int:
        """The newest version of table `name` (one read of its log)."""
        row = self.spark.sql(f"DESCRIBE HISTORY {quoted(self.table_uri(name))} LIMIT 1").select("version").first()
        return int(row["version"])

    def read(self, name: str, version: Optional[int] = None, schema: Optional[str] = None):
        """The rows of table `name` (at `version`, default newest); an empty frame of `schema`
        when there is no such table (None: raise OrchardError)."""
        if not self.is_table(name):
            if schema is None:
                raise OrchardError(f"{self.table_uri(name)}: no Delta table there")
            return self.spark.createDataFrame([], schema)
        return read_table(self.spark, self.table_uri(name), version)

    def overwrite(self, name: str, frame, metadata: Dict[str, Any]) -> None:
        """Replace table `name` with `frame` in one commit (created when absent; the old rows stay
        readable as the previous version until a vacuum)."""
        frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true") \
            .option("userMetadata", commit_metadata(metadata)).save(self.table_uri(name))

    def append(self, name: str, frame, metadata: Dict[str, Any]) -> None:
        """Add `frame`'s rows to table `name` in one commit (created when absent)."""
        frame.write.format("delta").mode("append").option("userMetadata", commit_metadata(metadata)) \
            .save(self.table_uri(name))

    def merge(self, name: str, upserts, deletes, metadata: Dict[str, Any]) -> None:
        """One commit on table `name`, keyed by `path`: rows of `upserts` replace the rows of
        their path or are added; the paths of `deletes` (DataFrame(path), None: none) are
        removed. Rows of other paths are left as they are, in their files."""
        from pyspark.sql import functions as F

        columns = upserts.columns
        source = upserts.withColumn("_delete", F.lit(False))
        if deletes is not None:
            empty = [F.lit(None).cast(field.dataType).alias(field.name)
                     for field in upserts.schema.fields if field.name != "path"]
            source = source.unionByName(deletes.select("path", *empty).withColumn("_delete", F.lit(True)))
        session = child_session(self.spark, {USER_METADATA_CONF: commit_metadata(metadata)})
        view = "orchard_merge_source"
        bind(source, session).createOrReplaceTempView(view)
        assignments = ", ".join(f"t.`{c}` = s.`{c}`" for c in columns)
        names = ", ".join(f"`{c}`" for c in columns)
        values = ", ".join(f"s.`{c}`" for c in columns)
        session.sql(f"MERGE INTO {quoted(self.table_uri(name))} AS t USING {view} AS s ON t.path = s.path "
                    f"WHEN MATCHED AND s._delete THEN DELETE "
                    f"WHEN MATCHED THEN UPDATE SET {assignments} "
                    f"WHEN NOT MATCHED AND NOT s._delete THEN INSERT ({names}) VALUES ({values})")
        session.catalog.dropTempView(view)

    def delete_paths(self, name: str, paths, metadata: Dict[str, Any]) -> int:
        """Remove the rows of table `name` whose path is in `paths` (DataFrame(path)), in one
        commit; how many rows were removed (0: no commit)."""
        if not self.is_table(name):
            return 0
        target = self.read(name)
        hits = target.join(paths.select("path").distinct(), "path", "left_semi").count()
        if hits == 0:
            return 0
        session = child_session(self.spark, {USER_METADATA_CONF: commit_metadata(metadata)})
        view = "orchard_forget_paths"
        bind(paths.select("path").distinct(), session).createOrReplaceTempView(view)
        session.sql(f"MERGE INTO {quoted(self.table_uri(name))} AS t USING {view} AS s ON t.path = s.path "
                    f"WHEN MATCHED THEN DELETE")
        session.catalog.dropTempView(view)
        return int(hits)

    def vacuum(self, name: str, retain_hours: float) -> None:
        """Delete the data files of table `name` no version newer than `retain_hours` needs
        (Delta's VACUUM; below Delta's retention, 168 h, Delta itself refuses)."""
        if self.is_table(name):
            self.spark.sql(f"VACUUM {quoted(self.table_uri(name))} RETAIN {float(retain_hours)} HOURS").collect()

    def remove(self, name: str) -> None:
        """Delete table `name`'s folder (orchard's own staging tables only)."""
        if self.storage.exists(self.table_uri(name)):
            self.storage.delete(self.table_uri(name))
