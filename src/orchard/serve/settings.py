"""Settings of `orchard serve` (no web framework imported: the CLI reads them cheaply)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

SETTINGS_ENV = "ORCHARD_SERVE_SETTINGS"  # JSON ServeSettings, for uvicorn's worker processes


@dataclass
class ServeSettings:
    """How the service runs. Sizes in bytes, times in seconds."""

    model_dir: str
    threshold: float = 0.5  # below this confidence the answer says it is not sure
    top_k: int = 3
    max_body_bytes: int = 10 * 1024 * 1024  # larger uploads: 413
    request_timeout_s: float = 30.0  # reading the upload + the answer; longer: 408 / 503
    max_batch: int = 16  # images of concurrent requests run together (1: no micro-batching)
    threads: int = 0  # ONNX Runtime intra-op threads per worker (0: the cores / workers)
    workers: int = 1
    precision: str = "fp32"  # or "int8": the backbone quantized (orchard.serve.model.int8_fruit_model)

    def onnx_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))


def settings_json(settings: ServeSettings) -> str:
    """The settings as JSON, for $SETTINGS_ENV."""
    return json.dumps(asdict(settings))
