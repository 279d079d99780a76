"""orchard run's featurize job done by Ray Data, as Ray's docs recommend for CPU batch inference.

    <ray venv>/bin/python bench/peers/ray_job.py --input ROOT --output DIR --model FILE

The images of ROOT/<Split>/<Class>/ are listed and read with `ray.data.read_binary_files`;
`map_batches` with a callable class on a fixed actor pool (`ActorPoolStrategy(size=2)`, 1 CPU
each; one ONNX Runtime session per actor, 1 intra-op thread) decodes them with orchard's
preprocessing (common.preprocess) and runs MobileNetV2 on batches of --batch-size. The result
(path, label, features: 1280 float32) is written with `write_parquet` under DIR. Prints a last
line `PEER ray images=N total=S` (seconds from the start of the script's work, imports excluded).
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Dict

import numpy as np

from common import count_rows, featurize, label_of, list_images, onnx_session, timing_line


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="dataset root: <root>/<Split>/<Class>/<image>")
    parser.add_argument("--output", type=Path, required=True, help="output folder (replaced)")
    parser.add_argument("--model", type=Path, required=True, help="orchard's mobilenet_v2 ONNX file")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inference call (default 8)")
    parser.add_argument("--concurrency", type=int, default=2, help="actors in the pool, 1 CPU each (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per actor")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs given to ray.init (default: all)")
    return parser.parse_args()


class Featurizer:
    """The callable class of map_batches: one ONNX Runtime session per actor."""

    def __init__(self, model_file: str, threads: int, root: str):
        self.session = onnx_session(model_file, threads)
        self.root = root

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        # local paths come back as given or without their leading '/', depending on the filesystem
        relative = [os.path.relpath(p if p.startswith("/") else "/" + p, self.root) for p in batch["path"]]
        return {"path": np.array(relative, dtype=object),
                "label": np.array([label_of(r) for r in relative], dtype=object),
                "features": featurize(self.session, list(batch["bytes"]))}


def main() -> None:
    args = parse_args()
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    files = [full for full, _ in list_images(args.input)]
    root = str(args.input.resolve())
    # the actors hold all the CPUs Ray counts: reading and writing (light, I/O) take none, else
    # their tasks wait for a CPU forever (seen with Ray 2.60 on 2 cores)
    dataset = ray.data.read_binary_files(files, include_paths=True, num_cpus=0)
    features = dataset.map_batches(
        Featurizer, fn_constructor_args=(str(args.model), args.threads, root),
        compute=ray.data.ActorPoolStrategy(size=args.concurrency), num_cpus=1, batch_size=args.batch_size,
    )
    shutil.rmtree(args.output, ignore_errors=True)
    features.write_parquet(str(args.output), ray_remote_args={"num_cpus": 0})
    images = count_rows(args.output)
    ray.shutdown()
    print(f"ray {ray.__version__}")
    print(timing_line("ray", images, {"total": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
