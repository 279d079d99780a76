"""`orchard evaluate`: how good are a run's features? (logistic regression, Training -> Test)."""
from __future__ import annotations

import argparse
import json

from orchard.analysis.classifier import evaluate_features
from orchard.names import FEATURES_DIR
from orchard.pipeline.config import DEFAULT_MASTER

HELP = "train a logistic regression on a run's Training rows and print its Test accuracy"


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help=HELP, description=HELP)
    parser.add_argument("run", metavar="RUN", help="output folder of `orchard run`")
    parser.add_argument("--column", default="pca", choices=("pca", "features"),
                        help="feature column to train on (default pca)")
    parser.add_argument("--as-of", type=int, metavar="VERSION",
                        help="that version of the features table (`orchard history RUN`; default: the newest)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.set_defaults(func=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    # orchard.api imports pyspark: deferred, so that the CLI starts without it
    from orchard.api import start_spark, stop_spark

    spark = start_spark(args.master, app_name="orchard-evaluate")
    try:
        result = evaluate_features(spark, f"{args.run.rstrip('/')}/{FEATURES_DIR}", args.column,
                                   version=args.as_of)
    finally:
        stop_spark(spark)
    print(json.dumps(result, indent=2))
    return 0
