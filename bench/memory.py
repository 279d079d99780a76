"""Memory against the input's file count: the driver (Python, JVM) and the Python workers.

    python bench/memory.py [--shared ../shared] [--scales 1,10,100] [--run-scales 1,10] [--work DIR]

For each scale, makes a copy of fruits-360-bench with that many times its files (hard links: no
data copied). Then, per scale:

* listing-only (every scale): in a fresh process, starts Spark (local[2]) and does what a run
  does before featurizing: `load.list_input` (the listing, Arrow columns), `grow.listed_files`,
  and an `--update`'s bookkeeping against an index of the 1x files (`grow.compare`,
  `grow.to_do`: Spark joins); prints the driver Python process's RSS growth and peak (VmHWM)
  and the JVM's peak;
* an `orchard run` (the --run-scales; whole, or its first --run-seconds): polls /proc every
  0.2 s for the peak RSS of the driver's Python process, its JVM, and each Python worker
  (`pyspark.daemon` and its forks).

Targets (issue 12): driver Python RSS grows by < 100 MB from 1x to 100x; worker RSS flat within 20%.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]

PROBE = r'''
import json, os, sys
from orchard.pipeline.load import list_input
from orchard.pipeline.grow import listed_files, compare, to_do

def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024

data, base = sys.argv[1], sys.argv[2]
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
me = os.getpid()
start = status(me, "VmRSS")
listing = list_input(spark, data)
after_list = status(me, "VmRSS")
listed = listed_files(spark, listing)
known = listed_files(spark, list_input(spark, base))
changes = compare(listed, known)
todo = to_do(listed, known).count()
after_plan = status(me, "VmRSS")
print(json.dumps({"files": listing.n_images, "python_start_mb": start, "python_after_list_input_mb": after_list,
                  "python_after_spark_plan_mb": after_plan, "python_peak_mb": status(me, "VmHWM"),
                  "jvm_peak_mb": status(jvm_pid, "VmHWM"), "todo": todo, "changes": changes.to_dict()}))
'''


def make_copy(bench: Path, target: Path, scale: int) -> None:
    """`target` holds `scale` hard-linked copies of every file of `bench` (copy i in class folder + `_i`)."""
    if target.exists():
        return
    for image in bench.rglob("*.jpg"):
        for i in range(scale):
            folder = target / image.parent.parent.name / f"{image.parent.name}_{i}"
            folder.mkdir(parents=True, exist_ok=True)
            os.link(image, folder / image.name)


def _status_mb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> List[int]:
    """Every process below `pid` (children, their children...), from /proc."""
    parents: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, of in parents.items() if of == parent]
        found += children
        frontier += children
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as line:
            return line.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def measure_run(data: Path, output: Path, model: Path, env: Dict[str, str], seconds: float = 0) -> Dict[str, int]:
    """Peak RSS (MB) of an `orchard run`'s driver Python, JVM and Python workers: the whole
    run, or its first `seconds` (then the run is stopped: its process group is killed)."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "orchard", "run", "--input", str(data), "--output", str(output),
               "--model-path", str(model), "--master", "local[2]", "--quiet"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    peaks = {"driver_python": 0, "jvm": 0, "worker": 0}
    started = time.monotonic()
    while process.poll() is None:
        if seconds and time.monotonic() - started > seconds:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return peaks
        peaks["driver_python"] = max(peaks["driver_python"], _status_mb(process.pid, "VmHWM"))
        for pid in _descendants(process.pid):
            line = _cmdline(pid)
            if "java" in line.split(" ")[0]:
                peaks["jvm"] = max(peaks["jvm"], _status_mb(pid, "VmHWM"))
            elif "pyspark.daemon" in line or "pyspark/daemon" in line:
                peaks["worker"] = max(peaks["worker"], _status_mb(pid, "VmRSS"))
        time.sleep(0.2)
    if process.returncode != 0:
        raise SystemExit(f"orchard run failed on {data} (exit {process.returncode})")
    return peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared data/model folder")
    parser.add_argument("--scales", default="1,10,100", help="comma-separated multiples of the bench set (listing)")
    parser.add_argument("--run-scales", default="1,10",
                        help="the scales also featurized by a whole `orchard run` (worker memory); '' for none")
    parser.add_argument("--run-seconds", type=float, default=0,
                        help="measure only the first SECONDS of each run (then stop it), e.g. so that 10x "
                             "(64,800 images) takes as long as 1x; 0: whole runs")
    parser.add_argument("--work", help="where the copies go (default: a temporary folder)")
    args = parser.parse_args()
    shared = Path(args.shared)
    bench = shared / "data" / "fruits-360-bench"
    model = shared / "models" / "mobilenet_v2_1.0_224.onnx"
    work = Path(args.work or tempfile.mkdtemp(prefix="orchard-memory-"))
    base = work / "x1"
    make_copy(bench, base, 1)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}
    print("listing and an update's bookkeeping (no featurizing):")
    print("| scale | files | driver Python peak MB | Python growth by list_input MB | by Spark bookkeeping MB "
          "| driver JVM peak MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for scale in [int(s) for s in args.scales.split(",") if s]:
        data = work / f"x{scale}"
        make_copy(bench, data, scale)
        out = subprocess.run([sys.executable, "-c", PROBE, str(data), str(base)], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"| {scale}x | {r['files']} | {r['python_peak_mb']} | "
              f"{r['python_after_list_input_mb'] - r['python_start_mb']} | "
              f"{r['python_after_spark_plan_mb'] - r['python_after_list_input_mb']} | {r['jvm_peak_mb']} |",
              flush=True)
    run_scales = [int(s) for s in args.run_scales.split(",") if s]
    if run_scales:
        span = f"its first {args.run_seconds:.0f} s" if args.run_seconds else "whole runs"
        print(f"\n`orchard run` (local[2]), peak RSS ({span}):")
        print("| scale | files | driver Python MB | driver JVM MB | largest Python worker MB |")
        print("|---:|---:|---:|---:|---:|")
    for scale in run_scales:
        data = work / f"x{scale}"
        make_copy(bench, data, scale)
        peaks = measure_run(data, work / f"out-x{scale}", model, env, args.run_seconds)
        files = sum(1 for _ in data.rglob("*.jpg"))
        print(f"| {scale}x | {files} | {peaks['driver_python']} | {peaks['jvm']} | {peaks['worker']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
