"""The served model: fruit.onnx in an ONNX Runtime session, its classes and metadata, and the
micro-batcher that runs concurrent requests' images through it together."""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from orchard.classify.export import PREFIX, metadata_of, read_metadata
from orchard.classify.names import INPUT_NAME, METRICS_FILE, ONNX_FILE, OUTPUT_NAME
from orchard.errors import OrchardError
from orchard.names import PRECISION_FP32, PRECISION_INT8
from orchard.pipeline.config import check_precision
from orchard.pipeline.models import ModelSpec, onnx_session, sha256_of
from orchard.pipeline.quantize import CALIBRATION_IMAGES, Int8Model, demo_calibration, int8_model


def int8_fruit_model(path: Path) -> Int8Model:
    """fruit.onnx at `path` with its backbone quantized to int8 (its PCA and classifier nodes
    stay float64), calibrated on the packaged demo set; cached like a run's int8 backbone.
    Raises OrchardError."""
    size = int(read_metadata(str(path))["input"].get("size", 224))
    spec = ModelSpec(name="fruit", file_name=path.name, sha256="", url="", input_name=INPUT_NAME,
                     output_name=OUTPUT_NAME, image_size=size, layout="NHWC", dtype="uint8", feature_dim=0,
                     description="an exported fruit classifier")
    return int8_model(spec, path, sha256_of(path), demo_calibration(CALIBRATION_IMAGES), exclude_prefix=PREFIX)


class FruitModel:
    """fruit.onnx of a model folder: `predict` pixels -> probabilities; `classes`, `id` (the
    first 12 hex digits of the file's sha256), `size` (input pixels per side), `info` (for
    GET /v1/model). precision "int8" runs its int8 version (int8_fruit_model). Raises
    OrchardError when the folder has no fruit.onnx or it is not one."""

    def __init__(self, model_dir: Path, threads: int = 1, precision: str = PRECISION_FP32) -> None:
        path = Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise OrchardError(f"no {ONNX_FILE} in {model_dir}: train one with `orchard train RUN --output {model_dir}`")
        int8 = int8_fruit_model(path) if check_precision(precision) == PRECISION_INT8 else None
        try:
            self.session = onnx_session(str(int8.path if int8 else path), threads)
        except Exception as error:  # not ONNX, truncated
            raise OrchardError(f"could not load {path} with ONNX Runtime: {error}") from None
        meta = metadata_of(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.classes: List[str] = list(meta["classes"])
        self.size = int(meta["input"].get("size", 224))
        self.sha256 = sha256_of(path)
        self.id = self.sha256[:12]
        metrics_file = Path(model_dir) / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        self.info: Dict[str, Any] = {
            "id": self.id,
            "sha256": self.sha256,
            "classes": self.classes,
            "input": meta["input"],
            "provenance": meta["provenance"],
            "metrics": {"test": {k: v for k, v in metrics.get("test", {}).items() if k != "confusion"},
                        "rows": metrics.get("rows"), "cross_validation": metrics.get("cross_validation")}
            if metrics else meta["metrics"],
            "precision": precision,
        }
        if int8:
            self.info["int8_sha256"] = int8.sha256

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [N, classes] probabilities of uint8 [N, size, size, 3] pixels."""
        return self.session.run(None, {INPUT_NAME: pixels})[0]

    def warm_up(self) -> None:
        self.predict(np.zeros((1, self.size, self.size, 3), dtype=np.uint8))

    def top(self, probabilities: np.ndarray, k: int) -> List[Tuple[str, float]]:
        """The k most probable (class, probability) of one row, most probable first."""
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.classes[i], float(probabilities[i])) for i in order]


class MicroBatcher:
    """Runs the images of concurrent requests through the model together.

    A request's pixels wait in a queue; one loop takes what is queued (up to `max_batch`,
    never waiting for more: a lone request goes at once) and runs it in one call on a
    dedicated thread, while the next requests queue. max_batch=1: one image per call.
    """

    def __init__(self, model: FruitModel, max_batch: int = 16) -> None:
        self.model = model
        self.max_batch = max(1, max_batch)
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False)

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (float32 [classes]) of one image (uint8 [size, size, 3])."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((pixels, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            waiting = [(pixels, future) for pixels, future in batch if not future.done()]  # timed out: skipped
            if not waiting:
                continue
            try:
                stacked = np.stack([pixels for pixels, _ in waiting])
                probabilities = await loop.run_in_executor(self._executor, self.model.predict, stacked)
            except Exception as error:  # handed to each request (a 500 without details)
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), row in zip(waiting, probabilities):
                if not future.done():
                    future.set_result(row)
