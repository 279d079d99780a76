"""`orchard predict`: which fruit is in each image of a folder, on Spark."""
from __future__ import annotations

import argparse
import json

from orchard import progress
from orchard.pipeline.config import DEFAULT_MASTER

HELP = "predict the fruit in every image of a folder with a trained model, on Spark (Parquet out)"
EPILOG = """\
output: predictions/ (Parquet: path, label, split, predicted, confidence, top_k), errors/
(Parquet: path, label, split, error) and predict.json (counts that reconcile, accuracy where
the folder names the fruit).
example: orchard predict --input photos/ --model models/fruit --output runs/photos-predicted
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, metavar="URI",
                        help="folder of images: <root>/<Split>/<Class>/<image>, <root>/<Class>/<image> "
                             "(local, hdfs:// or s3://)")
    parser.add_argument("--model", required=True, metavar="MODEL_DIR", help="folder written by `orchard train`")
    parser.add_argument("--output", required=True, metavar="URI", help="output folder (local, hdfs:// or s3://)")
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="guesses kept per image (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per inference call (default 8)")
    parser.add_argument("--partitions", type=int, metavar="N",
                        help="Spark partitions for the images (default: from file and core counts)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (terminal) or progress lines (otherwise) on stderr")
    parser.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    # both import pyspark: deferred, so that the CLI starts without it
    from orchard.api import start_spark, stop_spark
    from orchard.classify.predict import PredictConfig, predict

    config = PredictConfig(input=args.input, model=args.model, output=args.output, top_k=args.top_k,
                           batch_size=args.batch_size, partitions=args.partitions, overwrite=args.overwrite)
    config.validate()
    progress.configure(quiet=args.quiet)
    spark = start_spark(args.master, app_name="orchard-predict")
    try:
        record = predict(spark, config)
    finally:
        stop_spark(spark)
    print(json.dumps({key: record[key] for key in ("output", "counts", "accuracy", "seconds")}, indent=2))
    return 0
