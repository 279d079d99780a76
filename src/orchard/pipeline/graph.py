"""What an ONNX graph takes and gives: the input spec read from the graph, and a feature output
that may be an intermediate tensor (exposed, with the `onnx` library, in a cached copy of the
model whose only output it is: the layers after it are left out).

Used by orchard.pipeline.models for your own models (`--model-path`, `--feature-output`) and for
registered models whose features are an intermediate tensor (VGG16, ResNet50).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.paths import cache_root

if TYPE_CHECKING:  # models.py imports this module
    from orchard.pipeline.models import ModelSpec

log = logging.getLogger(__name__)

ONNX_DTYPES = {2: "uint8", 1: "float32"}  # onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT
LAYOUTS = ("NCHW", "NHWC")


class GraphUnreadable(OrchardError):
    """The file cannot be parsed as an ONNX model."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The graph's one image input: name, layout, dtype, square size in pixels, fixed batch."""

    name: str
    layout: str
    dtype: str
    size: int
    batch: Optional[int]


# (file, sha256, spec asked for) -> the spec fitted to the graph, once per process
_FITTED: Dict[Tuple[str, str, object], "ModelSpec"] = {}


def fit_to_graph(spec: "ModelSpec", path: Path, sha256: str) -> "ModelSpec":
    """`spec` with its input (name, layout, dtype, size, fixed batch) read from the graph at
    `path`, its feature output checked (`spec.output_name`; "" = the graph's first output) and
    exposed when it is an intermediate tensor, and `feature_dim` = that tensor's size per image.

    Raises GraphUnreadable when the file is not an ONNX model, OrchardError when the graph does
    not fit: not one input, input rank not 4, no 3-channel axis, dtype not uint8/float32, no
    fixed square image size, no tensor of that name, or mean/std given for a uint8 input.
    """
    key = (str(path.resolve()), sha256, spec)
    if key not in _FITTED:
        _FITTED[key] = _fit(spec, path, sha256)
    return _FITTED[key]


def runnable_path(spec: "ModelSpec", path: Path, sha256: str) -> Path:
    """The file to run for `spec`: `path`, or its cached copy exposing `spec.output_name`."""
    return exposed_file(path, sha256, spec.output_name) if spec.expose else path


def exposed_file(path: Path, sha256: str, output: str) -> Path:
    """Where the copy of `path` whose only output is `output` is cached."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", output)[:80]
    return cache_root() / "models" / "exposed" / f"{path.stem}.{sha256[:12]}.{safe}.onnx"


def _fit(spec: "ModelSpec", path: Path, sha256: str) -> "ModelSpec":
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as error:  # DecodeError and friends: not a model
        raise GraphUnreadable(f"{type(error).__name__}: {error}") from None
    where = f"model {spec.name!r} ({path})"
    model = with_shapes(model)
    image = read_input(model.graph, where)
    check_scaling(spec, image.dtype, where)
    outputs = [output.name for output in model.graph.output]
    output = spec.output_name or outputs[0]
    expose = output not in outputs
    if expose:
        check_tensor(model.graph, output, where)
        copy = exposed_file(path, sha256, output)
        if not copy.is_file():
            write_exposed(model, image.name, output, copy)
    fitted = dataclasses.replace(
        spec, input_name=image.name, output_name=output, image_size=image.size, layout=image.layout,
        dtype=image.dtype, expose=expose, fixed_batch=image.batch, feature_dim=0,
    )
    dim = static_feature_dim(model, output) or measured_feature_dim(fitted, runnable_path(fitted, path, sha256))
    return dataclasses.replace(fitted, feature_dim=dim)


def read_input(graph, where: str) -> InputSpec:
    """The graph's image input, or OrchardError saying why it is not one orchard can feed."""
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise OrchardError(f"{where} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                           "orchard feeds graphs with one image input")
    value = inputs[0]
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
    shape = "[" + ", ".join(str(d) if d else "?" for d in dims) + "]"
    if len(dims) != 4:
        raise OrchardError(f"{where}: input {value.name!r} has rank {len(dims)} {shape}; orchard feeds "
                           "rank-4 image batches, [N, 3, H, W] (NCHW) or [N, H, W, 3] (NHWC)")
    dtype = ONNX_DTYPES.get(tensor.elem_type)
    if dtype is None:
        raise OrchardError(f"{where}: input {value.name!r} has element type {tensor.elem_type} "
                           "(onnx.TensorProto); orchard feeds uint8 or float32")
    if dims[1] == 3:
        layout, (height, width) = "NCHW", dims[2:]
    elif dims[3] == 3:
        layout, (height, width) = "NHWC", dims[1:3]
    else:
        raise OrchardError(f"{where}: input {value.name!r} {shape} has no 3-channel (RGB) axis at "
                           "position 1 (NCHW) or 3 (NHWC)")
    if not height or height != width:
        raise OrchardError(f"{where}: input {value.name!r} {shape} needs a fixed square image size "
                           "(H = W, both numbers); export the model with one")
    return InputSpec(name=value.name, layout=layout, dtype=dtype, size=height, batch=dims[0])


def check_scaling(spec: "ModelSpec", dtype: str, where: str) -> None:
    """mean/std: for float32 inputs only, 1 or 3 values, std nonzero; else OrchardError."""
    if spec.mean is None and spec.std is None:
        return
    if dtype == "uint8":
        raise OrchardError(f"{where} takes uint8 pixels and scales them inside the graph: "
                           "--mean/--std apply to float32 inputs only")
    for option, values in (("--mean", spec.mean), ("--std", spec.std)):
        if values is not None and len(values) not in (1, 3):
            raise OrchardError(f"{option} takes 1 or 3 values (R,G,B), got {len(values)}")
    if spec.std is not None and any(value == 0 for value in spec.std):
        raise OrchardError(f"--std values must be nonzero, got {list(spec.std)}")


def check_tensor(graph, name: str, where: str) -> None:
    """OrchardError when no node of `graph` produces a tensor `name`, listing some that do."""
    produced: List[str] = [tensor for node in graph.node for tensor in node.output if tensor]
    if name in produced:
        return
    outputs = ", ".join(output.name for output in graph.output)
    last = ", ".join(produced[-8:])
    raise OrchardError(f"{where} has no tensor {name!r} for --feature-output: graph outputs: {outputs}; "
                       f"the last tensors computed: {last}")


def write_exposed(model, input_name: str, output: str, target: Path) -> None:
    """Save the part of `model` from `input_name` to `output` (its only output) at `target`."""
    from onnx import TensorProto, helper
    from onnx.utils import Extractor

    log.info("exposing tensor %s of the model in %s", output, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if output not in {value.name for value in model.graph.value_info}:  # shape inference did not reach it
        model.graph.value_info.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    try:
        part = Extractor(model).extract_model([input_name], [output])
    except Exception as error:
        raise OrchardError(f"could not cut the model at tensor {output!r}: {type(error).__name__}: "
                           f"{error}") from None
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(handle)
    try:
        import onnx

        onnx.save(part, tmp_name)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def with_shapes(model):
    """`model` with ONNX shape inference's value_info added (best effort: else `model`)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes are then measured by running the model
        return model


def static_feature_dim(model, output: str) -> Optional[int]:
    """Floats per image of tensor `output` from the shapes in `model` (see with_shapes), or None
    when they are not all known."""
    for value in list(model.graph.output) + list(model.graph.value_info):
        if value.name == output:
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim][1:]
            if dims and all(d > 0 for d in dims):
                size = 1
                for d in dims:
                    size *= d
                return size
    return None


def measured_feature_dim(spec: "ModelSpec", run_path: Path) -> int:
    """Floats per image of the feature output, from running one black image through the model."""
    import numpy as np
    import onnxruntime as ort

    size = spec.image_size
    shape = (1, 3, size, size) if spec.layout == "NCHW" else (1, size, size, 3)
    session = ort.InferenceSession(str(run_path), providers=["CPUExecutionProvider"])
    features = session.run([spec.output_name], {spec.input_name: np.zeros(shape, dtype=spec.dtype)})[0]
    return int(features[0].size)
