"""`orchard push` and `orchard pull`: copy datasets and run outputs to and from S3 or HDFS."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, Optional

from orchard.errors import OrchardError
from orchard.local import store as localstore
from orchard.local.cluster import LocalCluster
from orchard.storage.fs import S3_SCHEMES, S3Settings, Storage, split_uri
from orchard.storage.sync import DEFAULT_JOBS, StorageTarget, pull, push

PUSH_HELP = "copy a local folder to s3://bucket/prefix or hdfs:///path (skips identical files)"
PULL_HELP = "copy s3://bucket/prefix or hdfs:///path into a local folder (skips identical files)"
EPILOG = """\
--profile local: the S3 endpoint, keys and HDFS of `orchard local up`; without a profile,
s3:// is real AWS (boto3's usual credentials) and HDFS needs hdfs://host:port/path.
Names starting with `_` or `.` are hidden (as in Spark and Hadoop): not copied, counted.
examples:
  orchard push ../shared/data/fruits-360-sample s3://fruits/sample --profile local
  orchard pull hdfs:///runs/1 runs/1 --profile local
"""
# The local HDFS has one DataNode (replication 1); a short first wait (default 400 ms) before
# asking the NameNode whether a just-written file is complete makes small-file writes faster.
LOCAL_HDFS_CLIENT_CONF = {"dfs.replication": "1",
                          "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20"}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME", help="`local` for the local cluster")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                        help=f"files copied at the same time (default {DEFAULT_JOBS})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (terminal) or progress lines (otherwise) on stderr")


def register(subparsers) -> None:
    push_parser = subparsers.add_parser("push", help=PUSH_HELP, description=PUSH_HELP, epilog=EPILOG,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
    push_parser.add_argument("local_dir", metavar="LOCAL_DIR", help="folder to copy")
    push_parser.add_argument("uri", metavar="URI", help="s3://bucket/prefix or hdfs:///path")
    _add_common(push_parser)
    push_parser.set_defaults(func=push_command)

    pull_parser = subparsers.add_parser("pull", help=PULL_HELP, description=PULL_HELP, epilog=EPILOG,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pull_parser.add_argument("uri", metavar="URI", help="s3://bucket/prefix or hdfs:///path")
    pull_parser.add_argument("local_dir", metavar="LOCAL_DIR", help="folder to copy into")
    _add_common(pull_parser)
    pull_parser.set_defaults(func=pull_command)


def storage_for(uri: str, profile: Optional[str]) -> Storage:
    """The Storage reaching `uri`: for `--profile local`, the local cluster's S3 endpoint and
    keys or its HDFS; without a profile, real AWS (boto3's usual credentials) or the URI's own
    hdfs://host:port. Raises OrchardError when the profile is unknown or its service is down."""
    if not profile:
        return Storage()
    if profile != "local":
        raise OrchardError(f"push and pull know the profile `local` only, got {profile!r}")
    status = LocalCluster().status()
    if split_uri(uri)[0] in S3_SCHEMES:
        if not status["running"] or not status.get("s3_endpoint"):
            raise OrchardError(f"the local cluster's S3 is not up (state dir {status['state_dir']}): "
                               "run `orchard local up` first")
        return Storage(s3=S3Settings(endpoint_url=status["s3_endpoint"], access_key=status["access_key"],
                                     secret_key=status["secret_key"], region=localstore.REGION,
                                     path_style=True))
    if not status["running"] or not status.get("hdfs_url"):
        raise OrchardError(f"the local cluster's HDFS is not up (state dir {status['state_dir']}): "
                           "run `orchard local up --hdfs` first")
    return Storage({"fs.defaultFS": status["hdfs_url"], **LOCAL_HDFS_CLIENT_CONF})


def _report(summary: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['source']} -> {summary['target']}: {summary['copied']} files copied "
              f"({summary['bytes'] / 1e6:.1f} MB), {summary['skipped']} identical skipped, "
              f"{summary['hidden']} hidden left out, in {summary['seconds']} s")


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise OrchardError(f"--jobs must be at least 1, got {jobs}")


def push_command(args: argparse.Namespace) -> int:
    _check_jobs(args.jobs)
    target = StorageTarget(storage_for(args.uri, args.profile), args.uri)
    _report(push(args.local_dir, target, args.jobs, progress=not args.quiet), args.json)
    return 0


def pull_command(args: argparse.Namespace) -> int:
    _check_jobs(args.jobs)
    target = StorageTarget(storage_for(args.uri, args.profile), args.uri)
    _report(pull(target, args.local_dir, args.jobs, progress=not args.quiet), args.json)
    return 0
