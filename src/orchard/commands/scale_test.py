"""`orchard scale-test`: whole runs on 1, 2, ... workers; speed-up, efficiency, fit, projection."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List

from orchard import progress
from orchard.analysis.scaling.records import Config
from orchard.analysis.scaling.render import MEASUREMENTS_CSV, REPORT_MD, read_context, read_measurements
from orchard.analysis.scaling.runner import ScaleTest, configurations, parse_counts
from orchard.errors import OrchardError
from orchard.paths import is_local_uri

HELP = "time whole runs on 1..N workers: speed-up, efficiency (whole run and featurize stage), fixed + per-image cost, EMR projection"
EPILOG = """\
each configuration (executors x cores per executor) runs `orchard run` --repeat times in a fresh
process, timed by the wall clock; the first --warmup run(s) are not counted. Without --master,
orchard's local cluster is started with as many workers as needed and stopped at the end.
writes measurements.csv, summary.csv, fit.json, projection.csv, speedup.png, scale_test.md.
examples:
  orchard scale-test --input ../shared/data/fruits-360-bench --workers 1,2 --cores-per-worker 1
  orchard scale-test --input DATA --workers 1,2 --cores-per-worker 1,2 --grid --repeat 2
  orchard scale-test --analyse runs/scale-test-20260101-1200   # re-fit and re-plot only
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scale-test", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", action="append", metavar="URI",
                        help="dataset root (repeat for several sizes: the fit then separates serial and "
                             "parallel per-image costs)")
    parser.add_argument("--workers", default="1,2", metavar="N,N",
                        help="worker (executor) counts to compare (default 1,2)")
    parser.add_argument("--cores-per-worker", default="1", metavar="N[,N]",
                        help="cores of each worker/executor (default 1; a list with --grid)")
    parser.add_argument("--grid", action="store_true", help="sweep every executors x cores pair")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per configuration (default 3)")
    parser.add_argument("--warmup", type=int, default=1, metavar="N",
                        help="runs before the measurements, not counted (default 1)")
    parser.add_argument("--master", metavar="URL",
                        help="an existing standalone master (spark://HOST:PORT), or `local` for local[N] "
                             "in one JVM; default: start orchard's local cluster")
    parser.add_argument("--memory", default="2g", help="memory of each local-cluster worker (default 2g)")
    parser.add_argument("--executor-memory", metavar="SIZE", help="spark.executor.memory of the runs")
    parser.add_argument("--out", metavar="DIR", help="results folder (default runs/scale-test-<time>)")
    parser.add_argument("--run-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for every `orchard run` (repeatable), e.g. --run-arg=--partitions=8")
    parser.add_argument("--timeout", type=float, default=3600, metavar="S", help="limit per run (default 3600 s)")
    parser.add_argument("--keep-outputs", action="store_true", help="keep each run's output folder")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (terminal) or progress lines (otherwise) over the runs")
    parser.add_argument("--nodes", default="3,10,50", metavar="N,N", help="EMR core nodes to project (default 3,10,50)")
    parser.add_argument("--images", default="90000,10000000", metavar="N,N",
                        help="image counts to project (default 90000,10000000)")
    parser.add_argument("--instance-type", default="m5.xlarge", help="EMR core node type (default m5.xlarge)")
    parser.add_argument("--vcpus-per-node", type=int, metavar="N", help="default: from the price table")
    parser.add_argument("--vcpu-speed", type=float, default=1.0, metavar="X",
                        help="work of one EMR vCPU relative to one core here (default 1.0)")
    parser.add_argument("--spot", action="store_true", help="price the core nodes as Spot")
    parser.add_argument("--serial-ms-per-image", type=float, metavar="MS",
                        help="the driver's serial cost per image for the task-time projection (default: "
                             "measured from two input sizes, else 0)")
    parser.add_argument("--analyse", metavar="DIR",
                        help="do not run: re-fit, re-plot and re-project the measurements.csv in DIR")
    parser.set_defaults(func=scale_test_command)


def scale_test_command(args: argparse.Namespace) -> int:
    """Measure (or with --analyse re-analyse), print the report; 1 when a run failed."""
    configs = configurations(parse_counts(args.workers, "--workers"),
                             parse_counts(args.cores_per_worker, "--cores-per-worker"), args.grid)
    if args.repeat < 1 or args.warmup < 0:
        raise OrchardError("--repeat must be at least 1 and --warmup at least 0")
    progress.configure(quiet=args.quiet)
    common = dict(nodes=parse_counts(args.nodes, "--nodes"), images=parse_counts(args.images, "--images"),
                  instance_type=args.instance_type, vcpus_per_node=args.vcpus_per_node,
                  vcpu_speed=args.vcpu_speed, spot=args.spot,
                  serial_s_per_image=None if args.serial_ms_per_image is None else args.serial_ms_per_image / 1000)
    result = _reanalyse(Path(args.analyse), configs, common) if args.analyse else _measure(args, configs, common)
    print((Path(result["out"]) / REPORT_MD).read_text(encoding="utf-8"))
    print(json.dumps({"out": str(result["out"]), "failed_runs": sum(1 for r in result["rows"] if not r.ok)}))
    return 0 if all(r.ok for r in result["rows"]) else 1


def _reanalyse(folder: Path, configs: List[Config], common: Dict[str, Any]) -> Dict[str, Any]:
    """Fit, plot and project the measurements.csv in `folder` again, keeping the context its
    report recorded."""
    if not (folder / MEASUREMENTS_CSV).is_file():
        raise OrchardError(f"no {MEASUREMENTS_CSV} in {folder}")
    rows = read_measurements(folder / MEASUREMENTS_CSV)
    test = ScaleTest(inputs=sorted({r.input for r in rows}), configs=configs, out=folder, **common)
    return test.finish(rows, read_context(folder / REPORT_MD))


def _measure(args: argparse.Namespace, configs: List[Config], common: Dict[str, Any]) -> Dict[str, Any]:
    if not args.input:
        raise OrchardError("--input is required (or --analyse DIR)")
    for uri in args.input:
        if is_local_uri(uri) and not Path(uri).exists():
            raise OrchardError(f"input not found: {uri}")
    out = Path(args.out or f"runs/scale-test-{time.strftime('%Y%m%d-%H%M%S')}")
    test = ScaleTest(inputs=[str(Path(u).resolve()) if is_local_uri(u) else u for u in args.input],
                     configs=configs, out=out, master=args.master, repeat=args.repeat, warmup=args.warmup,
                     memory=args.memory, executor_memory=args.executor_memory, extra_args=args.run_arg,
                     timeout_s=args.timeout, keep_outputs=args.keep_outputs, **common)
    return test.run()
