"""`orchard push` and `orchard pull`: copy datasets and run outputs to and from S3 or HDFS."""
from __future__ import annotations

import argparse
import json

PUSH_HELP = "copy a local folder to s3://bucket/prefix or hdfs:///path (skips identical files)"
PULL_HELP = "copy s3://bucket/prefix or hdfs:///path into a local folder (skips identical files)"
EPILOG = """\
--profile local: the S3 endpoint, keys and HDFS of `orchard local up`; without a profile,
s3:// is real AWS (boto3's usual credentials) and HDFS needs hdfs://host:port/path.
examples:
  orchard push ../shared/data/fruits-360-sample s3://fruits/sample --profile local
  orchard pull hdfs:///runs/1 runs/1 --profile local
"""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME", help="`local` for the local cluster")
    parser.add_argument("--jobs", type=int, default=32, metavar="N",
                        help="files copied at the same time (default 32)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def register(subparsers) -> None:
    push = subparsers.add_parser("push", help=PUSH_HELP, description=PUSH_HELP, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    push.add_argument("local_dir", metavar="LOCAL_DIR", help="folder to copy")
    push.add_argument("uri", metavar="URI", help="s3://bucket/prefix or hdfs:///path")
    _add_common(push)
    push.set_defaults(func=push_command)

    pull = subparsers.add_parser("pull", help=PULL_HELP, description=PULL_HELP, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    pull.add_argument("uri", metavar="URI", help="s3://bucket/prefix or hdfs:///path")
    pull.add_argument("local_dir", metavar="LOCAL_DIR", help="folder to copy into")
    _add_common(pull)
    pull.set_defaults(func=pull_command)


def _report(summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['source']} -> {summary['target']}: {summary['copied']} files copied "
              f"({summary['bytes'] / 1e6:.1f} MB), {summary['skipped']} identical skipped, "
              f"in {summary['seconds']} s")


def _check_jobs(jobs: int) -> None:
    from orchard.errors import OrchardError

    if jobs < 1:
        raise OrchardError(f"--jobs must be at least 1, got {jobs}")


def push_command(args: argparse.Namespace) -> int:
    from orchard.storage.sync import push

    _check_jobs(args.jobs)
    _report(push(args.local_dir, args.uri, args.profile, args.jobs), args.json)
    return 0


def pull_command(args: argparse.Namespace) -> int:
    from orchard.storage.sync import pull

    _check_jobs(args.jobs)
    _report(pull(args.uri, args.local_dir, args.profile, args.jobs), args.json)
    return 0
