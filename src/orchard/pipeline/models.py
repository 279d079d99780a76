"""The model registry, locating (or downloading) weights, and ONNX Runtime sessions.

Weights are resolved in this order:
1. `--model-path FILE` (any local path);
2. `$ORCHARD_MODEL_DIR/<file name>` (or `model_dir` passed by a caller);
3. the copy shipped inside the package (`orchard/models/`: the default model, see its NOTICE.txt);
4. the user cache `$ORCHARD_CACHE_DIR/models` (default `~/.cache/orchard/models`);
5. a download from the spec's official URL (or `$ORCHARD_MODEL_MIRROR/<file name>`) into the
   cache, checked against its sha256.

Bring your own model: `--model-path FILE` that is no registered model's file (or `--model NAME`
with a NAME that is not registered) reads the input spec from the graph (orchard.pipeline.graph):
its one input's name, layout (NHWC or NCHW), dtype (uint8 or float32) and square image size;
`--feature-output NAME` picks a graph output or an intermediate tensor (exposed in a cached copy).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from orchard.errors import OrchardError
from orchard.names import DEFAULT_MODEL
from orchard.paths import cache_root, file_digest
from orchard.pipeline.graph import GraphUnreadable, fit_to_graph

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
    dtype: str  # "uint8": raw 0..255 pixels, scaling is inside the graph; or "float32"
    feature_dim: int  # floats per image: the feature output flattened
    description: str
    # float32 inputs only: per channel (RGB) on the 0..1 scale, input = (pixels / 255 - mean) / std;
    # None: the float pixels are given as 0..255 (the graph scales inside)
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    expose: bool = False  # output_name is an intermediate tensor: run a cached copy that outputs it
    fixed_batch: Optional[int] = None  # the graph's batch size when fixed (e.g. 1), else None
    source: str = ""  # where the file and its sha256 come from

    def input_text(self) -> str:
        """"NCHW float32 224, mean .. std .." : how pixels are fed, for records and errors."""
        scaling = f", mean {list(self.mean)}, std {list(self.std)}" if self.mean or self.std else ""
        return f"{self.layout} {self.dtype} {self.image_size}{scaling}"


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics, on the 0..1 scale
IMAGENET_STD = (0.229, 0.224, 0.225)
ONNX_ZOO = "https://github.com/onnx/models/raw/main/validated/vision/classification"


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
    # The ONNX Model Zoo (github.com/onnx/models, commit b1eeaa1ac722, 2025-06-27): sha256 and size
    # from the Git LFS pointer files of the paths below. Both graphs come from MXNet Gluon (names
    # vgg0_* / resnetv17_*) and take [N, 3, 224, 224] float32 normalized with ImageNet's mean/std
    # (the zoo's imagenet_preprocess.py). Features: the tensor the classifier reads, flattened;
    # checked when the model is first used (a missing name is a clear error listing the tensors).
    "vgg16": ModelSpec(
        name="vgg16",
        file_name="vgg16-12.onnx",
        sha256="722c42f53ca03a5480296bf8f9c85a151de3eed9ec982d7d2302ff6e2900c67b",
        url=f"{ONNX_ZOO}/vgg/model/vgg16-12.onnx",
        input_name="data",
        output_name="vgg0_pool4_fwd",
        image_size=224,
        layout="NCHW",
        dtype="float32",
        feature_dim=25088,
        description=(
            "VGG16 (fp32, opset 12), ImageNet-1k, ONNX Model Zoo; features: pool5 (vgg0_pool4_fwd, "
            "[N, 512, 7, 7]) flattened to 25088, the input of the first fully connected layer"
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        expose=True,
        source="onnx/models validated/vision/classification/vgg/model/vgg16-12.onnx "
               "(Git LFS pointer: oid sha256:722c42f5..., size 553437752)",
    ),
    "resnet50": ModelSpec(
        name="resnet50",
        file_name="resnet50-v1-12.onnx",
        sha256="3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526",
        url=f"{ONNX_ZOO}/resnet/model/resnet50-v1-12.onnx",
        input_name="data",
        output_name="resnetv17_pool1_fwd",
        image_size=224,
        layout="NCHW",
        dtype="float32",
        feature_dim=2048,
        description=(
            "ResNet50 v1 (fp32, opset 12), ImageNet-1k, ONNX Model Zoo; features: the global average "
            "pool (resnetv17_pool1_fwd, [N, 2048, 1, 1]) flattened to 2048, the classifier's input"
        ),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        expose=True,
        source="onnx/models validated/vision/classification/resnet/model/resnet50-v1-12.onnx "
               "(Git LFS pointer: oid sha256:3f03fdef..., size 102576593)",
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
    name: Optional[str], model_path: Optional[str] = None, model_dir: Optional[str] = None,
    feature_output: Optional[str] = None, mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Tuple[ModelSpec, Path, str]:
    """Find the weights of model `name`; return (spec, local path, sha256 of that file).

    `name` None: the registered model whose sha256 the `model_path` file has, else (any other
    ONNX file) your own model; without `model_path`, the default model. A `name` that is not
    registered, with `model_path`: your own model under that name. Your own model's spec is read
    from its graph; `feature_output`, `mean` and `std` override a registered model's.

    The path returned is the file as given (its sha256 is what records name); when the spec's
    feature output is an intermediate tensor (`spec.expose`), the file to run is
    `runnable_path(spec, path, sha256)`. Raises OrchardError: unknown model, file missing, not
    ONNX, checksum mismatch, a graph that does not fit (see orchard.pipeline.graph).
    """
    overrides = {"feature_output": feature_output, "mean": mean, "std": std}
    if model_path and (name is None or name not in REGISTRY):
        return _bring_your_own(name, Path(model_path).expanduser(), **overrides)
    spec = get_spec(name or DEFAULT_MODEL)
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise OrchardError(f"model file not found: {model_path} (from --model-path)")
    else:
        path = _find_registered(spec, model_dir)
    digest = verify_model_file(path, spec)
    wanted = _overridden(spec, **overrides)
    if spec.expose or wanted != spec:  # the registered spec as it is needs no look at the graph
        spec = fit_to_graph(wanted, path, digest)
    return spec, path, digest


def _find_registered(spec: ModelSpec, model_dir: Optional[str]) -> Path:
    for folder in (model_dir, os.environ.get(MODEL_DIR_ENV), str(PACKAGED_DIR), str(cache_dir())):
        if folder and (Path(folder) / spec.file_name).is_file():
            return Path(folder) / spec.file_name
    return download(download_url(spec), cache_dir() / spec.file_name, spec.sha256)


def _overridden(spec: ModelSpec, feature_output: Optional[str], mean: Optional[Sequence[float]],
                std: Optional[Sequence[float]]) -> ModelSpec:
    return dataclasses.replace(
        spec,
        output_name=feature_output or spec.output_name,
        mean=tuple(mean) if mean is not None else spec.mean,
        std=tuple(std) if std is not None else spec.std,
    )


def _bring_your_own(name: Optional[str], path: Path, feature_output: Optional[str],
                    mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> Tuple[ModelSpec, Path, str]:
    if not path.is_file():
        raise OrchardError(f"model file not found: {path} (from --model-path)")
    with open(path, "rb") as handle:
        if not handle.read(16).startswith(ONNX_MAGIC_HINT):
            raise OrchardError(f"{path} is not an ONNX model (it does not start like one)")
    digest = sha256_of(path)
    if name is None:
        for spec in REGISTRY.values():
            if spec.sha256 == digest:  # a registered model's own file
                return resolve_model(spec.name, str(path), None, feature_output, mean, std)
    skeleton = ModelSpec(
        name=name or path.stem, file_name=path.name, sha256=digest, url="", input_name="",
        output_name=feature_output or "", image_size=0, layout="", dtype="", feature_dim=0,
        description=f"your own ONNX model {path.name}",
        mean=tuple(mean) if mean is not None else None, std=tuple(std) if std is not None else None,
        source=str(path),
    )
    try:
        return fit_to_graph(skeleton, path, digest), path, digest
    except GraphUnreadable as error:
        raise OrchardError(
            f"{path} is no registered model's file (sha256 {digest}: checksum mismatch with every "
            f"registered model) and cannot be read as your own ONNX model: {error}"
        ) from None


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
