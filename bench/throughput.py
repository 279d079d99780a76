"""Throughput of `orchard run` against a bare ONNX Runtime loop, on the same images, in one run.

    python bench/throughput.py [--shared ../shared] [--repeat 1] [--threads 2]

Runs `orchard run` (a fresh process each time, so JVM start-up counts) on the sample
(1,920 images) and on the bench set (6,480 images), then derives
    marginal images/s = (n_bench - n_sample) / (t_bench - t_sample)
    fixed start-up s  = t_sample - n_sample / marginal
and times a bare loop (read + decode + resize + infer, batches of --batch-size, ONNX Runtime
with --threads intra-op threads) over the bench images. One untimed `orchard run` comes first
(it records the JVM class archive if there is none yet, see orchard.classarchive, and fills
the OS file cache, as the bare loop's run does). Prints a table; `--json` adds raw data.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from orchard.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def image_files(root: Path) -> List[Path]:
    from orchard.preprocessing import is_image_name

    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))


def bare_loop(files: List[Path], model_file: Path, threads: int, batch_size: int) -> float:
    """Seconds for read + preprocess + inference of every file, no Spark, one process."""
    import numpy as np
    import onnxruntime as ort

    from orchard.models import get_spec
    from orchard.preprocessing import preprocess

    spec = get_spec("mobilenet_v2")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    session.run(None, {spec.input_name: np.zeros((1, 224, 224, 3), np.uint8)})  # warm-up
    started = time.perf_counter()
    for start in range(0, len(files), batch_size):
        batch = np.stack([preprocess(f.read_bytes()).array for f in files[start : start + batch_size]])
        session.run([spec.output_name], {spec.input_name: batch})
    return time.perf_counter() - started


def orchard_run(dataset: Path, model_file: Path, output: Path, extra: List[str]) -> Dict:
    """Wall seconds of one `orchard run` in a fresh process, and its run.json."""
    command = [sys.executable, "-m", "orchard", "run", "--input", str(dataset), "--output", str(output),
               "--model-path", str(model_file), "--overwrite", *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"orchard run failed:\n{result.stderr[-3000:]}")
    record = json.loads((output / "run.json").read_text())
    return {"wall": wall, "images": record["counts"]["featurized"], "stages": record["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the bare loop")
    parser.add_argument("--batch-size", type=int, default=RunConfig.batch_size,
                        help="images per inference call of the bare loop (default: orchard's)")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements")
    parser.add_argument("run_args", nargs="*", help="extra `orchard run` options, after --")
    args = parser.parse_args()

    sample = args.shared / "data" / "fruits-360-sample"
    bench = args.shared / "data" / "fruits-360-bench"
    model_file = args.shared / "models" / "mobilenet_v2_1.0_224.onnx"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    bench_files = image_files(bench)
    bare = min(bare_loop(bench_files, model_file, args.threads, args.batch_size) for _ in range(args.repeat))
    bare_rate = len(bench_files) / bare

    with tempfile.TemporaryDirectory(prefix="orchard-bench-") as tmp:
        # not counted: records the JVM class archive on a first use, fills the OS file cache
        orchard_run(sample, model_file, Path(tmp) / "warm-up", args.run_args)
        runs = {}
        for name, dataset in (("sample", sample), ("bench", bench)):
            trials = [orchard_run(dataset, model_file, Path(tmp) / name, args.run_args) for _ in range(args.repeat)]
            runs[name] = {**min(trials, key=lambda r: r["wall"]), "walls": [round(t["wall"], 2) for t in trials]}
    n_sample, n_bench = runs["sample"]["images"], runs["bench"]["images"]
    t_sample, t_bench = runs["sample"]["wall"], runs["bench"]["wall"]
    marginal = (n_bench - n_sample) / (t_bench - t_sample)
    fixed = t_sample - n_sample / marginal

    rows = [
        ("bare ONNX Runtime loop (bench)", f"{len(bench_files)}", f"{bare:.1f}", f"{bare_rate:.1f}"),
        ("orchard run, sample", f"{n_sample}", f"{t_sample:.1f}", f"{n_sample / t_sample:.1f}"),
        ("orchard run, bench", f"{n_bench}", f"{t_bench:.1f}", f"{n_bench / t_bench:.1f}"),
    ]
    print(f"{'measurement':34} {'images':>7} {'seconds':>8} {'images/s':>9}")
    for row in rows:
        print(f"{row[0]:34} {row[1]:>7} {row[2]:>8} {row[3]:>9}")
    print(f"{'orchard marginal rate':34} {'':>7} {'':>8} {marginal:>9.1f}")
    print(f"marginal / bare loop = {marginal / bare_rate:.2f}   (target >= 0.80)")
    print(f"fixed start-up cost  = {fixed:.1f} s   (target < 15 s)")
    if args.repeat > 1:
        medians = {name: statistics.median(runs[name]["walls"]) for name in runs}
        median_marginal = (n_bench - n_sample) / (medians["bench"] - medians["sample"])
        print(f"with median runs instead of best: marginal {median_marginal:.1f} img/s "
              f"({median_marginal / bare_rate:.2f} of the bare loop), fixed "
              f"{medians['sample'] - n_sample / median_marginal:.1f} s; all runs (s): "
              + "; ".join(f"{name} {runs[name]['walls']}" for name in runs))
    print(f"cores: {os.cpu_count()}, bare loop threads: {args.threads}, batch size: {args.batch_size}, "
          f"best of {args.repeat}")
    for name in ("sample", "bench"):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in runs[name]["stages"].items())
        print(f"stages ({name}, s): {stages}")
    if args.json:
        print(json.dumps({"bare_seconds": bare, "bare_images": len(bench_files), "runs": runs,
                          "marginal": marginal, "fixed": fixed}, indent=2))


if __name__ == "__main__":
    main()
