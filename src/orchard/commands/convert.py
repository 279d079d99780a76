"""`orchard convert OLD NEW`: an output of an earlier orchard (Parquet + commit files) as Delta tables."""
from __future__ import annotations

import argparse

from orchard.pipeline.config import DEFAULT_MASTER

HELP = "write an output of an earlier orchard (Parquet folders, _orchard/commits/) as a Delta Lake output"
EPILOG = """\
NEW gets the rows the old output's latest commit names (features, errors, each image's size
and modification time from the old index), its PCA model and run.json; OLD is not changed.
`orchard run --update` on NEW then featurizes only what changed since.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", metavar="OLD", help="the old output (a folder, hdfs://, s3://)")
    parser.add_argument("new", metavar="NEW", help="where to write the Delta output (absent or empty)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.set_defaults(func=convert_command)


def convert_command(args: argparse.Namespace) -> int:
    # pyspark and pyarrow (through the pipeline's listing): deferred, so that the CLI starts without them
    from orchard.api import start_spark, stop_spark
    from orchard.table.convert import convert

    spark = start_spark(args.master, app_name="orchard-convert")
    try:
        result = convert(spark, args.old, args.new)
    finally:
        stop_spark(spark)
    print(f"converted {args.old} -> {args.new}: {result.features} feature rows, {result.errors} error rows"
          f"{', PCA model ' + result.pca_model if result.pca_model else ''} (Delta tables, version 0)")
    return 0
