"""The int8 path: a model quantized with ONNX Runtime static quantization, calibrated on images
preprocessed exactly as orchard preprocesses them, cached on disk.

Settings (QuantSettings): QOperator format (QLinearConv & co.: 2.1x the fp32 images/s on this
machine's AVX-512 VNNI cores, where the QDQ format was no faster than fp32), per-channel weights,
uint8 activations and int8 weights (what VNNI multiplies), MinMax calibration, and `reduce_range`
(7-bit weights) on x86 CPUs without VNNI (AVX2 or AVX-512 only), as ONNX Runtime recommends there.
Without VNNI the int8 features are further from fp32's (see README, int8).

The quantized file is cached under `cache_root()/models/int8/`, named by a key over (the fp32
file's sha256, the calibration set's digest, the settings): the same three give the same file,
any other calibration set or setting another one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from orchard.errors import OrchardError
from orchard.paths import cache_root
from orchard.pipeline.inference import to_model_input
from orchard.pipeline.load import Listing, file_uri
from orchard.pipeline.models import ModelSpec, sha256_of
from orchard.pipeline.preprocess import is_image_name, try_preprocess
from orchard.storage.fs import Storage

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300  # images a calibration set holds at most
DEMO_DIR = Path(__file__).resolve().parents[1] / "demo" / "fruits-360"  # the packaged demo set
CPUINFO = Path("/proc/cpuinfo")


def reduce_range_recommended(cpuinfo: Path = CPUINFO) -> bool:
    """True on an x86 CPU with AVX2 or AVX-512 but without VNNI (ONNX Runtime's advice: 7-bit
    weights there, as the 8-bit products of its u8s8 kernels can saturate; measured on an AVX2
    EPYC: features' cosine to fp32 0.75 -> 0.89 on average); False with VNNI, elsewhere, or
    when /proc/cpuinfo cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    return bool({"avx2", "avx512f"} & flags) and not ({"avx512_vnni", "avx_vnni"} & flags)


@dataclass(frozen=True)
class QuantSettings:
    """How a model is quantized (all of it goes into the cache key)."""

    format: str = "QOperator"  # or "QDQ"
    per_channel: bool = True
    activations: str = "uint8"
    weights: str = "int8"
    reduce_range: bool = False
    method: str = "MinMax"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def default_settings() -> QuantSettings:
    """The settings for this machine (reduce_range from its CPU flags)."""
    return QuantSettings(reduce_range=reduce_range_recommended())


@dataclass(frozen=True)
class Calibration:
    """Images (encoded bytes) a model is calibrated on; `digest` names the set (sha256 over
    the images' own sha256s, in order); `source` says where they come from, for records."""

    images: Tuple[bytes, ...]
    source: str
    digest: str
    paths: Tuple[str, ...] = ()  # the images' paths relative to the input root, when from a listing


def calibration_of(images: Iterable[bytes], source: str, paths: Sequence[str] = ()) -> Calibration:
    """A Calibration of `images` (encoded image files, in a stable order; `paths` their names)."""
    kept = tuple(images)
    digest = hashlib.sha256()
    for data in kept:
        digest.update(hashlib.sha256(data).digest())
    return Calibration(images=kept, source=source, digest=digest.hexdigest(), paths=tuple(paths))


def spread(items: Sequence, count: int) -> List:
    """At most `count` of `items`, evenly spaced (first one included), in order."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def demo_calibration(count: int = CALIBRATION_IMAGES) -> Calibration:
    """The packaged demo set (orchard/demo, 160 images of 8 fruits) as a calibration set."""
    files = sorted(path for path in DEMO_DIR.rglob("*") if path.is_file() and is_image_name(path.name))
    chosen = spread(files, count)
    return calibration_of((path.read_bytes() for path in chosen), f"orchard demo set ({len(chosen)} images)")


def spread_paths(listing: Listing, count: int) -> List[str]:
    """At most `count` of the listing's readable paths, evenly spaced over their sorted order
    (as `spread`), picked in Arrow: no Python list of every path."""
    import pyarrow.compute as pc

    paths = listing.readable_table.column("path")
    order = pc.sort_indices(paths)
    picks = spread(range(len(order)), count)
    return paths.take(order.take(picks)).to_pylist()


def listing_calibration(spark, listing: Listing, count: int = CALIBRATION_IMAGES,
                        paths: Optional[Sequence[str]] = None) -> Calibration:
    """`count` of the listed images, evenly spread over their sorted paths (so over the class
    folders), or the given `paths` (relative: e.g. the ones an earlier run of the same output
    was calibrated on, so that an update quantizes the same way), read on the driver (local,
    HDFS or S3, as Spark's Hadoop settings say); the demo set when no image can be read."""
    chosen = list(paths) if paths else spread_paths(listing, count)
    storage = Storage(spark=spark)
    images, names = [], []
    for relative in chosen:
        try:
            images.append(storage.read_bytes(file_uri(listing.root_uri, relative)))
            names.append(relative)
        except Exception as error:  # unreadable: it becomes an error row of the run, not a calibration image
            log.warning("calibration: could not read %s: %s", relative, error)
    if not images:
        return demo_calibration(count)
    return calibration_of(images, f"the input ({len(images)} of {listing.n_readable} images, evenly spread)", names)


@dataclass(frozen=True)
class Int8Model:
    """A quantized model file and what made it."""

    path: Path
    sha256: str
    fp32_sha256: str
    calibration: Calibration
    calibration_images: int  # images that decoded and were fed
    settings: QuantSettings

    def record(self) -> Dict[str, Any]:
        """What run.json's model record says of it."""
        return {
            "int8_sha256": self.sha256,
            "int8_file": str(self.path),
            "quantization": {
                "tool": "onnxruntime.quantization.quantize_static",
                **self.settings.to_dict(),
                "calibration": self.calibration.source,
                "calibration_images": self.calibration_images,
                "calibration_digest": self.calibration.digest,
            },
        }


def precision_record(precision: str, int8: Optional[Int8Model]) -> Dict[str, Any]:
    """run.json's model record entries of a run's precision: {"precision"}, and the int8
    file's sha256, path and quantization settings when there is one."""
    return {"precision": precision, **(int8.record() if int8 else {})}


def cache_key(fp32_sha256: str, calibration_digest: str, settings: QuantSettings) -> str:
    """16 hex digits naming (fp32 file, calibration set, settings)."""
    text = json.dumps({"model": fp32_sha256, "calibration": calibration_digest, "settings": settings.to_dict()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def int8_dir() -> Path:
    return cache_root() / "models" / "int8"


def int8_model(spec: ModelSpec, path: Path, sha256: str, calibration: Calibration,
               settings: Optional[QuantSettings] = None, exclude_prefix: Optional[str] = None) -> Int8Model:
    """The int8 version of the model file `path` (sha256 `sha256`), its features output
    `spec.output_name` the graph's only output, quantized on `calibration` (each image
    preprocessed for `spec`: size, layout, dtype, mean/std) unless cached already; nodes named
    `exclude_prefix...` stay float (see quantize_file).

    Raises OrchardError when no calibration image decodes, or quantization fails.
    """
    settings = settings or default_settings()
    key = cache_key(sha256, calibration.digest, settings)
    target = int8_dir() / f"{path.stem}.{sha256[:12]}.{key}.int8.onnx"
    facts = target.with_suffix(".json")  # what made it: the images fed
    if not target.is_file() or not facts.is_file():
        inputs = feeds(calibration, spec)
        if not inputs:
            raise OrchardError(f"no calibration image could be decoded ({len(calibration.images)} given, "
                               f"{calibration.source}): int8 needs a few images to calibrate on")
        log.info("quantizing %s to int8 on %d images (%s) -> %s", path.name, len(inputs), calibration.source, target)
        quantize_file(path, target, inputs, settings, keep_output=spec.output_name, exclude_prefix=exclude_prefix)
        _write_atomically(facts, json.dumps({"calibration_images": len(inputs), "calibration": calibration.source}))
    used = int(json.loads(facts.read_text())["calibration_images"])
    return Int8Model(path=target, sha256=sha256_of(target), fp32_sha256=sha256, calibration=calibration,
                     calibration_images=used, settings=settings)


def _write_atomically(target: Path, text: str) -> None:
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(name, target)


def feeds(calibration: Calibration, spec: ModelSpec) -> List[Dict[str, Any]]:
    """One model input per decodable calibration image: {input name: [1, ...] batch}, made
    as orchard's workers make them (preprocess, then inference.to_model_input)."""
    inputs = []
    for data in calibration.images:
        pixels, _ = try_preprocess(data, spec.image_size)
        if pixels is not None:
            inputs.append({spec.input_name: to_model_input([pixels.array], spec)})
    return inputs


def quantize_file(source: Path, target: Path, inputs: List[Dict[str, Any]], settings: QuantSettings,
                  keep_output: Optional[str] = None, exclude_prefix: Optional[str] = None) -> None:
    """Write the statically quantized `source` to `target` (atomically), calibrated on `inputs`.

    keep_output: cut the graph to that one output first (a backbone's features: its ImageNet
    head is not quantized for nothing). exclude_prefix: nodes whose names start with it stay
    float (the classifier appended to an exported fruit model). Raises OrchardError.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(inputs)

        def get_next(self):
            return next(self.remaining, None)

    target.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(source))
    outputs = [output.name for output in model.graph.output]
    if keep_output and outputs != [keep_output]:
        from onnx.utils import Extractor

        model = Extractor(model).extract_model([i.name for i in model.graph.input], [keep_output])
    excluded = [node.name for node in model.graph.node if exclude_prefix and node.name.startswith(exclude_prefix)]
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as work:
        plain = Path(work) / "float.onnx"
        onnx.save(model, str(plain))
        quantized = Path(work) / "int8.onnx"
        try:
            quiet = _Quiet()
            logging.getLogger().addFilter(quiet)  # its advice to pre-process: measured, no faster here
            quantize_static(str(plain), str(quantized), Reader(), quant_format=getattr(QuantFormat, settings.format),
                            per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                            activation_type=types[settings.activations], weight_type=types[settings.weights],
                            calibrate_method=getattr(CalibrationMethod, settings.method),
                            nodes_to_exclude=excluded)
        except Exception as error:
            raise OrchardError(f"could not quantize {source} to int8: {type(error).__name__}: {error}") from None
        finally:
            logging.getLogger().removeFilter(quiet)
        result = onnx.load(str(quantized))
        del result.metadata_props[:]
        result.metadata_props.extend(model.metadata_props)  # an exported model's classes & co.
        onnx.save(result, str(quantized))
        os.replace(quantized, target)


class _Quiet(logging.Filter):
    """Drops ONNX Runtime's "Please consider to run pre-processing" advice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
