"""orchard run's featurize job done by Daft, as Daft's docs recommend for batch inference.

    <daft venv>/bin/python bench/peers/daft_job.py --input ROOT --output DIR --model FILE

The images of ROOT/<Split>/<Class>/ are listed, their bytes read by Daft (`download()`), and a
stateful class UDF (`@daft.cls`, one ONNX Runtime session per instance, 1 intra-op thread)
decodes them with orchard's preprocessing (common.preprocess) and runs MobileNetV2 on batches
of --batch-size (`@daft.method.batch`), --concurrency instances in their own processes. The
result (path, label, features: 1280 float32) is written as Parquet under DIR. Prints a last line
`PEER daft images=N total=S` (seconds from the start of the script's work, imports excluded).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from common import FEATURE_DIM, count_rows, featurize, label_of, list_images, onnx_session, timing_line


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="dataset root: <root>/<Split>/<Class>/<image>")
    parser.add_argument("--output", type=Path, required=True, help="output folder (replaced)")
    parser.add_argument("--model", type=Path, required=True, help="orchard's mobilenet_v2 ONNX file")
    parser.add_argument("--batch-size", type=int, default=8, help="images per inference call (default 8)")
    parser.add_argument("--concurrency", type=int, default=2, help="UDF instances, one process each (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per instance")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import daft
    from daft import DataType

    started = time.perf_counter()

    @daft.cls(max_concurrency=args.concurrency, use_process=True, cpus=1)
    class Featurizer:
        """One ONNX Runtime session per UDF instance (created once, in the instance's process)."""

        def __init__(self, model_file: str, threads: int):
            self.session = onnx_session(model_file, threads)

        @daft.method.batch(return_dtype=DataType.embedding(DataType.float32(), FEATURE_DIM),
                           batch_size=args.batch_size)
        def features(self, content: daft.Series) -> np.ndarray:
            return featurize(self.session, content.to_pylist())

    files = list_images(args.input)
    df = daft.from_pydict({"file": [full for full, _ in files], "path": [rel for _, rel in files],
                           "label": [label_of(rel) for _, rel in files]})
    df = df.with_column("content", daft.col("file").download())
    featurizer = Featurizer(str(args.model), args.threads)
    df = df.select("path", "label", featurizer.features(daft.col("content")).alias("features"))
    shutil.rmtree(args.output, ignore_errors=True)
    written = df.write_parquet(str(args.output)).to_pydict()
    images = count_rows(args.output)
    print(f"daft {daft.__version__}: {len(written.get('path', []))} Parquet file(s)")
    print(timing_line("daft", images, {"total": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()
