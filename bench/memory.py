"""Driver memory against the input's file count: the listing and an update's bookkeeping.

    python bench/memory.py [--shared ../shared] [--scales 1,10,100] [--work DIR]

For each scale, makes a copy of fruits-360-bench with that many times its files (hard links:
no data copied), then in a fresh process starts Spark (local[2]), runs what an `--update` does
before featurizing: `load.list_input` (today's listing, Python lists of paths), then
`grow.listed_files` + `grow.compare` + `grow.to_do` against an index of the 1x files (Spark
joins, nothing per file on the driver), and prints the peak RSS of the driver's Python process
(VmHWM) and of its JVM (VmHWM), plus the Python RSS growth each step caused. Listing-only: no
image is featurized, so no Python worker runs (their memory is bounded per Arrow batch, not by
the file count). Target (issue 12): driver Python RSS grows by < 100 MB from 1x to 100x.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r'''
import json, os, sys
from orchard.pipeline.load import list_input
from orchard.pipeline.grow import listed_files, compare, to_do
from orchard.spark.session import create_session

def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

data, base = sys.argv[1], sys.argv[2]
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
start = rss(os.getpid())
listing = list_input(spark, data)
after_list = rss(os.getpid())
n = len(listing.images)
del listing
listed = listed_files(spark, "file:" + data)
known = listed_files(spark, "file:" + base)
changes = compare(listed, known)
todo = to_do(listed, known).count()
after_plan = rss(os.getpid())
print(json.dumps({"files": n, "python_start_mb": start, "python_after_list_input_mb": after_list,
                  "python_after_spark_plan_mb": after_plan, "python_peak_mb": hwm(os.getpid()),
                  "jvm_peak_mb": hwm(jvm_pid), "todo": todo, "changes": changes.to_dict()}))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared data/model folder")
    parser.add_argument("--scales", default="1,10,100", help="comma-separated multiples of the bench set")
    parser.add_argument("--work", help="where the copies go (default: a temporary folder)")
    args = parser.parse_args()
    bench = Path(args.shared) / "data" / "fruits-360-bench"
    work = Path(args.work or tempfile.mkdtemp(prefix="orchard-memory-"))
    base = work / "x1"
    make_copy(bench, base, 1)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SPARK_LOCAL_IP": "127.0.0.1"}
    print("| scale | files | driver Python peak MB | Python growth by list_input MB | by Spark plan MB | driver JVM peak MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for scale in [int(s) for s in args.scales.split(",")]:
        data = work / f"x{scale}"
        make_copy(bench, data, scale)
        out = subprocess.run([sys.executable, "-c", PROBE, str(data), str(base)], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"| {scale}x | {r['files']} | {r['python_peak_mb']} | "
              f"{r['python_after_list_input_mb'] - r['python_start_mb']} | "
              f"{r['python_after_spark_plan_mb'] - r['python_after_list_input_mb']} | {r['jvm_peak_mb']} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
