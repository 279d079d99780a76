"""Throughput of `orchard run` against a bare ONNX Runtime loop, on the same images, in one run.

    python bench/throughput.py [--shared ../shared] [--repeat 3] [--threads 2] [--batch-size 8] [--no-int8]

Each round times, back to back: a bare loop (read + decode + resize + infer of the bench
images, batches of --batch-size, ONNX Runtime with --threads intra-op threads, no Spark), then
`orchard run` (a fresh process, so JVM start-up counts) on the sample (1,920 images) and on the
bench set (6,480 images). From each round:
    marginal images/s = (n_bench - n_sample) / (t_bench - t_sample)
    fixed start-up s  = t_sample - n_sample / marginal
    ratio             = marginal / bare loop images/s
    beyond the workers = wall - (decode + inference seconds of run.json) / cores: the run's time
                        not spent on the images' own work, whatever the cores' speed that minute
With int8 (the default; --no-int8 leaves it out), each round also times the bare loop with the
int8 model (orchard.pipeline.quantize, calibrated as `orchard run --precision int8` calibrates on
the bench set) and `orchard run --precision int8` on both sets, right after the fp32 ones:
    int8 bare / fp32 bare            the bare loops' speed ratio
    int8 marginal / int8 bare loop   orchard's int8 rate against its own bare loop
The machine's speed drifts by 10-20% over minutes, so the ratio is taken within a round (the
three timings a minute apart) and the summary is the median round. One untimed `orchard run`
(and one per int8 set) comes first (it records the JVM class archive if there is none yet, see orchard.spark.classarchive,
and fills the OS file cache). Prints a table; `--json` adds the raw data.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from orchard.pipeline.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def image_files(root: Path) -> List[Path]:
    from orchard.pipeline.preprocess import is_image_name

    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))


def bare_loop(files: List[Path], model_file: Path, threads: int, batch_size: int, ready=None) -> Tuple[float, float]:
    """(start, end) times of read + preprocess + inference of every file in this process, no Spark.

    The session is created and warmed up first, then `ready` (a barrier, when several
    processes share the work) is awaited, so only the loop itself is timed.
    """
    import numpy as np

    from orchard.pipeline.inference import infer
    from orchard.pipeline.models import get_spec, onnx_session
    from orchard.pipeline.preprocess import preprocess

    spec = get_spec("mobilenet_v2")
    session = onnx_session(str(model_file), threads)  # the session options orchard's workers use
    session.run(None, {spec.input_name: np.zeros((1, 224, 224, 3), np.uint8)})  # warm-up
    if ready is not None:
        ready.wait()
    started = time.time()
    for start in range(0, len(files), batch_size):
        pixels = [preprocess(f.read_bytes()).array for f in files[start : start + batch_size]]
        infer(session, spec, pixels, batch_size)
    return started, time.time()


def bare_loops(files: List[Path], model_file: Path, threads: int, batch_size: int, processes: int) -> float:
    """Wall seconds of the bare loop over `files`, shared by `processes` processes that have
    `threads` ONNX Runtime threads between them (1 process x 2 threads, or 2 x 1 like orchard)."""
    if processes == 1:
        started, ended = bare_loop(files, model_file, threads, batch_size)
        return ended - started
    context = multiprocessing.get_context("spawn")  # a clean ONNX Runtime in each process
    ready, spans = context.Barrier(processes), context.Queue()
    per_process = threads_per_process(threads, processes)
    workers = [context.Process(target=_timed_share, args=(files[i::processes], model_file, per_process,
                                                          batch_size, ready, spans)) for i in range(processes)]
    for worker in workers:
        worker.start()
    times = [spans.get() for _ in workers]
    for worker in workers:
        worker.join()
    return max(end for _, end in times) - min(start for start, _ in times)


def threads_per_process(threads: int, processes: int) -> int:
    return max(1, threads // processes)


def _timed_share(files: List[Path], model_file: Path, threads: int, batch_size: int, ready, spans) -> None:
    spans.put(bare_loop(files, model_file, threads, batch_size, ready))


def orchard_run(dataset: Path, model_file: Path, output: Path, extra: List[str],
                src: Optional[Path] = None) -> Dict:
    """Wall seconds of one `orchard run` in a fresh process, and its run.json; with `src`, the
    orchard found in that source folder (another checkout's src/) runs instead."""
    command = [sys.executable, "-m", "orchard", "run", "--input", str(dataset), "--output", str(output),
               "--model-path", str(model_file), "--overwrite", *extra]
    env = {**os.environ, "PYTHONPATH": str(src)} if src else None
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"orchard run failed:\n{result.stderr[-3000:]}")
    record = json.loads((output / "run.json").read_text())
    workers = sum(record["udf_seconds"].values()) / max(1, record["cores"])  # decode + inference, per core
    return {"wall": wall, "images": record["counts"]["featurized"], "stages": record["seconds"],
            "beyond_workers": wall - workers}


def bare_rates_of(args, files: List[Path], model_file: Path) -> Dict[str, float]:
    """Images/s of each bare loop variant ("PxT") with `model_file`."""
    return {f"{n}x{threads_per_process(args.threads, n)}":
            len(files) / bare_loops(files, model_file, args.threads, args.batch_size, n)
            for n in args.bare_processes}


def int8_file(dataset: Path, model_file: Path) -> Path:
    """The int8 model `orchard run --precision int8` runs on `dataset` (the same calibration set:
    orchard.pipeline.quantize.listing_calibration's choice among the sorted relative paths)."""
    from orchard.pipeline.models import resolve_model
    from orchard.pipeline.quantize import CALIBRATION_IMAGES, calibration_of, int8_model, spread

    spec, path, sha256 = resolve_model(None, str(model_file))
    relative = sorted(p.relative_to(dataset).as_posix() for p in image_files(dataset))
    chosen = spread(relative, CALIBRATION_IMAGES)
    calibration = calibration_of(((dataset / name).read_bytes() for name in chosen), "the bench set")
    return int8_model(spec, path, sha256, calibration).path


def int8_round(args, files: List[Path], datasets: Dict[str, Path], model_file: Path, tmp: Path,
               fp32: Dict) -> Dict:
    """The int8 bare loops and `orchard run --precision int8` on both sets; ratios to fp32's."""
    bare_rates = bare_rates_of(args, files, int8_file(datasets["bench"], model_file))
    extra = [*args.run_args, "--precision", "int8"]
    runs = {name: orchard_run(dataset, model_file, tmp / f"int8-{name}", extra) for name, dataset in datasets.items()}
    result = {"bare_rates": bare_rates, "runs": runs, **rates(runs)}
    result["vs_fp32"] = {v: rate / fp32["bare_rates"][v] for v, rate in bare_rates.items()}
    result["ratios"] = {v: result["marginal"] / rate for v, rate in bare_rates.items()}
    return result


def one_round(args, files: List[Path], datasets: Dict[str, Path], model_file: Path, tmp: Path) -> Dict:
    """The bare loops, then `orchard run` on the sample and on the bench set; derived rates;
    then the same in int8 (unless --no-int8)."""
    bare_rates = bare_rates_of(args, files, model_file)
    runs = {name: orchard_run(dataset, model_file, tmp / name, args.run_args) for name, dataset in datasets.items()}
    result = {"bare_rates": bare_rates, "runs": runs, **rates(runs)}
    result["ratios"] = {name: result["marginal"] / rate for name, rate in bare_rates.items()}
    if args.int8:
        result["int8"] = int8_round(args, files, datasets, model_file, tmp, result)
    if args.baseline_src:  # the same runs with another checkout's orchard, right after
        base = {name: orchard_run(dataset, model_file, tmp / f"base-{name}", args.run_args, args.baseline_src)
                for name, dataset in datasets.items()}
        result["baseline"] = {"runs": base, **rates(base)}
    return result


def rates(runs: Dict) -> Dict[str, float]:
    """Marginal images/s and fixed start-up seconds from a sample run and a bench run."""
    added = runs["bench"]["images"] - runs["sample"]["images"]
    marginal = added / (runs["bench"]["wall"] - runs["sample"]["wall"])
    return {"marginal": marginal, "fixed": runs["sample"]["wall"] - runs["sample"]["images"] / marginal}


def print_table(rounds: List[Dict], n_bare: int) -> None:
    """One line per round (and the median): bare loop rates, orchard's times, rate, ratios, fixed cost."""
    variants = list(rounds[0]["bare_rates"])
    columns = ([f"bare {v} img/s" for v in variants] + ["sample s", "bench s", "marginal img/s"]
               + [f"ratio {v}" for v in variants] + ["fixed s"])
    table = [[r["bare_rates"][v] for v in variants]
             + [r["runs"]["sample"]["wall"], r["runs"]["bench"]["wall"], r["marginal"]]
             + [r["ratios"][v] for v in variants] + [r["fixed"]] for r in rounds]
    if len(table) > 1:
        table.append([statistics.median(column) for column in zip(*table)])
    print(f"{'round':>6} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    for number, values in enumerate(table, 1):
        label = str(number) if number <= len(rounds) else "median"
        print(f"{label:>6} " + " ".join(f"{v:>{max(len(c), 7)}.{2 if c.startswith('ratio') else 1}f}"
                                         for c, v in zip(columns, values)))
    sample, bench = rounds[0]["runs"]["sample"]["images"], rounds[0]["runs"]["bench"]["images"]
    print(f"images: bare loops {n_bare}, orchard sample {sample}, orchard bench {bench}; "
          "bare PxT = P processes x T ONNX Runtime threads")
    for v in variants:
        print(f"marginal / bare loop {v} = {statistics.median(r['ratios'][v] for r in rounds):.2f}   (target >= 0.80)")
    print(f"fixed start-up cost  = {statistics.median(r['fixed'] for r in rounds):.1f} s   (target < 15 s)")


def print_int8_table(rounds: List[Dict]) -> None:
    """int8 against fp32, one line per round (and the median): bare loops, orchard's int8 runs."""
    variants = list(rounds[0]["int8"]["bare_rates"])
    columns = ([f"int8 bare {v}" for v in variants] + [f"int8/fp32 bare {v}" for v in variants]
               + ["int8 sample s", "int8 bench s", "int8 marginal"] + [f"marginal/int8 bare {v}" for v in variants]
               + ["int8 fixed s"])
    table = [[r["int8"]["bare_rates"][v] for v in variants] + [r["int8"]["vs_fp32"][v] for v in variants]
             + [r["int8"]["runs"]["sample"]["wall"], r["int8"]["runs"]["bench"]["wall"], r["int8"]["marginal"]]
             + [r["int8"]["ratios"][v] for v in variants] + [r["int8"]["fixed"]] for r in rounds]
    if len(table) > 1:
        table.append([statistics.median(column) for column in zip(*table)])
    print(f"\nint8 (img/s, s):\n{'round':>6} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    for number, values in enumerate(table, 1):
        label = str(number) if number <= len(rounds) else "median"
        print(f"{label:>6} " + " ".join(f"{v:>{max(len(c), 7)}.{2 if '/' in c else 1}f}"
                                         for c, v in zip(columns, values)))
    for v in variants:
        print(f"int8 bare / fp32 bare {v} = {statistics.median(r['int8']['vs_fp32'][v] for r in rounds):.2f}   "
              f"(target >= 2); int8 marginal / int8 bare {v} = "
              f"{statistics.median(r['int8']['ratios'][v] for r in rounds):.2f}   (target >= 0.9)")


def print_baseline(rounds: List[Dict], src: Path) -> None:
    """This checkout against the baseline checkout, run for run in the same rounds."""
    print(f"\nagainst the baseline ({src}), same rounds:")
    print(f"{'round':>6} {'sample s':>9} {'base s':>8} {'bench s':>8} {'base s':>8} {'marginal':>9} "
          f"{'base':>7} {'fixed s':>8} {'base':>6} {'marginal/base':>14}")
    for number, r in enumerate(rounds, 1):
        b = r["baseline"]
        print(f"{number:>6} {r['runs']['sample']['wall']:>9.1f} {b['runs']['sample']['wall']:>8.1f} "
              f"{r['runs']['bench']['wall']:>8.1f} {b['runs']['bench']['wall']:>8.1f} {r['marginal']:>9.1f} "
              f"{b['marginal']:>7.1f} {r['fixed']:>8.1f} {b['fixed']:>6.1f} {r['marginal'] / b['marginal']:>14.2f}")
    ratio = statistics.median(r["marginal"] / r["baseline"]["marginal"] for r in rounds)
    fixed = statistics.median(r["fixed"] - r["baseline"]["fixed"] for r in rounds)
    print(f"median marginal / baseline = {ratio:.2f}; median fixed - baseline = {fixed:+.1f} s")


def print_stage_medians(rounds: List[Dict]) -> None:
    """Median seconds of each run.json stage, this checkout next to the baseline, per set."""
    print("\nstages (run.json seconds, median of the rounds), this checkout against the baseline:")
    print(f"{'stage':>16} {'sample':>7} {'base':>6} {'bench':>7} {'base':>6}")
    sides = [(r["runs"], r["baseline"]["runs"]) for r in rounds]
    names = list(dict.fromkeys(k for new, base in sides for name in ("sample", "bench")
                               for k in [*new[name]["stages"], *base[name]["stages"]]))
    for stage in names:  # sample: this checkout, baseline; bench: this checkout, baseline
        cells = [statistics.median(pair[side][name]["stages"].get(stage, 0.0) for pair in sides)
                 for name in ("sample", "bench") for side in (0, 1)]
        print(f"{stage:>16} {cells[0]:>7.1f} {cells[1]:>6.1f} {cells[2]:>7.1f} {cells[3]:>6.1f}")


def print_beyond_workers(rounds: List[Dict], baseline: bool) -> None:
    """Seconds of each run not spent in the Python workers' own image work: wall minus their
    decode + inference seconds (run.json udf_seconds) shared over the cores. Insensitive to how
    fast the cores are that minute; what the bench set adds over the sample is the per-image
    cost beyond the bare loop's work (Spark's scan, Arrow, the PCA, the projection, Parquet)."""
    sides = [("this checkout", lambda r: r["runs"])] + ([("baseline", lambda r: r["baseline"]["runs"])]
                                                        if baseline else [])
    print("\nseconds beyond the workers' own decode + inference (medians): sample, bench, per extra image")
    for label, runs_of in sides:
        sample = statistics.median(runs_of(r)["sample"]["beyond_workers"] for r in rounds)
        bench = statistics.median(runs_of(r)["bench"]["beyond_workers"] for r in rounds)
        added = statistics.median(runs_of(r)["bench"]["images"] - runs_of(r)["sample"]["images"] for r in rounds)
        print(f"{label:>14}: {sample:6.1f} s {bench:6.1f} s {1000 * (bench - sample) / added:6.2f} ms/image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (bare loop, sample, bench); median is kept")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the bare loop")
    parser.add_argument("--batch-size", type=int, default=RunConfig.batch_size,
                        help="images per inference call of the bare loop (default: orchard's)")
    parser.add_argument("--bare-processes", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2],
                        help="bare loop variants: processes sharing the --threads (default 1,2: "
                             "1 process x 2 threads, and 2 x 1 as orchard runs on 2 cores)")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="another checkout's src/ folder: its `orchard run` is timed in every round too, "
                             "right after this one's (e.g. a worktree of the previous release)")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="fp32 only: no int8 bare loops nor `orchard run --precision int8`")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements")
    parser.add_argument("run_args", nargs="*", help="extra `orchard run` options, after --")
    args = parser.parse_args()

    datasets = {"sample": args.shared / "data" / "fruits-360-sample",
                "bench": args.shared / "data" / "fruits-360-bench"}
    model_file = args.shared / "models" / "mobilenet_v2_1.0_224.onnx"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    files = image_files(datasets["bench"])

    with tempfile.TemporaryDirectory(prefix="orchard-bench-") as folder:
        tmp = Path(folder)
        # not counted: records the JVM class archive on a first use, fills the OS file cache
        orchard_run(datasets["sample"], model_file, tmp / "warm-up", args.run_args)
        for name, dataset in datasets.items() if args.int8 else ():  # quantizes: later runs find it cached
            orchard_run(dataset, model_file, tmp / f"warm-up-int8-{name}", [*args.run_args, "--precision", "int8"])
        rounds = []
        for number in range(1, args.repeat + 1):
            rounds.append(one_round(args, files, datasets, model_file, tmp))
            ratios = ", ".join(f"{v} {r:.2f}" for v, r in rounds[-1]["ratios"].items())
            print(f"round {number}/{args.repeat}: ratios {ratios}", file=sys.stderr, flush=True)

    print_table(rounds, len(files))
    if args.int8:
        print_int8_table(rounds)
    if args.baseline_src:
        print_baseline(rounds, args.baseline_src)
        print_stage_medians(rounds)
    print_beyond_workers(rounds, bool(args.baseline_src))
    print(f"cores: {os.cpu_count()}, bare loop threads: {args.threads}, batch size: {args.batch_size}, "
          f"rounds: {args.repeat}")
    for name in ("sample", "bench"):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in rounds[-1]["runs"][name]["stages"].items())
        print(f"stages of the last round ({name}, s): {stages}")
        if args.int8:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in rounds[-1]["int8"]["runs"][name]["stages"].items())
            print(f"stages of the last round ({name}, int8, s): {stages}")
    if args.json:
        print(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
