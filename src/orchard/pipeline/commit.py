"""The commit protocol of an output: which Parquet files are the run a reader sees.

An output holds immutable data files plus numbered commit files::

    <output>/features/part-*.parquet     rows of features/ (Spark's names: never reused)
    <output>/errors/part-*.parquet       rows of errors/
    <output>/_orchard/index/*.parquet    (path, size, mtime_ms) of every committed input file
    <output>/_orchard/staged/<run>/...   featurized chunks of a run not finished yet (resume)
    <output>/_orchard/commits/<n>.json   commit n: the live files, the PCA model, the history

The commit with the highest number is the output. A run writes its data files under new names,
then writes commit n+1 (one small file: atomic on a local disk and HDFS, which write it aside
and rename it, and on S3, where an object appears whole), and only then removes files no
commit names (the previous run's, after --overwrite or --update; a killed run's leftovers).
A reader that follows the latest commit (`committed_files`, `read_features`, or the `files`
lists in the JSON) therefore sees the previous run until the new one is committed, then the
new one; never a half-written run. Names starting with `_` or `.` are hidden to Spark, pyarrow
and DuckDB's hive reader, so `_orchard/` never shows up as data.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.names import ERRORS_DIR, FEATURES_DIR, PCA_MODEL_DIR
from orchard.storage.fs import Storage, join, local_path

log = logging.getLogger(__name__)

ORCHARD_DIR = "_orchard"
COMMITS_DIR = f"{ORCHARD_DIR}/commits"
INDEX_DIR = f"{ORCHARD_DIR}/index"
STAGED_DIR = f"{ORCHARD_DIR}/staged"
COMMIT_FORMAT = 1
KILL_AT_ENV = "ORCHARD_TEST_KILL_AT"  # test hook: the named point where the driver SIGKILLs itself
TABLES = (FEATURES_DIR, ERRORS_DIR)


def kill_point(name: str) -> None:
    """For crash tests: SIGKILL this process when $ORCHARD_TEST_KILL_AT is `name`."""
    if os.environ.get(KILL_AT_ENV) == name:
        log.warning("test hook: killing the driver at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def new_run_id() -> str:
    """A sortable unique id: UTC time + 6 hex digits, e.g. 20261130T180102-1a2b3c."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Commit:
    """One commit: every file is relative to the output root, '/' separators.

    `complete` False: no run has finished yet (only `staged` chunks). `staged`: the featurized
    chunks (Parquet, the featurizer's columns + size, mtime_ms) of the run `staged_run`, which
    has not finished: a run with --update/--resume takes them as done.
    """

    number: int = 0
    run_id: str = ""
    committed_at: str = ""
    complete: bool = False
    files: Dict[str, List[str]] = field(default_factory=lambda: {FEATURES_DIR: [], ERRORS_DIR: [], "index": []})
    pca_model: Optional[str] = None
    model: Dict[str, Any] = field(default_factory=dict)  # name, sha256, feature_dim of features/
    staged_run: Optional[str] = None
    staged: List[str] = field(default_factory=list)
    history: List[Dict[str, Any]] = field(default_factory=list)
    extra_files: List[str] = field(default_factory=list)  # run.json, pca_scree.png

    def named(self) -> List[str]:
        """Every file or folder this commit needs (relative names)."""
        names = [name for files in self.files.values() for name in files] + list(self.staged)
        names += list(self.extra_files)
        if self.pca_model:
            names.append(self.pca_model)
        return names

    def to_dict(self) -> Dict[str, Any]:
        return {"format": COMMIT_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Commit":
        if data.get("format") != COMMIT_FORMAT:
            raise OrchardError(f"unknown commit format {data.get('format')!r} (this orchard reads {COMMIT_FORMAT})")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def commit_name(number: int) -> str:
    return f"{COMMITS_DIR}/{number:08d}.json"


class CommitLog:
    """The commits of the output `uri`, through orchard.storage (local disk, HDFS, S3)."""

    def __init__(self, storage: Storage, uri: str):
        self.storage = storage
        self.uri = uri.rstrip("/")

    def child(self, name: str) -> str:
        return join(self.uri, name)

    def latest(self) -> Optional[Commit]:
        """The highest-numbered readable commit, or None when there is none."""
        folder = self.child(COMMITS_DIR)
        if not self.storage.exists(folder):
            return None
        numbers = sorted((int(name[:-5]) for name in self.storage.list_names(folder)
                          if name.endswith(".json") and name[:-5].isdigit()), reverse=True)
        for number in numbers:
            try:
                return Commit.from_dict(json.loads(self.storage.read_bytes(self.child(commit_name(number)))))
            except ValueError:  # a torn file from a store without atomic writes: take the one before
                log.warning("skipping unreadable commit %d", number)
        return None

    def write(self, commit: Commit, previous: Optional[Commit]) -> Commit:
        """Write `commit` as number previous+1: from then on it is the output."""
        commit.number = (previous.number if previous else 0) + 1
        commit.committed_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        data = (json.dumps(commit.to_dict(), indent=1, default=str) + "\n").encode("utf-8")
        self.storage.write_bytes(self.child(commit_name(commit.number)), data)
        log.info("committed %s as commit %d", commit.run_id, commit.number)
        return commit

    def remove_strays(self, commit: Optional[Commit]) -> int:
        """Delete what no commit names below features/, errors/, _orchard/ and the PCA model
        folders (a killed run's files, the files of a replaced run); older commit files but the
        previous one. Returns how many entries were removed."""
        keep = set(commit.named()) if commit else set()
        removed = 0
        for table in TABLES + (INDEX_DIR, STAGED_DIR):
            for info in self.storage.list(self.child(table)):
                name = f"{table}/{info.name}"
                if name not in keep and not any(name.startswith(k + "/") for k in keep):
                    self.storage.delete(self.child(name), recursive=False)
                    removed += 1
        for name in self.storage.list_names(self.uri) if self.storage.exists(self.uri) else []:
            if name.startswith(PCA_MODEL_DIR) and name not in keep:
                self.storage.delete(self.child(name))
                removed += 1
        if commit:
            for name in self.storage.list_names(self.child(COMMITS_DIR)):
                if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) < commit.number - 1:
                    self.storage.delete(self.child(f"{COMMITS_DIR}/{name}"), recursive=False)
                elif not name.endswith(".json"):
                    self.storage.delete(self.child(f"{COMMITS_DIR}/{name}"), recursive=False)
        if removed:
            log.info("removed %d files no commit names", removed)
        return removed


def committed_files(uri: str, table: str = FEATURES_DIR, storage: Optional[Storage] = None) -> List[str]:
    """URIs of the Parquet files of `table` (features, errors) in the latest commit of the
    output `uri`. Raises OrchardError when the output has no finished run."""
    storage = storage or Storage()
    commit = CommitLog(storage, storage.qualify(uri)).latest()
    if commit is None or not commit.complete:
        raise OrchardError(f"{uri}: no committed run (no {COMMITS_DIR}/*.json naming a finished run)")
    return [join(storage.qualify(uri), name) for name in commit.files[table]]


def read_features(uri: str, table: str = FEATURES_DIR, columns: Optional[List[str]] = None,
                  storage: Optional[Storage] = None):
    """The committed rows of `table` (features or errors) of the output `uri` as a
    pandas.DataFrame, read with pyarrow from the files the latest commit names.

    Local folders and file: URIs are read directly by pyarrow; every other URI (s3://, s3a://,
    hdfs://, ...) through `storage` (default Storage(): boto3's usual credentials for S3, the
    URI's own hdfs://host:port), one committed file at a time, so it works wherever orchard
    writes (pyarrow's own HDFS needs libhdfs, its S3 the endpoint settings).
    Raises OrchardError when the output has no finished run.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    import pandas as pd

    storage = storage or Storage()
    files = committed_files(uri, table, storage)
    if not files:
        return pd.DataFrame(columns=columns or [])
    if all(name.startswith("file:") for name in files):
        paths = [str(local_path(name)) for name in files]
        return pq.ParquetDataset(paths, filesystem=pafs.LocalFileSystem()).read(columns=columns).to_pandas()
    return _read_through(storage, files, columns).to_pandas()


def _read_through(storage: Storage, files: List[str], columns: Optional[List[str]]):
    """One pyarrow.Table of the Parquet `files` (URIs), each read whole through `storage`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(pa.BufferReader(storage.read_bytes(name)), columns=columns) for name in files]
    return pa.concat_tables(tables)
