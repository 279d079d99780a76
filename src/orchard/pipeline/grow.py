"""Runs that grow: what changed since the last commit, chunked featurizing, the live view.

All bookkeeping is Spark DataFrames (joins of the listed files against the committed index),
never per-file Python lists on the driver: a chunk's paths (at most `chunk_images`) are the
largest list the driver holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

from orchard.errors import OrchardError
from orchard.names import PCA_MODEL_DIR
from orchard.pipeline.commit import Commit, CommitLog
from orchard.pipeline.load import Listing, arrow_frame
from orchard.storage.fs import Storage, join

log = logging.getLogger(__name__)

INDEX_SCHEMA = "path string, size long, mtime_ms long"
SECONDS_PER_CHUNK = 180  # a chunk is about this much featurizing work
# MobileNetV2 on a CPU core with decoding: ~140 images/s of 100x100 JPEGs here, ~10-20 of phone
# photos; 50 makes a chunk 1-2 minutes of small images, 8-15 of phone photos
IMAGES_PER_CORE_SECOND = 50
# shuffle partitions of the bookkeeping joins (path, size, mtime rows: ~100 bytes each) per
# core; Spark's default of 200 made a 7,000-file update launch 200-task stages (adaptive
# execution, which would coalesce them, is off in orchard's sessions)
BOOKKEEPING_PARTITIONS_PER_CORE = 2


def default_chunk_images(cores: int) -> int:
    """Images per committed chunk: about SECONDS_PER_CHUNK of work on `cores` cores."""
    return max(100, cores * IMAGES_PER_CORE_SECOND * SECONDS_PER_CHUNK)


def bookkeeping_partitions(cores: int) -> int:
    """Shuffle partitions for the joins of listed and committed files on `cores` cores."""
    return max(2, cores * BOOKKEEPING_PARTITIONS_PER_CORE)


@dataclass
class Changes:
    """What changed between the committed index and the input now (file counts)."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    def to_dict(self) -> Dict[str, int]:
        return {"new": self.new, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged}


def listed_files(spark, listing: Listing):
    """DataFrame(path string, size long, mtime_ms long) of the listing's readable images (paths
    relative to the root; size in bytes, modification time in ms since the epoch), as listed.

    Sent to Spark in bounded slices (load.arrow_frame).
    """
    return arrow_frame(spark, listing.readable_table, INDEX_SCHEMA)


def read_parquet(spark, log_: CommitLog, names: List[str], schema: str):
    """The rows of the committed Parquet files `names` (relative), or an empty frame of `schema`."""
    if not names:
        return spark.createDataFrame([], schema)
    return spark.read.parquet(*[log_.child(name) for name in names])


def compare(listed, known) -> Changes:
    """Counts of new / changed / removed / unchanged files: `listed` against `known` (both
    DataFrame(path, size, mtime_ms)), in one Spark job."""
    from pyspark.sql import functions as F

    joined = listed.alias("a").join(known.alias("b"), "path", "full_outer")
    status = (F.when(F.col("b.size").isNull(), "new").when(F.col("a.size").isNull(), "removed")
              .when((F.col("a.size") == F.col("b.size")) & (F.col("a.mtime_ms") == F.col("b.mtime_ms")), "unchanged")
              .otherwise("changed"))
    counts = {row["status"]: int(row["n"]) for row in
              joined.select(status.alias("status")).groupBy("status").agg(F.count("*").alias("n")).collect()}
    return Changes(**{key: counts.get(key, 0) for key in ("new", "changed", "removed", "unchanged")})


def to_do(listed, known):
    """Rows of `listed` not in `known` with the same size and mtime: new or changed files."""
    return listed.join(known, ["path", "size", "mtime_ms"], "left_anti")


def first_run_chunks(listing: Listing, chunk_images: int) -> Iterator[List[str]]:
    """The readable images' paths of a first run, `chunk_images` at a time, from the listing's
    Arrow table (no Spark job)."""
    table = listing.readable_table
    for start in range(0, table.num_rows, chunk_images):
        yield table.column("path").slice(start, chunk_images).to_pylist()


def chunks(todo, n_todo: int, chunk_images: int) -> Iterator[List[str]]:
    """The paths of `todo` (`n_todo` rows), sorted, `chunk_images` at a time (streamed from Spark).

    Range-partitioned into about one partition per chunk: toLocalIterator runs a job per
    partition (an orderBy's 200 partitions were 200 jobs, 12 s for a 648-image update).
    """
    parts = max(1, -(-n_todo // chunk_images))
    chunk: List[str] = []
    ordered = todo.select("path").repartitionByRange(parts, "path").sortWithinPartitions("path")
    for row in ordered.toLocalIterator():
        chunk.append(row["path"])
        if len(chunk) >= chunk_images:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_parts(frame, storage: Storage, log_: CommitLog, folder: str, options: Optional[Dict[str, str]] = None,
                mode: str = "append") -> List[str]:
    """Write `frame` as new Parquet files in `folder` (relative); their relative names.

    Spark names each file with its job's UUID: the files of earlier commits are never touched.
    """
    before = {info.name for info in storage.list(log_.child(folder))}
    frame.write.mode(mode).options(**(options or {})).parquet(log_.child(folder))
    return sorted(f"{folder}/{info.name}" for info in storage.list(log_.child(folder))
                  if info.name not in before and info.name.endswith(".parquet") and "/" not in info.name)


def files_holding(frame_with_file, paths_frame) -> List[str]:
    """Names of the files (column `_file`) holding a row whose path is in `paths_frame`."""
    hits = frame_with_file.join(paths_frame, "path", "left_semi").select("_file").distinct().collect()
    return sorted(row["_file"] for row in hits)


def pca_model_name(storage: Storage, log_: CommitLog, run_id: str) -> str:
    """Folder for a new PCA model: pca_model/ when free, else pca_model-<run id>/."""
    return PCA_MODEL_DIR if not storage.exists(log_.child(PCA_MODEL_DIR)) else f"{PCA_MODEL_DIR}-{run_id}"


def load_pca_model(spark, uri: str, feature_dim: int, model_name: str):
    """A VariancePCAModel from `uri`: an orchard output (its committed PCA model) or a saved
    Spark PCAModel folder. Raises OrchardError when it is missing, or was fitted on features
    of another length or of another backbone than `model_name`."""
    from pyspark.ml.feature import PCAModel

    from orchard.pipeline.reduce import VariancePCAModel, pc_shape

    storage = Storage(spark=spark)
    root = storage.qualify(uri)
    other = CommitLog(storage, root).latest()
    folder, backbone = root, None
    if other is not None:
        if not other.pca_model:
            raise OrchardError(f"--pca-model {uri}: that output has no committed PCA model")
        folder, backbone = join(root, other.pca_model), other.model.get("name")
    if not storage.exists(join(folder, "metadata")):
        raise OrchardError(f"--pca-model {uri}: no PCA model there (an orchard output or a saved PCAModel folder)")
    if backbone and backbone != model_name:
        raise OrchardError(f"--pca-model {uri}: fitted on {backbone} features; this run uses {model_name}: "
                           f"use --model {backbone}, or fit a new PCA")
    model = PCAModel.load(folder)
    dimension, k = pc_shape(model)
    if dimension != feature_dim:
        raise OrchardError(f"--pca-model {uri}: fitted on features of length {dimension}; "
                           f"{model_name} gives {feature_dim}: use the same backbone, or fit a new PCA")
    return VariancePCAModel(model, k, [float(x) for x in model.explainedVariance.toArray()],
                            {"model": backbone or model_name, "dim": feature_dim})


def base_commit(previous: Optional[Commit], growing: bool) -> Optional[Commit]:
    """The committed run an update builds on (None: a full run)."""
    return previous if growing and previous is not None and previous.complete else None


def check_same_model(base: Optional[Commit], model: Dict[str, object]) -> None:
    """Raise OrchardError when an update would mix features of two models: `model` (name,
    sha256, input (preprocessing), output (feature tensor), precision, int8 file sha256)
    differs from the base run's (keys missing on either side are not compared)."""
    if base is None:
        return
    different = [key for key in ("sha256", "input", "output", "precision", "int8_sha256")
                 if key in base.model and key in model and base.model[key] != model[key]]
    if different:
        was = ", ".join(f"{key} {base.model[key]}" for key in different)
        now = ", ".join(f"{key} {model[key]}" for key in different)
        raise OrchardError(f"the output was featurized with {base.model.get('name')} ({was}); this run uses "
                           f"{model.get('name')} ({now}): an update must use the same model and "
                           f"preprocessing (or pass --overwrite)")
