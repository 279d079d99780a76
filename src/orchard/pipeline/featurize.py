"""Image bytes -> CNN features, in batches, inside Spark (an Arrow `mapInPandas` function).

The ONNX Runtime session is created once per Python worker (see models.onnx_session) from the
model file shipped to every executor with `SparkContext.addFile`; intra-op threads are matched
to the cores of one task (`spark.task.cpus`), so tasks running side by side do not oversubscribe.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, List, Optional

import numpy as np
import pandas as pd

from orchard.pipeline.models import ModelSpec, onnx_session
from orchard.pipeline.preprocess import try_preprocess

FEATURES_SCHEMA = (
    "path string, label string, split string, features array<float>, "
    "width int, height int, error string, decode_ms double, infer_ms double"
)


ARROW_BATCH_ROWS = 64  # rows per Arrow batch sent to a Python worker (bounded memory per batch)


def arrow_batch_rows(batch_size: int) -> int:
    """Rows per Arrow batch: at least one inference batch, else ARROW_BATCH_ROWS."""
    return max(ARROW_BATCH_ROWS, batch_size)


def to_model_input(pixels: List[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Stack HxWx3 uint8 arrays into the batch layout and dtype the model expects."""
    batch = np.stack(pixels)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.dtype(spec.dtype))


def infer(session, spec: ModelSpec, pixels: List[np.ndarray], batch_size: int) -> List[np.ndarray]:
    """Feature vectors of `pixels`, running the model on `batch_size` images at a time."""
    features: List[np.ndarray] = []
    for start in range(0, len(pixels), batch_size):
        batch = to_model_input(pixels[start : start + batch_size], spec)
        outputs = session.run([spec.output_name], {spec.input_name: batch})[0]
        features.extend(row.astype(np.float32, copy=False) for row in outputs)
    return features


def featurize_frame(session, spec: ModelSpec, frame: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """Features (or an error reason) for each row of frame(path, label, split, content)."""
    started = time.perf_counter()
    decoded = [try_preprocess(content, spec.image_size) for content in frame["content"]]
    decoded_at = time.perf_counter()
    good = [i for i, (pixels, _) in enumerate(decoded) if pixels is not None]
    features: List[Optional[np.ndarray]] = [None] * len(decoded)
    for i, vector in zip(good, infer(session, spec, [decoded[i][0].array for i in good], batch_size)):
        features[i] = vector
    finished = time.perf_counter()
    decode_ms = 1000.0 * (decoded_at - started) / max(len(decoded), 1)
    infer_ms = 1000.0 * (finished - decoded_at) / max(len(good), 1)
    return pd.DataFrame(
        {
            "path": frame["path"].values,
            "label": frame["label"].values,
            "split": frame["split"].values,
            "features": features,
            "width": [p.width if p else None for p, _ in decoded],
            "height": [p.height if p else None for p, _ in decoded],
            "error": [reason for _, reason in decoded],
            "decode_ms": decode_ms,
            "infer_ms": [infer_ms if f is not None else 0.0 for f in features],
        }
    ).astype({"width": "Int32", "height": "Int32"})


def partition_featurizer(
    model_file_name: str, spec: ModelSpec, batch_size: int, threads: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function given to `mapInPandas`: features for every batch of every partition."""

    def featurize_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        session = onnx_session(SparkFiles.get(model_file_name), threads)
        for frame in frames:
            yield featurize_frame(session, spec, frame, batch_size)

    return featurize_partition
