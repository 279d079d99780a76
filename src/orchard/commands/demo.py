"""`orchard demo`: the whole chain (run, evaluate, report) on the small dataset shipped in the package."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from orchard import progress
from orchard.analysis.classifier import evaluate_features
from orchard.analysis.report import load, summary_text, write_report
from orchard.errors import OrchardError
from orchard.names import FEATURES_DIR, RUN_RECORD
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig

HELP = "run the whole chain (run, evaluate, report) on the demo images shipped with orchard"
EPILOG = """\
the demo dataset: 5 Fruits-360 classes x (24 Training + 8 Test) 100x100 images, inside the
package (see its NOTICE.txt); the model is the packaged MobileNetV2: no download, no setting.
writes under --output: run/ (features, errors, PCA model, run.json, scree plot),
run/report/ (what limited the run), spark-events/ (the event log), evaluation.json.
example: orchard demo --output orchard-demo
"""
DEMO_DATA = Path(__file__).resolve().parents[1] / "demo" / "fruits-360"
DEFAULT_OUTPUT = "orchard-demo"
RUN_DIR, EVENTS_DIR, EVALUATION = "run", "spark-events", "evaluation.json"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                        help=f"local folder for everything the demo writes (default ./{DEFAULT_OUTPUT}; "
                             "a previous demo there is replaced)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    parser.set_defaults(func=demo_command)


def demo_config(output: Path, master: str) -> RunConfig:
    """The `orchard run` settings of the demo: packaged images in, `output`/run out.

    Raises OrchardError when `output`/run exists and is not an orchard run (no run.json)."""
    run_dir = output / RUN_DIR
    if run_dir.exists() and any(run_dir.iterdir()) and not (run_dir / RUN_RECORD).is_file():
        raise OrchardError(f"{run_dir} exists and is not an orchard run; choose another --output")
    return RunConfig(input=str(DEMO_DATA), output=str(run_dir), master=master, overwrite=True,
                     event_log_dir=str(output / EVENTS_DIR))


def demo_command(args: argparse.Namespace) -> int:
    # orchard.api imports pyspark: deferred, so that the CLI starts without it
    from orchard import api

    if not DEMO_DATA.is_dir():
        raise OrchardError(f"the demo images are missing from this installation ({DEMO_DATA}); reinstall orchard")
    output = Path(args.output).resolve()
    started = time.perf_counter()
    config = demo_config(output, args.master)
    progress.configure(quiet=args.quiet)
    record = api.run(config)
    spark = api.start_spark(args.master, app_name="orchard-demo-evaluate")
    try:
        evaluation = evaluate_features(spark, str(output / RUN_DIR / FEATURES_DIR))
    finally:
        api.stop_spark(spark)
    (output / EVALUATION).write_text(json.dumps(evaluation, indent=2) + "\n")
    analysis, run_json = load(str(output / RUN_DIR))
    report = write_report(analysis, run_json, output / RUN_DIR / "report")
    print(summary_text(analysis))
    counts = record.to_dict()["counts"]
    print(f"\norchard demo: {counts['featurized']} images featurized ({counts['errors']} errors), "
          f"PCA k={record.pca_k}, in {time.perf_counter() - started:.0f} s")
    print(f"accuracy: {evaluation['accuracy']:.3f} (logistic regression on the PCA features, "
          f"{evaluation['train_rows']} Training -> {evaluation['test_rows']} Test images, "
          f"{evaluation['classes']} classes)")
    print(f"features:   {output / RUN_DIR / FEATURES_DIR}")
    print(f"run record: {output / RUN_DIR / RUN_RECORD}")
    print(f"evaluation: {output / EVALUATION}")
    print(f"report:     {report.document}")
    print("next: the full dataset (README, 'Run on the full dataset'): "
          "orchard run --input DATA --output runs/full")
    return 0
