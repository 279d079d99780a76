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
from orchard.pipeline.load import (
    IMAGE_GLOB,
    OPEN_COST_KEY,
    SCAN_OPEN_COST_BYTES,
    _binary_files,
    with_label_and_split,
)
from orchard.pipeline.sessions import bind, child_session
from orchard.storage.fs import Storage, join

log = logging.getLogger(__name__)

INDEX_SCHEMA = "path string, size long, mtime_ms long"
SECONDS_PER_CHUNK = 180  # a chunk is about this much featurizing work
IMAGES_PER_CORE_SECOND = 10  # MobileNetV2 on a CPU core, 100x100 images, with decoding (conservative)


def default_chunk_images(cores: int) -> int:
    """Images per committed chunk: about SECONDS_PER_CHUNK of work on `cores` cores."""
    return max(100, cores * IMAGES_PER_CORE_SECOND * SECONDS_PER_CHUNK)


@dataclass
class Changes:
    """What changed between the committed index and the input now (file counts)."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    def to_dict(self) -> Dict[str, int]:
        return {"new": self.new, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged}


def listed_files(spark, root_uri: str):
    """DataFrame(path string, size long, mtime_ms long) of the non-empty images below
    `root_uri` (paths relative to it), from Spark's binaryFile scan without reading content."""
    from pyspark.sql import functions as F

    prefix_length = len(root_uri.rstrip("/")) + 1
    raw = _binary_files(spark, root_uri, IMAGE_GLOB)
    return raw.select(
        F.expr(f"substring(path, {prefix_length + 1})").alias("path"),
        F.col("length").alias("size"),
        (F.col("modificationTime").cast("double") * 1000).cast("long").alias("mtime_ms"),
    )


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


def chunks(todo, chunk_images: int) -> Iterator[List[str]]:
    """The paths of `todo`, sorted, `chunk_images` at a time (streamed from Spark)."""
    chunk: List[str] = []
    for row in todo.select("path").orderBy("path").toLocalIterator():
        chunk.append(row["path"])
        if len(chunk) >= chunk_images:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_paths(spark, root_uri: str, paths: List[str], partitions: int):
    """DataFrame(path, label, split, content, size, mtime_ms) of the images `paths` (relative)."""
    from pyspark.sql import functions as F

    root = root_uri.rstrip("/")
    prefix_length = len(root) + 1
    reader = child_session(spark, {OPEN_COST_KEY: str(SCAN_OPEN_COST_BYTES)}).read.format("binaryFile")
    raw = bind(reader.load([f"{root}/{path}" for path in paths]), spark)
    relative = raw.select(
        F.expr(f"substring(path, {prefix_length + 1})").alias("path"), "content",
        F.col("length").alias("size"),
        (F.col("modificationTime").cast("double") * 1000).cast("long").alias("mtime_ms"),
    )
    return with_label_and_split(relative).select(
        "path", "label", "split", "content", "size", "mtime_ms").repartition(partitions)


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

    from orchard.pipeline.reduce import VariancePCAModel

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
    if int(model.pc.numRows) != feature_dim:
        raise OrchardError(f"--pca-model {uri}: fitted on features of length {model.pc.numRows}; "
                           f"{model_name} gives {feature_dim}: use the same backbone, or fit a new PCA")
    k = int(model.pc.numCols)
    return VariancePCAModel(model, k, [float(x) for x in model.explainedVariance.toArray()],
                            {"model": backbone or model_name, "dim": feature_dim})


def base_commit(previous: Optional[Commit], growing: bool) -> Optional[Commit]:
    """The committed run an update builds on (None: a full run)."""
    return previous if growing and previous is not None and previous.complete else None


def check_same_model(base: Optional[Commit], sha256: str, name: str) -> None:
    if base is not None and base.model.get("sha256") not in (None, sha256):
        raise OrchardError(f"the output was featurized with {base.model.get('name')} "
                           f"(sha256 {base.model.get('sha256')}); this run uses {name} ({sha256}): "
                           f"an update must use the same model (or pass --overwrite)")
