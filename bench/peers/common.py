"""What the peer jobs (ray_job.py, daft_job.py) share: listing, orchard's preprocessing, the
ONNX Runtime session, inference of one batch. Needs only numpy, Pillow and onnxruntime, so it
imports in the peers' virtual environments (no orchard there).

The preprocessing is a copy of orchard.pipeline.preprocess.preprocess (the lines that matter for
decodable images): Pillow decode, JPEG draft at >= 2x the target size, EXIF orientation, RGB
(alpha composited on white), bilinear resize to size x size, uint8 HxWx3. bench/peers/run.py
checks that it gives the same arrays as orchard's before timing anything.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps

SIZE = 224
INPUT_NAME, OUTPUT_NAME = "image", "features"  # orchard's mobilenet_v2 graph: uint8 NHWC -> 1280 floats
FEATURE_DIM = 1280
# the extensions orchard reads in the shared data sets (orchard.pipeline.preprocess.IMAGE_EXTENSIONS
# has more; Fruits-360 holds only JPEGs)
EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(root: Path) -> List[Tuple[str, str]]:
    """(absolute path, relative path with '/') of the images under <root>/<Split>/<Class>/, sorted."""
    root = Path(root).resolve()
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.lower().endswith(EXTENSIONS):
                full = Path(folder) / name
                found.append((str(full), full.relative_to(root).as_posix()))
    return sorted(found, key=lambda pair: pair[1])


def label_of(relative: str) -> str:
    """The class folder of <Split>/<Class>/<file> (or <Class>/<file>), as orchard's `label`."""
    parts = relative.split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def preprocess(data: bytes, size: int = SIZE) -> np.ndarray:
    """Image bytes -> uint8 [size, size, 3] RGB, as orchard.pipeline.preprocess.preprocess."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (2 * size, 2 * size))
    image.load()
    image = ImageOps.exif_transpose(image)
    if "transparency" in image.info and image.mode in ("P", "RGB", "L"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = image.convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def onnx_session(model_file: str, threads: int = 1):
    """One ONNX Runtime session with orchard's options (orchard.pipeline.models.onnx_session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])


def featurize(session, contents: Sequence[bytes]) -> np.ndarray:
    """float32 [n, 1280] features of n images' bytes (one inference call: n is the batch)."""
    pixels = np.stack([preprocess(data) for data in contents])
    return session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0].reshape(len(contents), -1).astype(np.float32)


def timing_line(system: str, images: int, seconds: Dict[str, float]) -> str:
    """The one line a job prints last, read by run.py: `PEER <system> images=<n> <stage>=<s> ...`."""
    return f"PEER {system} images={images} " + " ".join(f"{k}={v:.3f}" for k, v in seconds.items())


def count_rows(folder: Path) -> int:
    """Rows of every Parquet file below `folder` (from the files' footers)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in folder.rglob("*.parquet"))
