"""`orchard train`: a fruit classifier on a run's features, exported as one ONNX file."""
from __future__ import annotations

import argparse

from orchard.classify.train import COLUMNS, DEFAULT_REG_PARAMS, TrainConfig, summary_table, train
from orchard.pipeline.config import DEFAULT_MASTER

HELP = "train a fruit classifier (logistic regression) on a run's features and export it as one ONNX file"
EPILOG = """\
writes MODEL_DIR/fruit.onnx (pixels -> probabilities), metrics.json, confusion.png, README.md
(the model card) and spark_model/ (the Spark model).
example: orchard train runs/sample --output models/fruit
"""


def reg_param_list(text: str):
    """argparse type for `--reg-params 0.001,0.01`."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help="output folder of `orchard run` (local, hdfs:// or s3://)")
    parser.add_argument("--output", "-o", metavar="MODEL_DIR", required=True,
                        help="local folder for the model (created)")
    parser.add_argument("--on", choices=COLUMNS, default="pca",
                        help="feature column to train on (default pca: the run's PCA projection)")
    parser.add_argument("--split", default="Training", metavar="NAME",
                        help="split the model is trained and cross-validated on (default Training)")
    parser.add_argument("--test-split", default="Test", metavar="NAME",
                        help="split the model is evaluated on (default Test)")
    parser.add_argument("--reg-params", type=reg_param_list, default=DEFAULT_REG_PARAMS, metavar="LIST",
                        help="regParam values cross-validated (default "
                             + ",".join(f"{r:g}" for r in DEFAULT_REG_PARAMS) + ")")
    parser.add_argument("--folds", type=int, default=3, metavar="K", help="cross-validation folds (default 3)")
    parser.add_argument("--min-images", type=int, default=5, metavar="N",
                        help="leave out (and report) classes with fewer training images (default 5)")
    parser.add_argument("--model-path", metavar="FILE",
                        help="the backbone's ONNX file (default: found as `orchard run` finds it; its "
                             "sha256 must be the run's)")
    parser.add_argument("--as-of", type=int, metavar="VERSION",
                        help="train on this version of the run's features table (`orchard history RUN`; "
                             "default: the newest)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.add_argument("--overwrite", action="store_true", help="replace MODEL_DIR if it exists")
    parser.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    # imports pyspark: deferred, so that the CLI starts without it
    from orchard.api import start_spark, stop_spark

    config = TrainConfig(run=args.run, output=args.output, on=args.on, split=args.split,
                         test_split=args.test_split, reg_params=args.reg_params, folds=args.folds,
                         min_images=args.min_images, model_path=args.model_path, as_of=args.as_of,
                         overwrite=args.overwrite)
    config.validate()
    spark = start_spark(args.master, app_name="orchard-train")
    try:
        result = train(spark, config)
    finally:
        stop_spark(spark)
    print(summary_table(result.metrics))
    print(f"model: {result.onnx_file}")
    return 0
