"""What a run costs before its images: the least a PySpark job of orchard's shape costs here.

    python bench/spark_floor.py [--rounds 3]

Issue 15 asks orchard's fixed cost (a run's seconds beyond its images' own work) to be <= 6 s.
This bench times, in fresh processes (start to exit), rounds of:

- `pyspark`: the smallest job of orchard's shape, written the plain way: a SparkSession on
  local[2] (Spark's defaults), 2 rows through a `mapInPandas` that returns 1280 zeros a row, a
  Parquet write, `spark.stop()`. No model, no image: Spark's own floor;
- `pyspark+onnx`: the same job whose Python function also loads the MobileNetV2 ONNX model
  (one ONNX Runtime session a task, 1 thread) and runs it on one blank image a row;
- `orchard-session`: the `pyspark` job in a session from `orchard.spark.session.create_session`
  (orchard's JVM options: C1-only JIT and its class archive, recorded by an untimed first run);
- `orchard run`: the whole pipeline (listing, featurize, PCA, five outputs, a commit) on
  --images images of the sample;
- `daft` (when bench/peers/setup.sh made its environment): bench/peers/daft_job.py on the same
  images.

One untimed run of each comes first; the order rotates from round to round. It prints each
round's seconds and the medians. Measure on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
FLOOR_JOBS = ("pyspark", "pyspark+onnx", "orchard-session")


def floor_job(kind: str, model: Path, output: Path) -> None:
    """Run one floor job in this process and print its phases (start, job + write, stop)."""
    import pandas as pd

    model_path = str(model)
    started = time.perf_counter()
    if kind == "orchard-session":
        from orchard.spark.session import create_session, stop_session

        spark = create_session("floor", "local[2]", class_archive_name="floor")
        stop = stop_session
    else:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master("local[2]").appName("floor").getOrCreate()
        stop = type(spark).stop
    ready = time.perf_counter()

    def featurize(frames):
        import numpy as np

        session = None
        if kind == "pyspark+onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        for frame in frames:
            if session is None:
                features = np.zeros((len(frame), 1280), np.float32)
            else:
                blank = np.zeros((len(frame), 224, 224, 3), np.uint8)
                features = session.run(["features"], {session.get_inputs()[0].name: blank})[0]
            yield pd.DataFrame({"id": frame["id"], "features": list(features)})

    rows = spark.range(2).repartition(2).mapInPandas(featurize, "id long, features array<float>")
    rows.write.mode("overwrite").parquet(str(output))
    written = time.perf_counter()
    stop(spark)
    print(f"FLOOR start={ready - started:.2f} job={written - ready:.2f} stop={time.perf_counter() - written:.2f}")


def tiny_input(sample: Path, images: int, folder: Path) -> Path:
    """The first `images` images of the sample's Training split, in its layout, under `folder`."""
    files = sorted(p for p in (sample / "Training").rglob("*") if p.is_file())[:images]
    for file in files:
        target = folder / file.relative_to(sample)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return folder


def commands(args, tiny: Path, out: Path) -> Dict[str, List[str]]:
    """The timed command of each variant."""
    me = [sys.executable, str(Path(__file__).resolve()), "--model", str(args.model)]
    variants = {kind: [*me, "--job", kind, "--job-output", str(out / kind)] for kind in FLOOR_JOBS}
    variants["orchard run"] = [sys.executable, "-m", "orchard", "run", "--input", str(tiny), "--output",
                               str(out / "orchard"), "--model-path", str(args.model), "--overwrite", "--quiet"]
    daft = args.venvs / "daft" / "bin" / "python"
    if daft.is_file():
        variants["daft"] = [str(daft), str(HERE / "peers" / "daft_job.py"), "--input", str(tiny), "--output",
                            str(out / "daft"), "--model", str(args.model)]
    return variants


def timed(command: List[str]) -> Dict[str, float]:
    """Wall seconds of `command` in a fresh process, and the phases a floor job printed."""
    env = dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
               PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE / "peers")
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{(result.stdout + result.stderr)[-3000:]}")
    phases = {}
    for line in result.stdout.splitlines():
        if line.startswith("FLOOR "):
            phases = {key: float(value) for key, value in (item.split("=") for item in line.split()[1:])}
    return {"wall": wall, **phases}


def print_table(rounds: List[Dict[str, Dict[str, float]]]) -> None:
    print("\n| variant | " + " | ".join(f"round {n}" for n in range(1, len(rounds) + 1))
          + " | median s | start | job + write | stop |")
    print("|---|" + "---:|" * (len(rounds) + 4))
    for variant in rounds[0]:
        walls = [r[variant]["wall"] for r in rounds]
        phases = [statistics.median(r[variant][key] for r in rounds) if "start" in rounds[0][variant] else None
                  for key in ("start", "job", "stop")]
        cells = " | ".join(f"{w:.1f}" for w in walls)
        extra = " | ".join("" if p is None else f"{p:.1f}" for p in phases)
        print(f"| {variant} | {cells} | **{statistics.median(walls):.1f}** | {extra} |")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant (default 3)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    parser.add_argument("--model", type=Path, help="the ONNX file (default: <shared>/models/mobilenet_v2_1.0_224.onnx)")
    parser.add_argument("--images", type=int, default=16, help="images for `orchard run` and Daft (default 16)")
    parser.add_argument("--venvs", type=Path, help="bench/peers/setup.sh's folder (default: its own default)")
    parser.add_argument("--job", choices=FLOOR_JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--job-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.model = (args.model or args.shared / "models" / "mobilenet_v2_1.0_224.onnx").resolve()
    if args.venvs is None:
        from run import venv_root

        args.venvs = venv_root()
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.job:
        floor_job(args.job, args.model, args.job_output)
        return
    with tempfile.TemporaryDirectory(prefix="orchard-floor-") as folder:
        tmp = Path(folder)
        tiny = tiny_input(args.shared / "data" / "fruits-360-sample", args.images, tmp / "input")
        variants = commands(args, tiny, tmp / "out")
        for name, command in variants.items():  # untimed: the OS file cache, orchard's class archives
            timed(command)
        rounds = []
        names = list(variants)
        for number in range(1, args.rounds + 1):
            shift = (number - 1) % len(names)  # the order rotated from round to round
            measured = {name: timed(variants[name]) for name in names[shift:] + names[:shift]}
            rounds.append({name: measured[name] for name in names})
            print(f"round {number}: " + ", ".join(f"{k} {v['wall']:.1f} s" for k, v in rounds[-1].items()),
                  file=sys.stderr, flush=True)
    print_table(rounds)


if __name__ == "__main__":
    main()
