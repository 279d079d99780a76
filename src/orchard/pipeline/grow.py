"""Runs that grow: what changed since the last commit, chunked featurizing, the PCA model kept.

All bookkeeping is Spark DataFrames (joins of the listed files against the committed index:
the path, size and mtime_ms of the tables' rows),
never per-file Python lists on the driver: a chunk's paths (at most `chunk_images`) are the
largest list the driver holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

from orchard.errors import OrchardError
from orchard.names import PCA_MODEL_DIR
from orchard.pipeline.load import Listing, arrow_frame
from orchard.storage.fs import join
from orchard.table.delta import OutputTables, TableState

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


def pca_model_name(tables: OutputTables, run_id: str) -> str:
    """Folder for a new PCA model: pca_model/ when free, else pca_model-<run id>/ (each fit
    kept: the table's older versions name theirs)."""
    free = not tables.storage.exists(tables.table_uri(PCA_MODEL_DIR))
    return PCA_MODEL_DIR if free else f"{PCA_MODEL_DIR}-{run_id}"


def load_pca_model(spark, uri: str, feature_dim: int, model_name: str, version: Optional[int] = None):
    """A VariancePCAModel from `uri`: an orchard output (the PCA model its features table names,
    at `version`, default the newest) or a saved Spark PCAModel folder. Raises OrchardError when it is missing, or was fitted on features
    of another length or of another backbone than `model_name`."""
    from pyspark.ml.feature import PCAModel

    from orchard.pipeline.reduce import VariancePCAModel, pc_shape

    tables = OutputTables(spark, uri)
    other = tables.state(version=version)
    folder, backbone = tables.uri, None
    if other is not None:
        if not other.pca_model:
            raise OrchardError(f"--pca-model {uri}: that output has no committed PCA model")
        folder, backbone = join(tables.uri, other.pca_model), other.model.get("name")
    storage = tables.storage
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


def check_same_model(base: Optional[TableState], model: Dict[str, object]) -> None:
    """Raise OrchardError when an update would mix features of two models: `model` (name,
    sha256, input (preprocessing), output (feature tensor), precision, int8 file sha256)
    differs from the base run's (keys missing on either side are not compared)."""
    if base is None:
        return
    committed = base.model
    different = [key for key in ("sha256", "input", "output", "precision", "int8_sha256")
                 if key in committed and key in model and committed[key] != model[key]]
    if different:
        was = ", ".join(f"{key} {committed[key]}" for key in different)
        now = ", ".join(f"{key} {model[key]}" for key in different)
        raise OrchardError(f"the output was featurized with {committed.get('name')} ({was}); this run uses "
                           f"{model.get('name')} ({now}): an update must use the same model and "
                           f"preprocessing (or pass --overwrite)")
