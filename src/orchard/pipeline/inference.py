"""Image bytes -> CNN features, in batches, inside a Spark Python worker (the `mapInPandas`
function of ImageFeaturizer).

This module is what a Python worker imports: numpy, pandas, Pillow and ONNX Runtime, no
pyspark.ml. The ONNX Runtime session is created once per Python worker (models.onnx_session)
from the model file shipped to every executor with `SparkContext.addFile`; intra-op threads
are matched to the cores of one task (`spark.task.cpus`), so tasks running side by side do not
oversubscribe.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from orchard.paths import is_local_uri, local_path
from orchard.pipeline.models import ModelSpec, onnx_session
from orchard.pipeline.preprocess import try_preprocess
from orchard.spark.progress import batch_reporter

# Columns ImageFeaturizer adds besides its features and error columns.
WIDTH, HEIGHT, DECODE_MS, INFER_MS = "width", "height", "decode_ms", "infer_ms"


@dataclass(frozen=True)
class FrameColumns:
    """Column names of one featurization: its input, its outputs, the columns passed through."""

    input: str  # image bytes (binary), or file paths/URIs (string) when `paths` is true
    features: str
    error: str
    kept: Tuple[str, ...]  # input columns copied unchanged to the output, in order
    paths: bool = False


def to_model_input(pixels: List[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Stack HxWx3 uint8 arrays into the batch layout and dtype the model expects.

    uint8: the pixels as they are. float32: 0..255 values, or with `spec.mean`/`spec.std`
    (per channel, RGB, on the 0..1 scale) (pixels / 255 - mean) / std.
    Returns [N, H, W, 3] (NHWC) or [N, 3, H, W] (NCHW), C-contiguous.
    """
    batch = np.stack(pixels)
    if spec.mean is not None or spec.std is not None:
        mean = np.asarray(spec.mean if spec.mean is not None else (0.0,), dtype=np.float32)
        std = np.asarray(spec.std if spec.std is not None else (1.0,), dtype=np.float32)
        batch = (batch.astype(np.float32) / np.float32(255.0) - mean) / std
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.dtype(spec.dtype))


def infer(session, spec: ModelSpec, pixels: List[np.ndarray], batch_size: int,
          on_batch: Optional[Callable[[int], None]] = None) -> List[np.ndarray]:
    """Feature vectors (float32, spec.feature_dim each: the output flattened per image) of
    `pixels`, `batch_size` images a call (the graph's fixed batch size when it has one);
    `on_batch(n)` is called after each call with its number of images."""
    step = spec.fixed_batch or batch_size
    features: List[np.ndarray] = []
    for start in range(0, len(pixels), step):
        chunk = pixels[start : start + step]
        padding = [chunk[-1]] * (step - len(chunk)) if spec.fixed_batch else []  # a fixed batch is full
        batch = to_model_input(chunk + padding, spec)
        outputs = session.run([spec.output_name], {spec.input_name: batch})[0][: len(chunk)]
        features.extend(row.reshape(-1).astype(np.float32, copy=False) for row in outputs)
        if on_batch is not None:
            on_batch(len(chunk))
    return features


def read_bytes(location: Optional[str]) -> Tuple[Optional[bytes], Optional[str]]:
    """The bytes of a file path or URI (local, file:, or any filesystem pyarrow knows: s3://,
    hdfs://, gs://), or (None, reason)."""
    if location is None:
        return None, "no path (null)"
    try:
        if is_local_uri(location):
            return local_path(location).read_bytes(), None
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(location)
        with filesystem.open_input_stream(path) as stream:
            return stream.read(), None
    except Exception as error:  # missing, unreadable, unknown scheme: an error row, never a crash
        scheme = urlparse(location).scheme
        where = f" ({scheme}://)" if scheme and not is_local_uri(location) else ""
        return None, f"could not read {location}{where}: {type(error).__name__}: {error}"


def _decode(values: pd.Series, size: int, paths: bool) -> list:
    if not paths:
        return [try_preprocess(content, size) if content is not None else (None, "no image bytes (null)")
                for content in values]
    decoded = []
    for location in values:
        data, reason = read_bytes(location)
        decoded.append(try_preprocess(data, size) if reason is None else (None, reason))
    return decoded


def featurize_frame(session, spec: ModelSpec, frame: pd.DataFrame, batch_size: int,
                    columns: FrameColumns, report: Optional[Callable[[int, int], None]] = None) -> pd.DataFrame:
    """Features (or an error reason) for each row of `frame`; the kept columns pass through.
    `report(images, errors)` (live progress) hears of the error rows, then of each inference call.

    decode_ms is the batch's decode time (reading too, for paths) divided by its rows;
    infer_ms its inference time divided by the rows featurized (0.0 on error rows).
    """
    started = time.perf_counter()
    decoded = _decode(frame[columns.input], spec.image_size, columns.paths)
    decoded_at = time.perf_counter()
    good = [i for i, (pixels, _) in enumerate(decoded) if pixels is not None]
    if report is not None and len(good) < len(decoded):
        report(len(decoded) - len(good), len(decoded) - len(good))
    on_batch = (lambda n: report(n, 0)) if report is not None else None
    features: List[Optional[np.ndarray]] = [None] * len(decoded)
    for i, vector in zip(good, infer(session, spec, [decoded[i][0].array for i in good], batch_size, on_batch)):
        features[i] = vector
    finished = time.perf_counter()
    decode_ms = 1000.0 * (decoded_at - started) / max(len(decoded), 1)
    infer_ms = 1000.0 * (finished - decoded_at) / max(len(good), 1)
    out = {name: frame[name].values for name in columns.kept}
    out.update({
        columns.features: features,
        WIDTH: [p.width if p else None for p, _ in decoded],
        HEIGHT: [p.height if p else None for p, _ in decoded],
        columns.error: [reason for _, reason in decoded],
        DECODE_MS: decode_ms,
        INFER_MS: [infer_ms if f is not None else 0.0 for f in features],
    })
    return pd.DataFrame(out).astype({WIDTH: "Int32", HEIGHT: "Int32"})


def partition_featurizer(
    model_file_name: str, spec: ModelSpec, batch_size: int, threads: int, columns: FrameColumns
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function given to `mapInPandas`: features for every batch of every partition."""

    def featurize_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        session = onnx_session(SparkFiles.get(model_file_name), threads)
        report = batch_reporter()  # live progress on the driver (orchard.spark.progress)
        for frame in frames:
            yield featurize_frame(session, spec, frame, batch_size, columns, report)

    return featurize_partition
