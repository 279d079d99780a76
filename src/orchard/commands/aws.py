"""`orchard aws ...`: deploy on AWS (S3, IAM, EMR) from the command line, through boto3.

Every command that talks to AWS takes --region (default eu-west-3, Paris), --profile, --json
and --dry-run (print the exact API requests, send nothing, need no credentials).
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

from orchard.cloud.api import DEFAULT_REGION, Aws, dumps
from orchard.cloud.artifacts import ENTRY_SCRIPT, build_wheel, render_bootstrap, sha256_text, write_bootstrap
from orchard.cloud.emr import (
    DEFAULT_CORE_COUNT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_RELEASE,
    SPARK4_RELEASE,
    TUNNEL_PORTS,
    ClusterSpec,
    create_cluster,
    describe_ranges,
    merge_block_public_access,
    parse_autoscale,
    parse_duration,
    release_line,
    step_logs,
    step_request,
    submit,
    terminate,
    tunnel_command as build_tunnel_command,
    utc_stamp,
    wait,
)
from orchard.cloud.iam import ensure_spot_role, init_roles, resolve_kms_key
from orchard.cloud.layout import (
    ARTIFACTS_PREFIX,
    DEFAULT_EC2_ROLE,
    DEFAULT_SERVICE_ROLE,
    SERVICE_ROLE,
    Layout,
    check_prefix,
)
from orchard.cloud.pricing import estimate, format_estimate
from orchard.cloud.s3 import BucketTarget, init_bucket
from orchard.cloud.wheelhouse import build_wheelhouse, lock_file_for, wheelhouse_files
from orchard.errors import OrchardError
from orchard.names import DEFAULT_MODEL
from orchard.pipeline.models import get_spec, resolve_model
from orchard.storage.sync import LocalFile, local_files, upload

HELP = "deploy on AWS: bucket and roles, uploads, an EMR cluster, steps running `orchard run`"
EPILOG = """\
a run, from an empty account (see docs/aws.md):
  orchard aws init --bucket B
  orchard aws push ../shared/data/fruits-360-sample --bucket B
  orchard aws cluster create --bucket B --key-name K --ssh-cidr $(curl -s https://checkip.amazonaws.com)/32
  orchard aws submit --cluster-id j-... --bucket B
  orchard aws wait --cluster-id j-... --step-id s-...
  orchard aws logs --cluster-id j-...
  orchard aws terminate --cluster-id j-...
add --dry-run to any of them to read the requests before anything is sent.
"""


def _common(with_aws: bool = True) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--region", default=DEFAULT_REGION,
                        help=f"AWS region (default {DEFAULT_REGION}, Paris: data stays in the EU)")
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if with_aws:
        parent.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
        parent.add_argument("--dry-run", action="store_true",
                            help="print the exact API requests as JSON, send nothing")
    return parent


def register(subparsers) -> None:
    parser = subparsers.add_parser("aws", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="aws_command", metavar="COMMAND")
    commands.required = True
    common = _common()

    init = commands.add_parser("init", parents=[common], help="bucket (encrypted, private, TLS-only) and IAM roles",
                               description="Create or update the bucket and the IAM roles. Idempotent.")
    init.add_argument("--bucket", required=True, help="bucket name (created in --region)")
    init.add_argument("--kms-key-id", metavar="KEY", help="encrypt with this KMS key (SSE-KMS) instead of SSE-S3")
    init.add_argument("--log-retention-days", type=int, default=30, metavar="N",
                      help="days EMR logs are kept under s3://B/logs/ (default 30)")
    init.add_argument("--use-default-roles", action="store_true",
                      help="create no roles: use EMR_DefaultRole and EMR_EC2_DefaultRole "
                           "(`aws emr create-default-roles`)")
    init.add_argument("--skip-emr-block-public-access", action="store_true",
                      help="leave the account's EMR block-public-access setting as it is")
    init.add_argument("--yes", action="store_true",
                      help="apply the account-wide change init describes (EMR block public access "
                           "off -> on) without asking")
    init.set_defaults(func=init_command)

    push = commands.add_parser("push", parents=[common], help="upload images and the cluster's artefacts",
                               description="Upload DATASET_DIR (parallel, resumable, identical files "
                                           "skipped) and what the cluster needs: orchard's wheel built "
                                           "from this checkout, the model, the bootstrap and entry scripts.")
    push.add_argument("dataset", nargs="?", metavar="DATASET_DIR",
                      help="<root>/<Split>/<Class>/<image> folder; omit to upload only the artefacts")
    push.add_argument("--bucket", required=True, help="the bucket `orchard aws init` set up")
    push.add_argument("--prefix", default="data/", help="where the images go in the bucket (default data/)")
    push.add_argument("--model-path", metavar="FILE", help="ONNX model file (default: orchard's lookup, "
                                                          "$ORCHARD_MODEL_DIR first)")
    push.add_argument("--wheel", metavar="FILE", help="use this orchard wheel instead of building one")
    push.add_argument("--wheelhouse", metavar="DIR",
                      help="use this wheelhouse (requirements.txt, x86_64/, aarch64/) instead of the one "
                           "built from the nodes' lock with pip download (cached)")
    push.add_argument("--release", default=DEFAULT_RELEASE,
                      help=f"the EMR release the cluster will run: its nodes' Python picks the wheelhouse "
                           f"(default {DEFAULT_RELEASE}: Python 3.9; {SPARK4_RELEASE}: Python 3.11)")
    push.add_argument("--workers", type=int, default=8, metavar="N", help="parallel uploads (default 8)")
    push.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                      help="no progress bar (terminal) or progress lines (otherwise) on stderr")
    push.set_defaults(func=push_command)

    bootstrap = commands.add_parser("bootstrap", parents=[_common(with_aws=False)],
                                    help="write the EMR bootstrap script",
                                    description="Write the bootstrap action: a virtual environment on "
                                                "every node with the locked libraries from the bucket's "
                                                "wheelhouse (no PyPI; not pyspark) and orchard's wheel, "
                                                "the model copied; fails loudly, safe to run twice.")
    bootstrap.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    bootstrap.set_defaults(func=bootstrap_command)

    cluster = commands.add_parser("cluster", help="EMR clusters")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    cluster_commands.required = True
    create = cluster_commands.add_parser(
        "create", parents=[common], help="start an EMR cluster (EMR 7: Spark 3.5; emr-spark-8: Spark 4)",
        description="Start an EMR cluster for orchard: 1 primary + N core nodes, the bootstrap action "
                    "from the bucket, logs to s3://B/logs/, auto-termination when idle.")
    create.add_argument("--bucket", required=True, help="the bucket holding the pushed artefacts (and the logs)")
    create.add_argument("--release", default=DEFAULT_RELEASE,
                        help=f"EMR release: emr-7.x.y (default {DEFAULT_RELEASE}: Spark 3.5, JupyterHub) or "
                             f"the Spark 4 line, e.g. {SPARK4_RELEASE} (Python 3.11, no JupyterHub: "
                             "notebooks through EMR Studio)")
    create.add_argument("--core-count", type=int, default=DEFAULT_CORE_COUNT, metavar="N",
                        help=f"core nodes (default {DEFAULT_CORE_COUNT})")
    create.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE,
                        help=f"instance type of every node (default {DEFAULT_INSTANCE_TYPE})")
    create.add_argument("--primary-instance-type", help="primary node's type (default: --instance-type)")
    create.add_argument("--spot", action="store_true",
                        help="core nodes on Spot (the primary stays On-Demand); with --autoscale: the task "
                             "nodes on Spot, the core nodes On-Demand")
    create.add_argument("--autoscale", metavar="MIN:MAX",
                        help="EMR managed scaling between MIN and MAX worker nodes: MIN core nodes (replaces "
                             "--core-count), task nodes added and removed up to MAX")
    create.add_argument("--idle-timeout", default=DEFAULT_IDLE_TIMEOUT, metavar="DURATION",
                        help=f"terminate after this long without work (default {DEFAULT_IDLE_TIMEOUT}; e.g. 30m, 2h)")
    create.add_argument("--key-name", metavar="K", help="EC2 key pair for SSH (the tunnel)")
    create.add_argument("--ssh-cidr", metavar="CIDR",
                        help="allow SSH to the primary node from this network only, e.g. your.ip/32 "
                             "(never 0.0.0.0/0); without it no SSH is allowed")
    create.add_argument("--subnet-id", help="subnet to launch in (default: a default subnet of the default VPC)")
    create.add_argument("--use-default-roles", action="store_true",
                        help="EMR_DefaultRole / EMR_EC2_DefaultRole instead of orchard's roles")
    create.add_argument("--name", help="cluster name (default orchard-BUCKET)")
    create.set_defaults(func=cluster_create_command)

    submit = commands.add_parser("submit", parents=[common], help="add a step running `orchard run`",
                                 description="Add a step: spark-submit of orchard's entry script, i.e. "
                                             "`orchard run` on the cluster, on the bucket's paths.")
    submit.add_argument("--cluster-id", required=True, help="the cluster (j-...) from `cluster create`")
    submit.add_argument("--bucket", required=True, help="the bucket holding the step script, the model and the data")
    submit.add_argument("--input", metavar="URI", help="dataset root (default s3://B/data/)")
    submit.add_argument("--output", metavar="URI", help="output folder (default s3://B/runs/<UTC time>/)")
    pca = submit.add_mutually_exclusive_group()
    pca.add_argument("--pca-variance", type=float, metavar="FRACTION",
                     help="as `orchard run --pca-variance` (default 0.95)")
    pca.add_argument("--pca-k", type=int, metavar="K", help="as `orchard run --pca-k`: exactly K components")
    submit.add_argument("--batch-size", type=int, metavar="N", help="as `orchard run --batch-size`")
    submit.add_argument("--partitions", type=int, metavar="N", help="as `orchard run --partitions`")
    submit.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    submit.add_argument("--deploy-mode", choices=("client", "cluster"), default="client",
                        help="client (default): the driver runs on the primary node and its output "
                             "is in the step's stdout log")
    submit.add_argument("--name", help="step name")
    submit.set_defaults(func=submit_command)

    wait = commands.add_parser("wait", parents=[common], help="show state changes until the step is done",
                               description="Poll the cluster (and step) and print each state change; "
                                           "exit non-zero when the step fails. Without --step-id: until "
                                           "the cluster is ready.")
    wait.add_argument("--cluster-id", required=True, help="the cluster (j-...)")
    wait.add_argument("--step-id", help="the step (s-...) to wait for (default: the cluster itself)")
    wait.add_argument("--poll-seconds", type=float, default=30.0, metavar="S", help="default 30")
    wait.add_argument("--timeout", metavar="DURATION", help="give up after this long (e.g. 2h)")
    wait.set_defaults(func=wait_command)

    logs = commands.add_parser("logs", parents=[common], help="print a step's stdout/stderr from S3")
    logs.add_argument("--cluster-id", required=True, help="the cluster (j-...)")
    logs.add_argument("--step-id", help="default: the cluster's latest step")
    logs.add_argument("--stream", action="append", choices=("stdout", "stderr", "controller", "syslog"),
                      help="log file(s) to print (repeatable; default stdout and stderr)")
    logs.set_defaults(func=logs_command)

    terminate = commands.add_parser("terminate", parents=[common], help="terminate a cluster")
    terminate.add_argument("--cluster-id", required=True, help="the cluster (j-...) to terminate")
    terminate.add_argument("--wait", action="store_true", help="return once the cluster is TERMINATED")
    terminate.set_defaults(func=terminate_command)

    tunnel = commands.add_parser("tunnel", parents=[common],
                                 help="SSH port-forward to the Spark UI, History Server and JupyterHub")
    tunnel.add_argument("--cluster-id", required=True, help="the cluster (j-...) whose primary node to reach")
    tunnel.add_argument("--identity-file", metavar="FILE", help="private key (default ~/.ssh/<key name>.pem)")
    tunnel.add_argument("--run", action="store_true", help="open the tunnel (Ctrl-C closes it)")
    tunnel.set_defaults(func=tunnel_command)

    cost = commands.add_parser("cost", parents=[_common(with_aws=False)],
                               help="estimated price per hour, per run and per million images",
                               description="Estimate from orchard's price table (EC2 + EMR surcharge, "
                                           "On-Demand and Spot); no AWS call.")
    cost.add_argument("--core-count", type=int, default=DEFAULT_CORE_COUNT, metavar="N",
                      help=f"core nodes (default {DEFAULT_CORE_COUNT})")
    cost.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE,
                      help=f"core nodes' EC2 type (default {DEFAULT_INSTANCE_TYPE})")
    cost.add_argument("--primary-instance-type", help="primary node's type (default: --instance-type)")
    cost.add_argument("--autoscale", metavar="MIN:MAX",
                      help="as `cluster create --autoscale`: MIN core nodes On-Demand plus up to MAX-MIN task "
                           "nodes; prices the range from MIN to MAX nodes")
    cost.add_argument("--hours", type=float, metavar="H", help="hours the cluster runs (per-run price)")
    cost.add_argument("--images", type=int, metavar="N", help="images in a run (with --ms-per-image)")
    cost.add_argument("--ms-per-image", type=float, metavar="MS",
                      help="measured processing time of one image on one vCPU (ms): "
                           "run.json featurize seconds x cores / images")
    cost.add_argument("--startup-minutes", type=float, default=12.0, metavar="M",
                      help="billed cluster start before the step runs (default 12)")
    cost.set_defaults(func=cost_command)


# -- helpers --------------------------------------------------------------------------------
def _aws(args: argparse.Namespace) -> Aws:
    if not getattr(args, "verbose", False):  # boto3's INFO lines ("Found credentials ...") are noise
        for name in ("botocore", "boto3", "s3transfer", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)

    workers = getattr(args, "workers", 8) or 8
    return Aws(region=args.region, profile=getattr(args, "profile", None),
               dry_run=getattr(args, "dry_run", False), max_pool_connections=max(10, workers * 4))


def _emit(args: argparse.Namespace, aws, result: Dict[str, Any], text: str) -> int:
    if aws is not None and aws.dry_run:
        print(dumps({"dry_run": True, "command": _command_line(args), "region": aws.region,
                     "requests": aws.requests()}))
    elif args.json:
        print(dumps(result))
    else:
        print(text)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    return " ".join(["orchard", "aws"] + [a for a in (getattr(args, "aws_command", None),
                                                      getattr(args, "cluster_command", None)) if a])


def _info(args: argparse.Namespace, message: str) -> None:
    """Progress for people: on stderr, so --json and --dry-run output stays clean."""
    if not getattr(args, "dry_run", False):
        print(message, file=sys.stderr)


# -- commands -------------------------------------------------------------------------------
def _confirm(args: argparse.Namespace, description: str) -> bool:
    """--yes, or a person answering y at a terminal; otherwise no (said on stderr)."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"not changed: {description}; pass --yes to apply it", file=sys.stderr)
        return False
    answer = input(f"{description}\napply? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def init_command(args: argparse.Namespace) -> int:
    layout = Layout(args.bucket)
    aws = _aws(args)
    kms_key_arn = resolve_kms_key(aws, args.kms_key_id)
    result = init_bucket(aws, layout.bucket, kms_key_arn, args.log_retention_days)
    if kms_key_arn:
        result["kms_key_arn"] = kms_key_arn
    if args.use_default_roles:
        spot = "created" if ensure_spot_role(aws) else "existed"
        result["iam"] = {"service_role": DEFAULT_SERVICE_ROLE, "instance_profile": DEFAULT_EC2_ROLE,
                         "created": False, "spot_service_linked_role": spot}
    else:
        result["iam"] = init_roles(aws, layout, kms_key_arn)
    bpa = None
    if not args.skip_emr_block_public_access:
        bpa = merge_block_public_access(aws, lambda description: _confirm(args, description))
    result["emr_block_public_access"] = bpa
    if bpa is None:
        bpa_line = "left as it was (--skip-emr-block-public-access)"
    elif bpa["applied"]:
        bpa_line = f"turned on, {describe_ranges(bpa['after']['permitted'])}"
    elif bpa["change"]:
        bpa_line = f"OFF, left so (pass --yes to turn it on, {describe_ranges(bpa['after']['permitted'])})"
    else:
        bpa_line = f"on already, {describe_ranges(bpa['before']['permitted'])}: unchanged"
    iam = result["iam"]
    text = "\n".join([
        f"bucket s3://{layout.bucket} ready in {aws.region} ({'existed' if result['existed'] else 'created'}): "
        f"encryption {result['encryption']}, public access blocked, TLS-only policy, logs expire "
        f"after {args.log_retention_days} days",
        f"IAM: service role {iam['service_role']}, instance profile {iam['instance_profile']}"
        + ("" if args.use_default_roles else
           f" (S3 rights on s3://{layout.bucket} only); service role trusted in "
           f"{', '.join(iam['service_role_regions'])}")
        + f"; Spot service-linked role {iam['spot_service_linked_role']}",
        f"EMR block public access ({aws.region}, account-wide): {bpa_line}",
        f"next: orchard aws push DATASET_DIR --bucket {layout.bucket}",
    ])
    return _emit(args, aws, result, text)


def push_command(args: argparse.Namespace) -> int:
    layout = Layout(args.bucket)
    aws = _aws(args)
    if args.workers < 1:
        raise OrchardError(f"--workers must be >= 1, got {args.workers}")
    jobs = 1 if aws.dry_run else args.workers  # a dry run records its requests in order
    progress = not (args.no_progress or args.json or aws.dry_run)
    result: Dict[str, Any] = {"bucket": layout.bucket}
    spec, model_path, model_sha = resolve_model(DEFAULT_MODEL, args.model_path)
    with tempfile.TemporaryDirectory(prefix="orchard-push-") as tmp:
        if args.wheel:
            wheel = Path(args.wheel)
            if not wheel.is_file():
                raise OrchardError(f"wheel not found: {wheel}")
        else:
            _info(args, "building orchard's wheel from the checkout ...")
            wheel = build_wheel(Path(tmp) / "dist")
        if wheel.name != layout.wheel_name:
            raise OrchardError(f"{wheel.name} is not {layout.wheel_name} (this orchard's version)")
        bootstrap = write_bootstrap(Path(tmp) / "emr-bootstrap.sh", model_sha)
        python = release_line(args.release).python
        wheelhouse = _wheelhouse(args, layout, python)
        keys = {"wheel": layout.wheel_key, "bootstrap": layout.bootstrap_key, "entry": layout.entry_key,
                "model": layout.model_key(spec.file_name)}
        named = [(path, keys[name]) for name, path in
                 (("wheel", wheel), ("bootstrap", bootstrap), ("entry", ENTRY_SCRIPT), ("model", model_path))]
        artifacts = [LocalFile.of(path, key[len(ARTIFACTS_PREFIX):]) for path, key in named + wheelhouse]

        if args.dataset:
            prefix = check_prefix(args.prefix)
            files, hidden = local_files(Path(args.dataset))
            _info(args, f"{len(files)} files under {args.dataset}: comparing with {layout.uri(prefix)} ...")
            counts = upload(files, BucketTarget(aws, layout.bucket, prefix), jobs, progress, "images", hidden)
            result["dataset"] = {"uri": layout.uri(prefix), "files": len(files), **_uploaded(counts)}
        counts = upload(artifacts, BucketTarget(aws, layout.bucket, ARTIFACTS_PREFIX), jobs, progress, "artefacts")
        result["artifacts"] = {"uris": {name: layout.uri(key) for name, key in keys.items()},
                               "wheelhouse": {"uri": layout.uri(layout.wheelhouse_prefix_for(python)),
                                              "python": python, "files": len(wheelhouse)},
                               **_uploaded(counts)}
    lines = []
    if "dataset" in result:
        d = result["dataset"]
        lines.append(f"images: {d['uploaded']} uploaded ({d['bytes'] / 1e6:.1f} MB), {d['skipped']} already "
                     f"there, {d['hidden']} hidden left home -> {d['uri']}")
    a = result["artifacts"]
    lines.append(f"artefacts: {a['uploaded']} uploaded, {a['skipped']} unchanged")
    lines += [f"  {name}: {uri}" for name, uri in a["uris"].items()]
    lines.append(f"  wheelhouse: {a['wheelhouse']['uri']} ({a['wheelhouse']['files']} files)")
    release = "" if args.release == DEFAULT_RELEASE else f" --release {args.release}"
    lines.append(f"next: orchard aws cluster create --bucket {layout.bucket}{release}")
    return _emit(args, aws, result, "\n".join(lines))


def _uploaded(counts: Dict[str, int]) -> Dict[str, int]:
    """The sync engine's counts as `aws push` reports them."""
    return {"uploaded": counts["copied"], "skipped": counts["skipped"], "hidden": counts["hidden"],
            "bytes": counts["bytes"]}


def _wheelhouse(args: argparse.Namespace, layout: Layout, python: str) -> List[Tuple[Path, str]]:
    """(path, key) of the wheelhouse's files for nodes running Python `python`: --wheelhouse DIR,
    else built from that Python's lock (cached)."""
    if args.wheelhouse:
        folder = Path(args.wheelhouse)
    else:
        _info(args, f"the nodes' wheelhouse for Python {python} (pip download, cached after the first push) ...")
        folder = build_wheelhouse(lock_file_for(python), python=python)
    prefix = layout.wheelhouse_prefix_for(python)
    return [(path, prefix + relative) for relative, path in wheelhouse_files(folder)]


def bootstrap_command(args: argparse.Namespace) -> int:
    model_sha = get_spec(DEFAULT_MODEL).sha256
    if not args.output:
        text = render_bootstrap(model_sha)
        if args.json:
            print(json.dumps({"sha256": sha256_text(text), "script": text}, indent=2))
        else:
            sys.stdout.write(text)
        return 0
    path = write_bootstrap(Path(args.output), model_sha)
    result = {"path": str(path), "sha256": sha256_text(path.read_text(encoding="utf-8"))}
    return _emit(args, None, result, f"wrote {path} (sha256 {result['sha256'][:12]}...)")


def cluster_create_command(args: argparse.Namespace) -> int:
    layout = Layout(args.bucket)
    aws = _aws(args)
    model = get_spec(DEFAULT_MODEL)
    spec = ClusterSpec(
        layout=layout, region=aws.region, release=args.release, instance_type=args.instance_type,
        primary_instance_type=args.primary_instance_type, core_count=args.core_count, spot=args.spot,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None, idle_timeout_s=parse_duration(args.idle_timeout), key_name=args.key_name,
        ssh_cidr=args.ssh_cidr, subnet_id=args.subnet_id,
        service_role=DEFAULT_SERVICE_ROLE if args.use_default_roles else SERVICE_ROLE,
        instance_profile=DEFAULT_EC2_ROLE if args.use_default_roles else layout.ec2_role,
        model_file=model.file_name, model_sha256=model.sha256, name=args.name,
    ).validate()
    if spec.key_name and not spec.ssh_cidr:
        _info(args, "note: --key-name without --ssh-cidr: no SSH is allowed in, so no tunnel")
    result = create_cluster(aws, spec)
    primary = spec.primary_instance_type or spec.instance_type
    text = "\n".join([
        f"cluster {result['cluster_id']} starting: {result['name']}, {spec.release}, 1 x {primary} + "
        f"{spec.core_count} x {spec.instance_type}{' (Spot)' if spec.spot and not spec.autoscale else ''}"
        + (f", managed scaling up to {spec.autoscale[1]} worker nodes (task nodes"
           f"{' on Spot' if spec.spot else ''})" if spec.autoscale else ""),
        f"auto-terminates after {args.idle_timeout} idle; logs: {result['log_uri']}",
        f"next: orchard aws wait --cluster-id {result['cluster_id']}  (about 10 minutes)",
    ])
    return _emit(args, aws, result, text)


def submit_command(args: argparse.Namespace) -> int:
    layout = Layout(args.bucket)
    aws = _aws(args)
    options: List[str] = []
    for flag, value in (("--pca-variance", args.pca_variance), ("--pca-k", args.pca_k),
                        ("--batch-size", args.batch_size), ("--partitions", args.partitions)):
        if value is not None:
            options += [flag, str(value)]
    if args.overwrite:
        options.append("--overwrite")
    request = step_request(args.cluster_id, layout, args.input or layout.data_uri,
                           args.output or layout.run_uri(utc_stamp()), get_spec(DEFAULT_MODEL).file_name,
                           options, args.deploy_mode, args.name)
    result = submit(aws, request)
    text = "\n".join([
        f"step {result['step_id']} added to {result['cluster_id']}: orchard run -> {result['output']}",
        f"next: orchard aws wait --cluster-id {result['cluster_id']} --step-id {result['step_id']}",
    ])
    return _emit(args, aws, result, text)


def wait_command(args: argparse.Namespace) -> int:
    aws = _aws(args)
    echo_to = sys.stderr if (args.json or args.dry_run) else sys.stdout
    result = wait(aws, args.cluster_id, args.step_id, poll_s=args.poll_seconds,
                  timeout_s=parse_duration(args.timeout) if args.timeout else None,
                  echo=lambda line: print(line, file=echo_to, flush=True))
    what = f"step {args.step_id} {result['step_state']}" if args.step_id else \
        f"cluster {args.cluster_id} {result['cluster_state']}"
    return _emit(args, aws, result, f"done: {what}")


def logs_command(args: argparse.Namespace) -> int:
    aws = _aws(args)
    streams = tuple(args.stream or ("stdout", "stderr"))
    result = step_logs(aws, args.cluster_id, args.step_id, streams)
    parts = []
    for stream, text in result["logs"].items():
        parts.append(f"==> {result['uri']}{stream}.gz <==")
        parts.append(text.rstrip("\n") if text is not None else
                     "(not there yet: EMR copies step logs to S3 every few minutes and when the step ends)")
    return _emit(args, aws, result, "\n".join(parts))


def terminate_command(args: argparse.Namespace) -> int:
    aws = _aws(args)
    echo_to = sys.stderr if (args.json or args.dry_run) else sys.stdout
    result = terminate(aws, args.cluster_id, wait_s=3600.0 if args.wait else None,
                       echo=lambda line: print(line, file=echo_to, flush=True))
    if result["requested"]:
        text = f"cluster {args.cluster_id} {result['state'].lower()}"
    else:
        text = f"cluster {args.cluster_id} already {result['state']}"
    return _emit(args, aws, result, text)


def tunnel_command(args: argparse.Namespace) -> int:
    aws = _aws(args)
    result = build_tunnel_command(aws, args.cluster_id, args.identity_file)
    line = shlex.join(result["command"])
    text = "\n".join([line] + [f"  {result['urls'][name]:<26} {TUNNEL_PORTS[name][1]}"
                               for name in TUNNEL_PORTS])
    if not args.run or aws.dry_run:
        return _emit(args, aws, {**result, "command_line": line}, text)
    if not shutil.which("ssh"):
        raise OrchardError("ssh not found: install an OpenSSH client")
    print(text, file=sys.stderr)
    print("tunnel open; Ctrl-C closes it", file=sys.stderr)
    return subprocess.call(result["command"])


def cost_command(args: argparse.Namespace) -> int:
    result = estimate(args.instance_type, args.core_count, hours=args.hours, images=args.images,
                      autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
                      ms_per_image=args.ms_per_image, primary_type=args.primary_instance_type,
                      startup_hours=args.startup_minutes / 60.0, region=args.region)
    return _emit(args, None, result, format_estimate(result))
