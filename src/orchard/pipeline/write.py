"""Writing a run's outputs: Parquet tables, the PCA model, run.json and the scree plot.

Spark writes the tables and the model; run.json and the scree plot go through orchard.storage
(the local disk, or Spark's own Hadoop filesystems), so the output may be a local folder,
hdfs:///path or s3://bucket/prefix alike.
"""
from __future__ import annotations

import io
import json
import logging
import math
from typing import Any, Dict, List

from orchard.errors import OrchardError
from orchard.paths import is_local_uri, local_path
from orchard.storage.fs import Storage

log = logging.getLogger(__name__)


def check_local_input(uri: str) -> None:
    """Fail fast, before Spark starts, when a local input folder does not exist."""
    if is_local_uri(uri) and not local_path(uri).exists():
        raise OrchardError(f"input not found: {uri} (expected a folder of <Split>/<Class>/<image>)")


def check_local_output(uri: str, overwrite: bool) -> None:
    """Fail fast, before Spark starts, when a local output exists and --overwrite is not given."""
    if is_local_uri(uri):
        path = local_path(uri)
        if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
            raise OrchardError(f"output {uri} already exists; pass --overwrite to replace it")


class Output:
    """The output folder of a run, on any filesystem Spark writes to (through orchard.storage)."""

    def __init__(self, spark, uri: str):
        self._storage = Storage(spark=spark)
        self.uri = self._storage.qualify(uri)

    def child(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"

    @property
    def storage(self) -> Storage:
        return self._storage

    def prepare(self, replace: bool) -> None:
        """Make sure the output can be written: empty, or `replace` (--overwrite, --update)
        given. Nothing is deleted here: the replaced run's files go once the new run is
        committed (orchard.pipeline.commit)."""
        if self._storage.exists(self.uri) and not replace:
            is_empty_dir = self._storage.is_dir(self.uri) and not self._storage.list_names(self.uri)
            if not is_empty_dir:
                raise OrchardError(f"output {self.uri} already exists; pass --overwrite to replace it")
        self._storage.make_dirs(self.uri)

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write the file `name` in the output (atomically where the filesystem allows); its URI."""
        self._storage.write_bytes(self.child(name), data)
        return self.child(name)

    def write_json(self, name: str, record: Dict[str, Any]) -> str:
        text = json.dumps(strict_json(record), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
        return self.write_bytes(name, text.encode("utf-8"))


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None: strict JSON (RFC 8259)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def parquet_options(frame) -> Dict[str, str]:
    """Parquet writer options for `frame`: no dictionary for its arrays of floats.

    Feature values hardly ever repeat, so Parquet builds a dictionary for them, finds it too
    large and falls back to plain values: about a third of the write time of `features/` here.
    Other columns (label, split, model) keep their dictionaries.
    """
    from pyspark.sql.types import ArrayType, DoubleType, FloatType

    return {
        f"parquet.enable.dictionary#{field.name}.list.element": "false"
        for field in frame.schema.fields
        if isinstance(field.dataType, ArrayType) and isinstance(field.dataType.elementType, (FloatType, DoubleType))
    }


def scree_plot_png(explained_variance: List[float], k: int, target: float, title: str) -> bytes:
    """A PNG of per-component and cumulative explained variance, with the chosen k marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ratios = np.asarray(explained_variance)
    shown = min(len(ratios), max(50, int(k * 2)))
    components = np.arange(1, shown + 1)
    cumulative = np.cumsum(ratios)[:shown]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
    axis.bar(components, ratios[:shown], color="#8fbc8f", label="per component")
    axis.set_xlabel("principal component")
    axis.set_ylabel("explained variance ratio")
    twin = axis.twinx()
    twin.plot(components, cumulative, color="#b22222", marker=".", label="cumulative")
    twin.axhline(target, color="grey", linestyle="--", linewidth=1)
    twin.axvline(k, color="#b22222", linestyle=":", linewidth=1)
    twin.annotate(f"k = {k}: {cumulative[min(k, shown) - 1]:.1%}", (k, target),
                  textcoords="offset points", xytext=(8, -14), color="#b22222")
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("cumulative")
    axis.set_title(title)
    figure.legend(loc="center right", bbox_to_anchor=(0.88, 0.5))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
