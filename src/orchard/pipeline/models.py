"""The model registry, locating (or downloading) weights, and ONNX Runtime sessions.

Weights are resolved in this order:
1. `--model-path FILE` (any local path);
2. `$ORCHARD_MODEL_DIR/<file name>` (or `model_dir` passed by a caller);
3. the copy shipped inside the package (`orchard/models/`: the default model, see its NOTICE.txt);
4. the user cache `$ORCHARD_CACHE_DIR/models` (default `~/.cache/orchard/models`);
5. a download from the spec's official URL (or `$ORCHARD_MODEL_MIRROR/<file name>`) into the
   cache, checked against its sha256.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from orchard.errors import OrchardError
from orchard.names import DEFAULT_MODEL
from orchard.paths import cache_root, file_digest

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "ORCHARD_MODEL_DIR"
MIRROR_ENV = "ORCHARD_MODEL_MIRROR"  # a base URL serving <file name>, instead of the official URL
ONNX_MAGIC_HINT = b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version, varint)
# model files shipped inside the package (package data; each checked by its sha256 when loaded)
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "models"


@dataclass(frozen=True)
class ModelSpec:
    """What orchard needs to know to feed a model and read its features."""

    name: str
    file_name: str
    sha256: str
    url: str
    input_name: str
    output_name: str
    image_size: int
    layout: str  # "NHWC" or "NCHW"
    dtype: str  # "uint8": raw 0..255 pixels, scaling is inside the graph
    feature_dim: int
    description: str


REGISTRY: Dict[str, ModelSpec] = {
    DEFAULT_MODEL: ModelSpec(
        name=DEFAULT_MODEL,
        file_name="mobilenet_v2_1.0_224.onnx",
        sha256="8fa2195a28ab2e7f2b799de75a5f04451f7033ecbbce15b4d1dc9e45a2d3a703",
        url="https://github.com/fruits-orchard/orchard/releases/download/models-v1/mobilenet_v2_1.0_224.onnx",
        input_name="image",
        output_name="features",
        image_size=224,
        layout="NHWC",
        dtype="uint8",
        feature_dim=1280,
        description=(
            "MobileNetV2 1.0 224, ImageNet-1k (TF hosted models, dequantized to float32 ONNX); "
            "global-average-pooled 1280 features, as Keras MobileNetV2(include_top=False, pooling='avg')"
        ),
    ),
}


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise OrchardError(
            f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}"
        ) from None


def cache_dir() -> Path:
    return cache_root() / "models"


# sha256 of model files already hashed in this process: (path, size, mtime_ns) -> digest
_DIGESTS: Dict[Tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path, "sha256")
    return _DIGESTS[key]


def verify_model_file(path: Path, spec: ModelSpec, check_sha: bool = True) -> str:
    """Check that `path` is the expected model; return its sha256 or raise OrchardError."""
    if not path.is_file():
        raise OrchardError(f"model file not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head.startswith(ONNX_MAGIC_HINT):
        raise OrchardError(
            f"{path} is not an ONNX model (it does not start like one); "
            f"pass the {spec.file_name} file with --model-path"
        )
    digest = sha256_of(path)
    if check_sha and digest != spec.sha256:
        raise OrchardError(
            f"checksum mismatch for {path}: sha256 {digest}, expected {spec.sha256} for model "
            f"{spec.name!r}; delete the file (or pass the right one with --model-path)"
        )
    return digest


def download(url: str, target: Path, expected_sha256: str) -> Path:
    """Download `url` to `target` with a progress bar; keep it only if the sha256 matches."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, target)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != expected_sha256:
            raise OrchardError(
                f"download of {url} has sha256 {digest.hexdigest()}, expected {expected_sha256}: "
                "the file is corrupt or not the expected model; nothing was kept"
            )
        os.replace(tmp_name, target)
    except OSError as error:
        raise OrchardError(
            f"could not download {url}: {error}; offline? pass --model-path FILE or set "
            f"${MODEL_DIR_ENV} to a folder holding the model file"
        ) from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def download_url(spec: ModelSpec) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{spec.file_name}" if mirror else spec.url


def resolve_model(
    name: str, model_path: Optional[str] = None, model_dir: Optional[str] = None
) -> Tuple[ModelSpec, Path, str]:
    """Find the weights of model `name`; return (spec, local path, sha256)."""
    spec = get_spec(name)
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise OrchardError(f"model file not found: {model_path} (from --model-path)")
        return spec, path, verify_model_file(path, spec)
    for folder in (model_dir, os.environ.get(MODEL_DIR_ENV), str(PACKAGED_DIR), str(cache_dir())):
        if folder and (Path(folder) / spec.file_name).is_file():
            path = Path(folder) / spec.file_name
            return spec, path, verify_model_file(path, spec)
    path = download(download_url(spec), cache_dir() / spec.file_name, spec.sha256)
    return spec, path, verify_model_file(path, spec)


# One ONNX Runtime session per Python process (a Spark Python worker is reused across tasks).
_SESSIONS: Dict[Tuple[str, int], object] = {}


def onnx_session(path: str, threads: int = 1):
    """Return the process-wide ONNX Runtime session for `path`, creating it on first use."""
    key = (path, threads)
    session = _SESSIONS.get(key)
    if session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = session
    return session
