"""`orchard forget OUTPUT PATH...`: erase images' rows from an output (GDPR erasure)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

from orchard.errors import OrchardError
from orchard.names import RUN_RECORD
from orchard.pipeline.config import DEFAULT_MASTER
from orchard.storage.fs import Storage, join

HELP = "remove images' rows from an output's tables in one commit, and keep later runs from adding them back"
EPILOG = """\
PATH is relative to the input root, as in the tables' `path` column (Training/Kiwi/12_100.jpg),
or a folder prefix (Training/Kiwi). The rows leave the newest version at once; the versions
before it keep them (time travel) until --vacuum deletes the data files no version younger
than --retain-hours needs (default 168 h: Delta's retention, which Delta enforces).
Later `orchard run`s skip the same files (same path, size and modification time) while
they exist: delete the photos themselves at their owner's request (or --delete-input).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("forget", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", metavar="OUTPUT", help="an `orchard run` output (a folder, hdfs://, s3://)")
    parser.add_argument("paths", metavar="PATH_OR_PREFIX", nargs="*", help="images to forget (see below)")
    parser.add_argument("--from-file", metavar="FILE", help="more paths, one per line ('#' starts a comment)")
    parser.add_argument("--vacuum", action="store_true",
                        help="then delete the data files that still hold the rows (Delta's VACUUM)")
    parser.add_argument("--retain-hours", type=float, default=None, metavar="H",
                        help="history kept by --vacuum (default 168, Delta's minimum unless its check is off)")
    parser.add_argument("--delete-input", action="store_true",
                        help="also delete the input files themselves (the input named in run.json)")
    parser.add_argument("--master", default=DEFAULT_MASTER, help=f"Spark master (default {DEFAULT_MASTER})")
    parser.set_defaults(func=forget_command)


def patterns_of(args: argparse.Namespace) -> List[str]:
    """The command's paths plus those of --from-file (blank lines and # comments skipped)."""
    patterns = list(args.paths)
    if args.from_file:
        try:
            lines = Path(args.from_file).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise OrchardError(f"--from-file {args.from_file}: {error.strerror}") from None
        patterns += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not patterns:
        raise OrchardError("forget: give PATH_OR_PREFIX arguments or --from-file")
    return patterns


def forget_command(args: argparse.Namespace) -> int:
    # pyspark and pyarrow (through the pipeline's listing): deferred, so that the CLI starts without them
    from orchard.api import start_spark, stop_spark
    from orchard.table.forget import DEFAULT_RETAIN_HOURS, forget

    patterns = patterns_of(args)
    spark = start_spark(args.master, app_name="orchard-forget")
    try:
        hours = (args.retain_hours if args.retain_hours is not None else DEFAULT_RETAIN_HOURS) if args.vacuum else None
        result = forget(spark, args.output, patterns, vacuum_hours=hours)
        deleted = delete_inputs(spark, args.output, result.paths) if args.delete_input else 0
    finally:
        stop_spark(spark)
    print(f"forgot {result.images} image(s): {result.features_rows} feature row(s), {result.errors_rows} error row(s) "
          f"removed in features version {result.features_version}")
    for path in result.paths[:20]:
        print(f"  {path}")
    if result.images > 20:
        print(f"  ... and {result.images - 20} more")
    if result.vacuumed:
        print(f"vacuumed: data files older than {hours:g} h that held them are deleted")
    else:
        print("the versions before this one still hold the rows: run again with --vacuum to delete their files "
              "(once Delta's retention allows it)")
    if args.delete_input:
        print(f"deleted {deleted} input file(s)")
    else:
        print("the input files themselves are the owner's to delete (or pass --delete-input)")
    return 0


def delete_inputs(spark, output: str, paths: List[str]) -> int:
    """Delete the input files `paths` (relative to the input root in the output's run.json)."""
    storage = Storage(spark=spark)
    try:
        record = json.loads(storage.read_bytes(join(storage.qualify(output), RUN_RECORD)))
    except Exception as error:  # missing or unreadable run.json
        raise OrchardError(f"--delete-input: cannot read {RUN_RECORD} of {output} for the input root ({error})") \
            from None
    return sum(1 for path in paths if storage.delete(join(record["input"], path), recursive=False))
