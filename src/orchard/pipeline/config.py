"""One configuration object for a run, matching the `orchard run` options one to one.

Settings come from (lowest to highest priority): the defaults below, a config file
(`--config FILE`, YAML or JSON, keys spelled like the options: `pca-k` or `pca_k`),
then the command line.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.names import PRECISION_FP32, PRECISIONS

ARROW_BATCH_ROWS = 64  # rows per Arrow batch sent to a Python worker (bounded memory per batch)
ARROW_BATCH_BYTES = 64 * 1024 * 1024  # image bytes per Arrow batch at most, when the largest image is known


def arrow_batch_rows(batch_size: int, largest_input: int = 0) -> int:
    """Rows per Arrow batch: max(ARROW_BATCH_ROWS, batch_size), fewer when `largest_input`
    (bytes of the largest image, 0: unknown) times that would pass ARROW_BATCH_BYTES, so a
    batch of phone photos stays bounded in bytes too (never below 1 row)."""
    rows = max(ARROW_BATCH_ROWS, batch_size)
    if largest_input > 0:
        rows = min(rows, ARROW_BATCH_BYTES // largest_input)
    return max(1, rows)


DEFAULT_MASTER = "local[*]"  # used unless spark-submit (or a profile) gives the master


@dataclass
class RunConfig:
    """Everything `orchard run` needs; field names are the CLI option names with `_`."""

    input: str = ""
    output: str = ""
    model: Optional[str] = None  # None: the default model, or the registered model --model-path is, or your own
    model_path: Optional[str] = None
    feature_output: Optional[str] = None  # a graph output or intermediate tensor of the model
    mean: Optional[List[float]] = None  # float32 inputs: per channel (RGB), 0..1 scale
    std: Optional[List[float]] = None
    pca_variance: float = 0.95
    pca_k: Optional[int] = None
    batch_size: int = 8  # small batches run faster on CPU here (cache); see README, Speed
    precision: str = PRECISION_FP32  # or "int8": the model quantized (orchard.pipeline.quantize)
    master: Optional[str] = None
    overwrite: bool = False
    partitions: Optional[int] = None
    profile: Optional[str] = None
    event_log_dir: Optional[str] = None
    spark_conf: Dict[str, str] = field(default_factory=dict)
    update: bool = False  # featurize only new and changed images; project with the committed PCA
    resume: bool = False  # finish a killed run (its committed chunks are kept); same as update
    refit_pca: bool = False  # with update: refit the PCA on every row and rewrite `pca`
    pca_model: Optional[str] = None  # project with this PCA model (an orchard output or PCAModel folder)
    chunk_images: Optional[int] = None  # images per committed chunk (default: ~3 minutes of work)

    def validate(self) -> "RunConfig":
        """Raise OrchardError on settings that cannot work; return self."""
        if not self.input:
            raise OrchardError("--input is required (a folder, hdfs:///path or s3://bucket/prefix)")
        if not self.output:
            raise OrchardError("--output is required (where features/, errors/ and run.json go)")
        if not 0.0 < self.pca_variance <= 1.0:
            raise OrchardError(f"--pca-variance must be in (0, 1], got {self.pca_variance}")
        if self.pca_k is not None and self.pca_k < 1:
            raise OrchardError(f"--pca-k must be a positive integer, got {self.pca_k}")
        if self.batch_size < 1:
            raise OrchardError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.partitions is not None and self.partitions < 1:
            raise OrchardError(f"--partitions must be a positive integer, got {self.partitions}")
        check_precision(self.precision)
        check_channel_values("--mean", self.mean)
        check_channel_values("--std", self.std)
        if self.std is not None and any(value == 0 for value in self.std):
            raise OrchardError(f"--std values must be nonzero, got {self.std}")
        if self.chunk_images is not None and self.chunk_images < 1:
            raise OrchardError(f"--chunk-images must be a positive integer, got {self.chunk_images}")
        if self.refit_pca and self.pca_model:
            raise OrchardError("--refit-pca and --pca-model contradict each other: pick one")
        if (self.update or self.resume) and self.overwrite:
            raise OrchardError("--update/--resume keep the output; --overwrite replaces it: pick one")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def check_precision(value: str) -> str:
    """`value` when it is a known precision ("fp32", "int8"); else OrchardError."""
    if value not in PRECISIONS:
        raise OrchardError(f"unknown precision {value!r}; choose one of: {', '.join(PRECISIONS)}")
    return value


def check_channel_values(option: str, values: Optional[List[float]]) -> None:
    """OrchardError unless `values` is None or 1 or 3 numbers (one for all channels, or R,G,B)."""
    if values is None:
        return
    if not isinstance(values, (list, tuple)) or len(values) not in (1, 3) or not all(
            isinstance(value, (int, float)) for value in values):
        raise OrchardError(f"{option} takes 1 or 3 numbers (R,G,B), got {values!r}")


def config_field_names() -> set:
    return {f.name for f in dataclasses.fields(RunConfig)}


def load_config_file(path: str) -> Dict[str, Any]:
    """Read a YAML or JSON config file into a dict keyed by RunConfig field names."""
    file = Path(path)
    if not file.is_file():
        raise OrchardError(f"config file not found: {path}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise OrchardError(f"config file {path} must hold a mapping of option: value")
    settings = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(settings) - config_field_names())
    if unknown:
        raise OrchardError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(config_field_names()))}"
        )
    return settings


def build_config(file_settings: Dict[str, Any], cli_settings: Dict[str, Any]) -> RunConfig:
    """Merge defaults < config file < command line (only options given on the CLI count)."""
    merged: Dict[str, Any] = {}
    merged.update(file_settings)
    merged.update({k: v for k, v in cli_settings.items() if v is not None})
    return RunConfig(**merged).validate()
