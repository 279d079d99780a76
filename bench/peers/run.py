"""orchard against Ray Data and Daft (and the seeds' Keras pipeline) on the same job, in rounds.

    bash bench/peers/setup.sh                      # once: the peers' virtual environments
    python bench/peers/run.py [--rounds 3] [--with-seeds] [--with-int8] [--json]

The job: the images of <root>/<Split>/<Class>/ -> orchard's preprocessing -> MobileNetV2 ONNX
`features` (1280 floats) -> Parquet; orchard also fits its PCA. Every system runs in a fresh
process, timed by the wall clock from start to exit (interpreter, JVM or Ray start included):
`orchard run` with this Python (the checkout's src/ unless --orchard-src), bench/peers/ray_job.py
and daft_job.py in their virtual environments (2 actors / UDF processes x 1 ONNX Runtime
thread, batch 8), with --with-seeds bench/seeds_keras.py, and with --with-int8 `orchard run
--precision int8` as a system of its own ("orchard-int8", its model quantized on a warm-up run
of each input, so the timed runs find it cached). Each round runs every system on
the sample (1,920 images) then on the bench set (6,480), the systems one after the other, their
order rotated from round to round. From each system's runs:
    marginal images/s = (n_bench - n_sample) / (t_bench - t_sample)
    fixed s           = t_sample - n_sample / marginal
and the table gives the median over rounds of each column. Before timing, the peers'
preprocessing (common.preprocess) is checked against orchard's on the sample's images (the
arrays must be equal); after the last round, each system's row counts are checked against
orchard's and its features compared with orchard's, path by path (max |difference| and the
lowest and mean cosine); the seeds' and orchard-int8's too (close to orchard's, not equal), the seeds'
when they ran with ImageNet weights (by default orchard's ONNX weights converted for Keras,
onnx_to_keras_weights.py: Keras cannot download its own here).
Numbers mean something only on a quiet machine: nothing else running.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PEERS = ("ray", "daft")
SEEDS = "keras"
INT8 = "orchard-int8"
ORCHARDS = ("orchard", INT8)
PEER_LINE = re.compile(r"^PEER (\S+) images=(\d+)(.*)$", re.MULTILINE)


def venv_root() -> Path:
    """Where setup.sh puts the virtual environments."""
    cache = os.environ.get("ORCHARD_CACHE_DIR") or str(Path.home() / ".cache" / "orchard")
    return Path(cache) / "bench-venvs"


def venv_python(venvs: Path, name: str) -> Path:
    python = venvs / name / "bin" / "python"
    if not python.is_file():
        sys.exit(f"no {name} environment at {venvs / name}: run `bash bench/peers/setup.sh {name}` first")
    return python


def command_for(system: str, dataset: Path, output: Path, args) -> List[str]:
    """The command line that runs `system` on `dataset`, writing under `output`."""
    if system in ORCHARDS:
        precision = ["--precision", "int8"] if system == INT8 else []
        return [sys.executable, "-m", "orchard", "run", "--input", str(dataset), "--output", str(output),
                "--model-path", str(args.model), "--overwrite", "--quiet", *precision, *args.run_args]
    if system == SEEDS:
        weights = ["--weights", str(args.keras_weights)] if args.keras_weights else []
        return [str(venv_python(args.venvs, SEEDS)), str(REPO / "bench" / "seeds_keras.py"),
                "--input", str(dataset), "--output", str(output), *weights]
    return [str(venv_python(args.venvs, system)), str(HERE / f"{system}_job.py"), "--input", str(dataset),
            "--output", str(output), "--model", str(args.model), "--batch-size", str(args.batch_size),
            "--concurrency", str(args.concurrency)]


def run_system(system: str, dataset: Path, output: Path, args) -> Dict:
    """Wall seconds of one run of `system` in a fresh process, and the images it featurized."""
    env = dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"))
    if system in ORCHARDS:
        env["PYTHONPATH"] = str(args.orchard_src)
    started = time.perf_counter()
    result = subprocess.run(command_for(system, dataset, output, args), capture_output=True, text=True,
                            env=env, cwd=HERE if system in PEERS else None)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{system} failed on {dataset}:\n{(result.stdout + result.stderr)[-4000:]}")
    if system in ORCHARDS:
        images = json.loads((output / "run.json").read_text())["counts"]["featurized"]
        note = ""
    else:
        found = PEER_LINE.findall(result.stdout)
        if not found:
            sys.exit(f"{system}: no PEER line in its output:\n{result.stdout[-2000:]}")
        images, note = int(found[-1][1]), found[-1][2].strip()
    return {"wall": wall, "images": images, "note": note}


def rates(sample: Dict, bench: Dict) -> Dict[str, float]:
    """Marginal images/s and fixed seconds from a sample run and a bench run."""
    added = bench["images"] - sample["images"]
    spent = bench["wall"] - sample["wall"]
    marginal = added / spent if spent > 0 else float("nan")
    return {"marginal": marginal, "fixed": sample["wall"] - sample["images"] / marginal}


def check_preprocessing(dataset: Path, limit: int) -> Dict:
    """The peers' preprocessing (common.preprocess) against orchard's on up to `limit` images."""
    from common import list_images, preprocess

    from orchard.pipeline.preprocess import preprocess as orchard_preprocess

    files = list_images(dataset)[:limit]
    differing = [rel for full, rel in files
                 if not np.array_equal(preprocess(Path(full).read_bytes()),
                                       orchard_preprocess(Path(full).read_bytes()).array)]
    return {"images": len(files), "differing": differing}


def feature_table(folder: Path, root: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """path -> float32 features of the Parquet files under `folder` (rows without features left
    out); with `root`, absolute paths (`file:/...`, as Spark's binaryFile gives) made relative to it."""
    import pyarrow.parquet as pq

    rows: Dict[str, np.ndarray] = {}
    for file in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(file, columns=["path", "features"])
        column = table.column("features").combine_chunks()
        if hasattr(column, "storage"):  # an extension type (Ray's tensor, Daft's embedding)
            column = column.storage
        paths = table.column("path").to_pylist()
        if root is not None:
            paths = [os.path.relpath(p[len("file:"):] if p.startswith("file:") else p, root) for p in paths]
        valid = np.asarray(column.is_valid())
        values = np.asarray(column.filter(column.is_valid()).flatten(), dtype=np.float32)
        vectors = values.reshape(int(valid.sum()), -1) if valid.any() else values.reshape(0, 0)
        for path, vector in zip((p for p, ok in zip(paths, valid) if ok), vectors):
            rows[path] = vector
    return rows


def agreement(reference: Dict[str, np.ndarray], other: Dict[str, np.ndarray]) -> Dict:
    """How `other`'s features match `reference`'s: common paths, max |difference|, lowest and mean cosine."""
    common = sorted(set(reference) & set(other))
    if not common:
        return {"common": 0, "only_reference": len(reference), "only_other": len(other)}
    a = np.stack([reference[p] for p in common]).astype(np.float64)
    b = np.stack([other[p] for p in common]).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0)
    return {"common": len(common), "only_reference": len(set(reference) - set(other)),
            "only_other": len(set(other) - set(reference)), "max_abs_diff": float(np.max(np.abs(a - b))),
            "min_cosine": float(np.min(cosine)), "mean_cosine": float(np.mean(cosine))}


def one_round(number: int, systems: Sequence[str], datasets: Dict[str, Path], tmp: Path, args) -> Dict:
    """Every system on the sample then on the bench set; the order rotated by the round number."""
    shift = (number - 1) % len(systems)
    order = list(systems[shift:]) + list(systems[:shift])
    runs: Dict[str, Dict[str, Dict]] = {system: {} for system in systems}
    for name, dataset in datasets.items():
        for system in order:
            runs[system][name] = run_system(system, dataset, tmp / system / name, args)
            print(f"round {number}: {system:8} {name:6} {runs[system][name]['wall']:7.1f} s "
                  f"({runs[system][name]['images']} images)", file=sys.stderr, flush=True)
    return {"order": order, "runs": runs, "rates": {s: rates(r["sample"], r["bench"]) for s, r in runs.items()}}


def checks(systems: Sequence[str], rounds: List[Dict], tmp: Path, datasets: Dict[str, Path]) -> Dict:
    """Row counts against orchard's (every round) and features against orchard's (last round's outputs)."""
    result: Dict[str, Dict] = {}
    for name, root in datasets.items():
        reference = feature_table(tmp / "orchard" / name / "features")
        for system in systems[1:]:  # orchard first
            counts = [r["runs"][system][name]["images"] for r in rounds]
            expected = [r["runs"]["orchard"][name]["images"] for r in rounds]
            entry = {"rows": counts, "rows_equal": counts == expected}
            if system in PEERS:
                entry["features"] = agreement(reference, feature_table(tmp / system / name))
            elif system == INT8:  # quantized: close to orchard's fp32 features, not equal
                entry["features"] = agreement(reference, feature_table(tmp / system / name / "features"))
            elif system == SEEDS and "random" not in rounds[-1]["runs"][system][name]["note"]:
                # Keras' own resize (Pillow's default filter, no JPEG draft) and float32 math:
                # close to orchard's, not equal
                entry["features"] = agreement(reference, feature_table(tmp / system / name / "features", root))
            result.setdefault(system, {})[name] = entry
    return result


def print_table(systems: Sequence[str], rounds: List[Dict]) -> None:
    """The issue's table: medians over rounds of sample s, bench s, marginal img/s, fixed s."""
    n_sample = rounds[0]["runs"]["orchard"]["sample"]["images"]
    n_bench = rounds[0]["runs"]["orchard"]["bench"]["images"]
    print(f"\nmedians of {len(rounds)} round(s); sample {n_sample} images, bench {n_bench}:\n")
    print("| system | sample s | bench s | marginal img/s | fixed s |")
    print("|---|---:|---:|---:|---:|")
    for system in systems:
        sample = statistics.median(r["runs"][system]["sample"]["wall"] for r in rounds)
        bench = statistics.median(r["runs"][system]["bench"]["wall"] for r in rounds)
        marginal = statistics.median(r["rates"][system]["marginal"] for r in rounds)
        fixed = statistics.median(r["rates"][system]["fixed"] for r in rounds)
        note = rounds[0]["runs"][system]["sample"]["note"]
        label = {"orchard": "orchard (includes its PCA fit)", INT8: "orchard --precision int8",
                 "ray": "Ray Data", "daft": "Daft",
                 SEEDS: f"seeds (Keras, weights: {note.split('weights=')[-1]})"}[system]
        print(f"| {label} | {sample:.1f} | {bench:.1f} | {marginal:.1f} | {fixed:.1f} |")
    print("\nper round: marginal img/s; orchard's marginal / the best peer's; whole bench run: orchard / Daft, "
          "seeds / orchard (issue 15 asks >= 1, <= 1.15, >= 4); the same for orchard-int8")
    ratios = [round_ratios(systems, r) for r in rounds]
    for number, (r, ratio) in enumerate(zip(rounds, ratios), 1):
        line = " ".join(f"{s} {r['rates'][s]['marginal']:.0f}" for s in systems)
        print(f"  round {number} ({', '.join(r['order'])}): {line}; "
              + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    if len(rounds) > 1:
        print("  median: " + ", ".join(f"{k} {statistics.median(x[k] for x in ratios):.2f}" for k in ratios[0]))


def round_ratios(systems: Sequence[str], r: Dict) -> Dict[str, float]:
    """The ratios issue 15 sets targets for, within one round, for orchard (and orchard-int8):
    its marginal rate / the best peer's, its bench run / Daft's, the seeds' bench run / its."""
    ratios = {}
    peers = [p for p in PEERS if p in systems]
    bench = {s: r["runs"][s]["bench"]["wall"] for s in systems}
    for mine in (s for s in ORCHARDS if s in systems):
        if peers:
            ratios[f"{mine}/best peer marginal"] = r["rates"][mine]["marginal"] / max(
                r["rates"][p]["marginal"] for p in peers)
        if "daft" in bench:
            ratios[f"bench {mine}/daft"] = bench[mine] / bench["daft"]
        if SEEDS in bench:
            ratios[f"bench seeds/{mine}"] = bench[SEEDS] / bench[mine]
    return ratios


def print_checks(preprocessing: Dict, result: Dict) -> None:
    same = preprocessing["images"] - len(preprocessing["differing"])
    print(f"\npreprocessing: peers' arrays equal to orchard's on {same}/{preprocessing['images']} images")
    for system, by_set in result.items():
        for name, entry in by_set.items():
            line = f"{system:8} {name:6} rows {entry['rows']} ({'equal to' if entry['rows_equal'] else 'DIFFERENT from'} orchard's)"
            features = entry.get("features")
            if features and features.get("common"):
                line += (f"; features vs orchard's on {features['common']} paths: max |diff| "
                         f"{features['max_abs_diff']:.3g}, cosine min {features['min_cosine']:.6f} "
                         f"mean {features['mean_cosine']:.6f}")
                if features["only_reference"] or features["only_other"]:
                    line += f" (paths only in orchard's {features['only_reference']}, only here {features['only_other']})"
            elif features is not None:
                line += "; features: NO common path with orchard's"
            print(line)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    parser.add_argument("--sample", type=Path, help="the smaller input (default: <shared>/data/fruits-360-sample)")
    parser.add_argument("--bench", type=Path, help="the larger input (default: <shared>/data/fruits-360-bench)")
    parser.add_argument("--model", type=Path, help="the ONNX file (default: <shared>/models/mobilenet_v2_1.0_224.onnx)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every system on both inputs (default 3)")
    parser.add_argument("--systems", default="orchard,ray,daft",
                        help="comma-separated, among orchard, ray, daft (default all three; orchard is required)")
    parser.add_argument("--with-seeds", action="store_true", help="also time the seeds' Keras pipeline (slow)")
    parser.add_argument("--with-int8", action="store_true",
                        help="also time `orchard run --precision int8` (its model quantized during the warm-up)")
    parser.add_argument("--keras-random", action="store_true",
                        help="with --with-seeds: random Keras weights instead of orchard's ONNX weights "
                             "converted for Keras (onnx_to_keras_weights.py); same compute either way")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="skip the untimed first run of each system on the sample (fills the OS file "
                             "cache, records orchard's JVM class archive); orchard-int8's runs that quantize "
                             "its model still come first")
    parser.add_argument("--batch-size", type=int, default=8, help="the peers' images per inference call (default 8)")
    parser.add_argument("--concurrency", type=int, default=2, help="the peers' actors / UDF processes (default 2)")
    parser.add_argument("--check-images", type=int, default=400,
                        help="sample images whose preprocessing is compared with orchard's (default 400)")
    parser.add_argument("--venvs", type=Path, default=venv_root(), help="the folder setup.sh made (default: %(default)s)")
    parser.add_argument("--orchard-src", type=Path, default=REPO / "src", help="the orchard to time (default: this checkout's src/)")
    parser.add_argument("--keep", type=Path, help="write the outputs here (kept) instead of a temporary folder")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    parser.add_argument("run_args", nargs="*", help="extra `orchard run` options, after --")
    args = parser.parse_args(argv)
    args.sample = args.sample or args.shared / "data" / "fruits-360-sample"
    args.bench = args.bench or args.shared / "data" / "fruits-360-bench"
    args.model = (args.model or args.shared / "models" / "mobilenet_v2_1.0_224.onnx").resolve()
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "orchard" not in systems or not set(systems) <= {"orchard", *PEERS}:
        sys.exit("--systems: orchard plus any of ray, daft")
    args.keras_weights = None
    if args.with_int8:
        systems.insert(1, INT8)
    if args.with_seeds:
        systems.append(SEEDS)
    for system in systems:
        if system not in ORCHARDS:
            venv_python(args.venvs, system)
    datasets = {"sample": args.sample.resolve(), "bench": args.bench.resolve()}
    sys.path[:0] = [str(HERE), str(args.orchard_src)]  # common.py & co; the orchard timed
    preprocessing = check_preprocessing(datasets["sample"], args.check_images)
    if preprocessing["differing"]:
        sys.exit(f"the peers' preprocessing differs from orchard's on {preprocessing['differing'][:5]}")

    with tempfile.TemporaryDirectory(prefix="orchard-peers-") as folder:
        tmp = args.keep or Path(folder)
        if args.with_seeds and not args.keras_random:  # Keras cannot download ImageNet's weights here
            from onnx_to_keras_weights import write_npz

            args.keras_weights = tmp / "keras_mobilenet_v2.npz"
            tmp.mkdir(parents=True, exist_ok=True)
            write_npz(args.model, args.keras_weights)
        warm_up = [] if args.no_warm_up else [(system, "sample") for system in systems]
        if INT8 in systems:  # calibrated on each input's own images: quantized once per input, untimed
            warm_up += [(INT8, name) for name in datasets if (INT8, name) not in warm_up]
        for system, name in warm_up:
            run_system(system, datasets[name], tmp / "warm-up" / system / name, args)
        rounds = [one_round(number, systems, datasets, tmp, args) for number in range(1, args.rounds + 1)]
        result = checks(systems, rounds, tmp, datasets)

    print_table(systems, rounds)
    print_checks(preprocessing, result)
    if args.json:
        print(json.dumps({"rounds": rounds, "checks": result, "preprocessing": preprocessing}, indent=1))


if __name__ == "__main__":
    main()
