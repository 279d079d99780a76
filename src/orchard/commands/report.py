"""`orchard report`: what limited a run, from its Spark event log."""
from __future__ import annotations

import argparse
import json

from orchard.storage.fs import Storage
from orchard.analysis.report import default_folder, load, summary_text, task_failures, write_report
from orchard.commands.run import spark_conf_pair
from orchard.local.profiles import profile_spark_conf

HELP = "analyse a run from its Spark event log: timeline, stages, skew, utilisation, verdict"
EPILOG = """\
RUN is a run's output folder or URI (its run.json names the event log), or an event log:
a file (plain or .zstd/.lz4/.lzf/.snappy, also .inprogress) or a rolling eventlog_v2_* folder,
on a local disk, hdfs:// or s3:// (s3 through boto3; --profile/--conf give endpoint and keys).
writes report.md (or report.html) with PNG figures under img/, and summary.json;
default folder: <run>/report for a local run, else ./orchard-report-<app id>.
example: orchard report runs/sample
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run output folder/URI, or an event log path")
    parser.add_argument("--out", metavar="DIR", help="folder for the report (local)")
    parser.add_argument("--format", choices=("md", "html"), default="md",
                        help="Markdown with PNG files (default) or one self-contained HTML file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--profile", metavar="NAME", help="storage settings of a profile (e.g. local)")
    parser.add_argument("--conf", dest="conf", action="append", type=spark_conf_pair, metavar="KEY=VALUE",
                        help="spark.hadoop.* setting to reach the storage (repeatable)")
    parser.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    conf = {}
    if args.profile:
        conf.update(profile_spark_conf(args.profile))
    conf.update(dict(args.conf or []))
    analysis, record = load(args.run, Storage(conf))
    folder = args.out or default_folder(args.run, analysis)
    report = write_report(analysis, record, folder, args.format)
    if args.json:
        print(json.dumps({**analysis.summary(), "task_failures": task_failures(analysis),
                          "report": str(report.document)}, indent=2))
    else:
        print(summary_text(analysis))
        print(f"report: {report.document}")
    return 0
