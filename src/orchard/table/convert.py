"""`orchard convert OLD NEW`: an output of orchard before Delta tables, written as one with Delta.

The old layout: Parquet files under features/ and errors/, the input index under
_orchard/index/, and numbered commit files `_orchard/commits/<n>.json` naming the live files
(the highest readable number is the output). The conversion reads exactly the files the latest
commit names, and writes NEW with the same rows (plus each image's size and mtime_ms from the
index, so that `--update` on NEW featurizes nothing that did not change), the same PCA model
and run.json. OLD is left as it is.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List

from orchard import __version__
from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR, FEATURES_DIR, RUN_RECORD
from orchard.pipeline.killpoints import new_run_id
from orchard.storage.fs import Storage, join
from orchard.table.delta import LEGACY_COMMITS, OutputTables
from orchard.table.forget import small_jobs

log = logging.getLogger(__name__)

LEGACY_FORMAT = 1
FEATURE_COLUMNS = ("path", "label", "split", "features", "pca", "model", "width", "height", "decode_ms", "infer_ms")


@dataclass
class Converted:
    features: int
    errors: int
    pca_model: str


def latest_commit(storage: Storage, root: str) -> Dict[str, Any]:
    """The newest readable commit file of an old output. Raises OrchardError when there is none."""
    folder = join(root, LEGACY_COMMITS)
    if not storage.exists(folder):
        raise OrchardError(f"{root}: no {LEGACY_COMMITS}/ (not an output of an earlier orchard)")
    numbers = sorted((int(n[:-5]) for n in storage.list_names(folder) if n.endswith(".json") and n[:-5].isdigit()),
                     reverse=True)
    for number in numbers:
        try:
            commit = json.loads(storage.read_bytes(join(folder, f"{number:08d}.json")))
        except ValueError:
            log.warning("%s: commit %d unreadable, taking the one before", root, number)
            continue
        if commit.get("format") != LEGACY_FORMAT or not commit.get("complete"):
            raise OrchardError(f"{root}: commit {number} is not a finished run of format {LEGACY_FORMAT}")
        return commit
    raise OrchardError(f"{root}: no readable commit under {LEGACY_COMMITS}/")


def convert(spark, old: str, new: str) -> Converted:
    """Write NEW (empty or absent) as a Delta output holding OLD's committed rows. Raises
    OrchardError when OLD is not an old output or NEW is not empty."""
    spark = small_jobs(spark)
    storage = Storage(spark=spark)
    old_root, new_root = storage.qualify(old).rstrip("/"), storage.qualify(new).rstrip("/")
    commit = latest_commit(storage, old_root)
    if storage.exists(new_root) and storage.list_names(new_root):
        raise OrchardError(f"{new}: not empty; convert writes a new output")
    files = commit["files"]
    index = _read(spark, old_root, files["index"], "path string, size long, mtime_ms long")
    features = _read(spark, old_root, files[FEATURES_DIR], None)
    errors = _read(spark, old_root, files[ERRORS_DIR], "path string, label string, split string, error string")
    features = features.select(*FEATURE_COLUMNS).join(index, "path", "left")
    errors = errors.select("path", "label", "split", "error").join(index, "path", "left")
    tables = OutputTables(spark, new_root, storage)
    pca_model = commit.get("pca_model")
    if pca_model:
        _copy_folder(storage, join(old_root, pca_model), join(new_root, pca_model))
    history: List[Dict[str, Any]] = list(commit.get("history") or [])
    metadata = {"operation": "convert", "run_id": new_run_id(), "orchard_version": __version__,
                "model": commit.get("model") or {}, "pca_model": pca_model,
                "run": history[-1] if history else None, "converted_from": old_root}
    tables.overwrite(ERRORS_DIR, errors.coalesce(1), metadata)
    tables.overwrite(FEATURES_DIR, features, metadata)
    _copy_record(storage, old_root, new_root, tables)
    return Converted(features=tables.read(FEATURES_DIR).count(), errors=tables.read(ERRORS_DIR).count(),
                     pca_model=pca_model or "")


def _read(spark, root: str, names: List[str], schema):
    if not names:
        if schema is None:
            raise OrchardError(f"{root}: the latest commit names no features file")
        return spark.createDataFrame([], schema)
    return spark.read.parquet(*[join(root, name) for name in names])


def _copy_folder(storage: Storage, source: str, target: str) -> None:
    for info in storage.iter_files(source):
        storage.write_bytes(join(target, info.name), storage.read_bytes(join(source, info.name)))


def _copy_record(storage: Storage, old_root: str, new_root: str, tables: OutputTables) -> None:
    """run.json of OLD, naming NEW and its table versions."""
    source = join(old_root, RUN_RECORD)
    if not storage.exists(source):
        return
    record = json.loads(storage.read_bytes(source))
    record.update(output=new_root, table={"features_version": tables.state_version(FEATURES_DIR),
                                          "errors_version": tables.state_version(ERRORS_DIR),
                                          "converted_from": old_root})
    storage.write_bytes(join(new_root, RUN_RECORD), (json.dumps(record, indent=2) + "\n").encode("utf-8"))
