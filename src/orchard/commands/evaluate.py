"""`orchard evaluate`: how good are a run's features? (logistic regression, Training -> Test)."""
from __future__ import annotations

import argparse
import json

HELP = "train a logistic regression on a run's Training rows and print its Test accuracy"


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help=HELP, description=HELP)
    parser.add_argument("run", metavar="RUN", help="output folder of `orchard run`")
    parser.add_argument("--column", default="pca", choices=("pca", "features"),
                        help="feature column to train on (default pca)")
    parser.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    parser.set_defaults(func=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    from orchard.analysis.classifier import evaluate_features
    from orchard.spark.session import create_session

    spark = create_session("orchard-evaluate", args.master)
    result = evaluate_features(spark, f"{args.run.rstrip('/')}/features", args.column)
    print(json.dumps(result, indent=2))
    return 0
