"""The record of one `orchard run`: a typed object, and the run.json it is written as."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class RunCounts:
    """Files of a run; they always reconcile: found = featurized + errors + ignored + forgotten
    and images = featurized + errors + forgotten."""

    found: int  # every file below the input root (hidden `_x`/`.x` names aside)
    images: int  # files with an image extension
    featurized: int  # rows of features/
    errors: int  # rows of errors/ (each with a reason)
    ignored: int  # files without an image extension (listed in ignored_files)
    forgotten: int = 0  # images skipped because `orchard forget` removed them (same path, size, mtime)


@dataclass
class RunRecord:
    """What `orchard.run` returns and writes as run.json (`to_dict()`: the same keys, in order).

    Units: seconds (float, wall clock) in `seconds` (per stage, in start order, and `total`:
    from the first stage's start to the last one's end, as write_errors and write_model overlap
    write_features) and `udf_seconds`
    (decode and inference time summed over every image, across all cores); epoch seconds in
    `stage_started_at`; `started_at` is an ISO 8601 UTC time.
    """

    orchard_version: str
    started_at: str
    input: str  # the qualified input root URI
    output: str  # the qualified output URI
    counts: RunCounts
    ignored_files: List[str]  # the first 100, relative to the input root
    model: Dict[str, Any]  # name, sha256, file, feature_dim, input
    pca: Dict[str, Any]  # k, chosen_by, explained_variance (by k), explained_variance_ratios, scree_plot
    partitions: int
    cores: int
    seconds: Dict[str, float]
    stage_started_at: Dict[str, float]
    udf_seconds: Dict[str, float]
    master: str
    executors: List[Dict[str, Any]]
    spark: Dict[str, Any]
    versions: Dict[str, str]
    config: Dict[str, Any]  # the RunConfig, as a dict
    # one entry per run that made this output, oldest first: run_id, started_at, mode (full,
    # overwrite, update), file counts new / changed / removed / unchanged, featurized_now,
    # model_sha256, pca_model (its folder), pca_refit
    history: List[Dict[str, Any]] = field(default_factory=list)
    # the Delta table versions this run committed: features_version, errors_version
    table: Dict[str, Any] = field(default_factory=dict)

    @property
    def pca_k(self) -> int:
        """Components kept by the PCA (0 when it was skipped)."""
        return int(self.pca.get("k", 0))

    @property
    def total_seconds(self) -> float:
        return float(self.seconds.get("total", 0.0))

    def to_dict(self) -> Dict[str, Any]:
        """The run.json content: plain JSON types, keys in the order written."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["counts"] = dataclasses.asdict(self.counts)
        return record
