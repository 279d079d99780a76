"""Runs that grow, timed: a full run, an update with 10% new images, an update with nothing new.

    python bench/incremental.py [--shared ../shared] [--work DIR] [--master local[*]]

Copies fruits-360-bench to a scratch folder, runs `orchard run` there (a fresh process each time,
so JVM start-up counts), then copies 10% more images in (sample images under new names, in a new
class folder per class) and runs `--update`, then `--update` again with nothing new. Prints
seconds and images featurized for each (from run.json's history), then times a full run on
fruits-360-sample to get the fixed start-up cost in the same session (fixed = t_sample -
n_sample / marginal, marginal = (n_bench - n_sample) / (t_bench - t_sample), as bench/throughput.py). Targets (issue 12): the 10%
update takes <= 40% of the full run's time; the empty update <= the fixed start-up cost + 5 s;
both featurize exactly the new images.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def orchard_run(data: Path, output: Path, model: Path, master: str, *options: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}
    command = [sys.executable, "-m", "orchard", "run", "--input", str(data), "--output", str(output),
               "--model-path", str(model), "--master", master, *options]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def add_new_images(sample: Path, data: Path, count: int) -> int:
    """Copy `count` sample images into `data` under new names; how many were copied."""
    images = sorted(p for p in sample.rglob("*.jpg"))[:count]
    for i, image in enumerate(images):
        target = data / "Training" / image.parent.name / f"new_{i:05d}_{image.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    return len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared data/model folder")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--master", default="local[*]", help="Spark master of the runs")
    args = parser.parse_args()
    shared = Path(args.shared)
    model = shared / "models" / "mobilenet_v2_1.0_224.onnx"
    work = Path(args.work or tempfile.mkdtemp(prefix="orchard-incremental-"))
    data, output = work / "in", work / "out"
    shutil.copytree(shared / "data" / "fruits-360-bench", data)
    n_full = sum(1 for p in data.rglob("*.jpg"))
    rows = [("full run", orchard_run(data, output, model, args.master), n_full)]
    n_new = add_new_images(shared / "data" / "fruits-360-sample", data, n_full // 10)
    rows.append((f"update, +{n_new} new (10%)", orchard_run(data, output, model, args.master, "--update"), n_new))
    rows.append(("update, nothing new", orchard_run(data, output, model, args.master, "--update"), 0))
    history = json.loads((output / "run.json").read_text())["history"]
    sample = shared / "data" / "fruits-360-sample"
    n_sample = sum(1 for p in sample.rglob("*.jpg"))
    t_sample = orchard_run(sample, work / "sample-out", model, args.master)
    marginal = (n_full - n_sample) / max(1e-9, rows[0][1] - t_sample)
    fixed = t_sample - n_sample / marginal
    print("| run | seconds | images featurized | expected | share of full run |")
    print("|---|---:|---:|---:|---:|")
    for (name, seconds, expected), entry in zip(rows, history):
        print(f"| {name} | {seconds:.1f} | {entry['featurized_now']} | {expected} | {seconds / rows[0][1]:.0%} |")
    print(f"\nfixed start-up cost, same session: {fixed:.1f} s (a full run on the sample, {n_sample} images, "
          f"{t_sample:.1f} s; marginal {marginal:.0f} images/s); the empty update took {rows[2][1]:.1f} s = "
          f"fixed + {rows[2][1] - fixed:.1f} s (target <= fixed + 5 s)")
    print(f"10% update / full run = {rows[1][1] / rows[0][1]:.2f} (target <= 0.40)")
    startup = json.loads((output / "run.json").read_text())["seconds"]
    print(f"\nlast run's stages (s): {json.dumps(startup)}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
