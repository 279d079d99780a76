"""EMR: the cluster (RunJobFlow), its network, the step running `orchard run`, and what follows
(wait, logs, terminate, SSH tunnel); the account's EMR block-public-access setting.

Two release lines: EMR 7.x (Spark 3.5, Scala 2.12; orchard's nodes run Python 3.9) and the
Spark 4 line, emr-spark-8.x (Spark 4.0, Scala 2.13, Python 3.11+, no Hadoop or JupyterHub
application). On EMR 7.10 and later (and on emr-spark-8), Spark reads and writes `s3://` URIs
through S3A (Hadoop's connector), no longer EMRFS; orchard's URIs stay plain `s3://bucket/key`
(no `s3a://`, no EMRFS-only settings) and the nodes' role gives the bucket's rights either way.
"""
from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from orchard.cloud.api import Aws, AwsError, Request
from orchard.cloud.iam import check_roles
from orchard.cloud.layout import (
    EMR_MANAGED_TAG, NODE_PYTHON, PROJECT_TAG, Layout, node_model_path,
)
from orchard.cloud.pricing import instance_price
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

DEFAULT_RELEASE = "emr-7.13.0"  # Spark 3.5.6, Hadoop 3.4, JupyterHub; Python 3.9 on the nodes
SPARK4_RELEASE = "emr-spark-8.0.0"  # Spark 4.0.2, Scala 2.13; Python 3.11 on the nodes
DEFAULT_INSTANCE_TYPE = "m5.xlarge"
DEFAULT_CORE_COUNT = 3
DEFAULT_IDLE_TIMEOUT = "1h"
# The security groups EMR creates in a VPC the first time, and reuses: made before 2021 (or by
# EMR's v1 policy) they lack the tag AmazonEMRServicePolicy_v2 needs to manage them.
EMR_DEFAULT_GROUPS = ("ElasticMapReduce-master", "ElasticMapReduce-slave",
                      "ElasticMapReduce-ServiceAccess")
MIN_IDLE_S, MAX_IDLE_S = 60, 7 * 24 * 3600  # what EMR's AutoTerminationPolicy accepts
MIN_SSH_PREFIX = 8  # an --ssh-cidr wider than a /8 is refused (0.0.0.0/0 above all)

CLUSTER_DONE = ("TERMINATED", "TERMINATED_WITH_ERRORS")
CLUSTER_READY = ("WAITING", "RUNNING")
STEP_DONE_OK = ("COMPLETED",)
STEP_DONE_BAD = ("FAILED", "CANCELLED", "INTERRUPTED")
LOG_STREAMS = ("stdout", "stderr", "controller", "syslog")

# Ports on the primary node reached through the SSH tunnel.
TUNNEL_PORTS = {
    "spark_ui": (4040, "Spark UI of the running application (the step's driver)"),
    "spark_history": (18080, "Spark History Server"),
    "yarn": (8088, "YARN ResourceManager (links to every application's UI)"),
    "jupyterhub": (9443, "JupyterHub (https)"),
}


# -- parsing and checks ---------------------------------------------------------------------
def parse_duration(text: str) -> int:
    """'1h', '90m', '1h30m', '45s', '3600' -> seconds."""
    cleaned = text.strip().lower()
    if cleaned.isdigit():
        return int(cleaned)
    parts = re.findall(r"(\d+)\s*([dhms])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", cleaned):
        raise OrchardError(f"invalid duration {text!r}: use e.g. 1h, 90m, 1h30m or seconds")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * unit[u] for n, u in parts)


def check_ssh_cidr(cidr: str) -> str:
    """A CIDR SSH may come from: a specific network, never the whole internet."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise OrchardError(f"invalid --ssh-cidr {cidr!r}: expected e.g. 203.0.113.7/32") from None
    if network.version != 4:
        raise OrchardError("--ssh-cidr: give an IPv4 network (e.g. your address/32)")
    if network.prefixlen < MIN_SSH_PREFIX:
        raise OrchardError(
            f"--ssh-cidr {cidr} opens SSH to {network.num_addresses:,} addresses; orchard never "
            f"opens SSH to the world: give your own address (e.g. `curl -s https://checkip."
            f"amazonaws.com`/32) or your network, /{MIN_SSH_PREFIX} or narrower"
        )
    return str(network)


@dataclass(frozen=True)
class ReleaseLine:
    """What orchard sets up differently per EMR release line."""

    name: str
    label: str  # regular expression of the release labels
    spark: str
    python: str  # the nodes' Python orchard's virtual environment is made from (major.minor)
    applications: Tuple[str, ...]
    notebooks: bool  # JupyterHub is an application of this line (its S3 persistence is set)


RELEASE_LINES = (
    ReleaseLine("EMR 7", r"^emr-7\.\d+\.\d+$", "3.5", "3.9", ("Spark", "Hadoop", "JupyterHub"), True),
    # no Hadoop application (YARN and HDFS come with Spark), no JupyterHub: notebooks go through
    # EMR Studio, which reaches the cluster through Jupyter Enterprise Gateway and Livy
    ReleaseLine("EMR Spark 8", r"^emr-spark-8\.\d+\.\d+$", "4.0", "3.11",
                ("Spark", "Livy", "JupyterEnterpriseGateway"), False),
)


def release_line(release: str) -> ReleaseLine:
    """The line of an EMR release label; OrchardError for a release orchard does not target."""
    for line in RELEASE_LINES:
        if re.match(line.label, release):
            return line
    raise OrchardError(f"--release {release!r}: orchard targets EMR 7 (emr-7.x.y, e.g. {DEFAULT_RELEASE}, "
                       f"Spark 3.5) and the Spark 4 line (emr-spark-8.x.y, e.g. {SPARK4_RELEASE})")


def check_release(release: str) -> str:
    release_line(release)
    return release


def parse_autoscale(text: str) -> Tuple[int, int]:
    """'3:10' -> (3, 10): the fewest and the most worker nodes (core + task) of a cluster."""
    match = re.match(r"^\s*(\d+)\s*:\s*(\d+)\s*$", text or "")
    if not match:
        raise OrchardError(f"--autoscale {text!r}: use MIN:MAX worker nodes, e.g. 2:10")
    low, high = int(match[1]), int(match[2])
    if low < 1 or high < low:
        raise OrchardError(f"--autoscale {text}: need 1 <= MIN <= MAX")
    return low, high


def check_s3_uri(uri: str, what: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "hdfs") or (parsed.scheme == "s3" and not parsed.netloc):
        raise OrchardError(f"{what} must be an s3://bucket/prefix (or hdfs://) URI, got {uri!r}")
    return uri


# -- the cluster ------------------------------------------------------------------------------
@dataclass
class ClusterSpec:
    """Everything `cluster create` decides; `run_job_flow_params` turns it into the request."""

    layout: Layout
    region: str
    release: str = DEFAULT_RELEASE
    instance_type: str = DEFAULT_INSTANCE_TYPE
    primary_instance_type: Optional[str] = None
    core_count: int = DEFAULT_CORE_COUNT
    spot: bool = False
    autoscale: Optional[Tuple[int, int]] = None  # (min, max) worker nodes: managed scaling
    idle_timeout_s: int = 3600
    key_name: Optional[str] = None
    ssh_cidr: Optional[str] = None
    subnet_id: Optional[str] = None
    service_role: str = ""
    instance_profile: str = ""
    model_file: str = "mobilenet_v2_1.0_224.onnx"
    model_sha256: str = ""
    name: Optional[str] = None
    extra_tags: Dict[str, str] = field(default_factory=dict)

    def validate(self) -> "ClusterSpec":
        check_release(self.release)
        if self.core_count < 1:
            raise OrchardError(f"--core-count must be >= 1, got {self.core_count}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if low < 1 or high < low:
                raise OrchardError(f"--autoscale {low}:{high}: need 1 <= MIN <= MAX")
            self.core_count = low
        if not MIN_IDLE_S <= self.idle_timeout_s <= MAX_IDLE_S:
            raise OrchardError(f"--idle-timeout must be between 1m and 7d, got {self.idle_timeout_s} s")
        if self.ssh_cidr:
            self.ssh_cidr = check_ssh_cidr(self.ssh_cidr)
            if not self.key_name:
                raise OrchardError("--ssh-cidr needs --key-name (an EC2 key pair): SSH logs in with it")
        return self


def vcpus_of(instance_type: str) -> Optional[int]:
    try:
        return instance_price(instance_type).vcpu
    except OrchardError:
        return None


def spark_defaults(spec: ClusterSpec) -> Dict[str, str]:
    """Spark settings for the pipeline on this cluster shape (spark-defaults classification)."""
    conf = {
        # Arrow batches of 64 rows = one ONNX inference call (orchard's --batch-size default)
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
        # keep each Python worker, and its loaded ONNX Runtime session, across tasks
        "spark.python.worker.reuse": "true",
        # 2 tasks per executor, 2 executors per m5.xlarge (4 vCPU, 12 GiB for YARN); the
        # Python workers (model, activations, Arrow batches) live outside the JVM heap:
        # they are what the memory overhead is for.
        "spark.executor.cores": "2",
        "spark.executor.memory": "3g",
        "spark.executor.memoryOverhead": "2g",
        # orchard's virtual environment (the bootstrap makes it on every node), also for the
        # sessions JupyterHub starts through Livy; the nodes' system Python stays untouched
        "spark.pyspark.python": NODE_PYTHON,
        "spark.pyspark.driver.python": NODE_PYTHON,
    }
    vcpus = vcpus_of(spec.instance_type)
    if vcpus:
        # with dynamic allocation, few executors exist when orchard sizes its partitions:
        # tell Spark the cluster's real task slots (orchard reads defaultParallelism)
        conf["spark.default.parallelism"] = str(vcpus * spec.core_count)
    return conf


def configurations(spec: ClusterSpec) -> List[Dict[str, Any]]:
    found = [
        {"Classification": "spark-defaults", "Properties": spark_defaults(spec)},
        # the cluster's own Delta Lake on Spark's classpath (EMR release guide, "Delta Lake":
        # delta-defaults, delta.enabled); orchard's sessions add its SQL extension and catalog
        {"Classification": "delta-defaults", "Properties": {"delta.enabled": "true"}},
        {"Classification": "spark-env", "Properties": {}, "Configurations": [
            {"Classification": "export", "Properties": {
                "PYSPARK_PYTHON": NODE_PYTHON, "PYSPARK_DRIVER_PYTHON": NODE_PYTHON}},
        ]},
    ]
    if release_line(spec.release).notebooks:
        # JupyterHub notebooks saved to s3://B/jupyter/ (they outlive the cluster)
        found.append({"Classification": "jupyter-s3-conf", "Properties": {
            "s3.persistence.enabled": "true", "s3.persistence.bucket": spec.layout.bucket}})
    return found


def bootstrap_action(spec: ClusterSpec) -> Dict[str, Any]:
    layout = spec.layout
    python = release_line(spec.release).python
    args = [layout.uri(layout.wheel_key), layout.uri(layout.wheelhouse_prefix_for(python)),
            layout.uri(layout.model_key(spec.model_file)), spec.model_sha256, python]
    return {"Name": "orchard: virtual environment (locked libraries, orchard wheel), model",
            "ScriptBootstrapAction": {"Path": layout.uri(layout.bootstrap_key), "Args": args}}


def cluster_tags(spec: ClusterSpec) -> List[Dict[str, str]]:
    tags = {PROJECT_TAG[0]: PROJECT_TAG[1], "orchard:bucket": spec.layout.bucket,
            EMR_MANAGED_TAG: "true", **spec.extra_tags}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def run_job_flow_params(spec: ClusterSpec, subnet_id: str,
                        ssh_group_id: Optional[str] = None) -> Dict[str, Any]:
    """The RunJobFlow request of `cluster create`."""
    instances: Dict[str, Any] = {
        "InstanceGroups": instance_groups(spec),
        "KeepJobFlowAliveWhenNoSteps": True,  # auto-termination ends it once idle
        "TerminationProtected": False,
        "Ec2SubnetId": subnet_id,
    }
    if spec.key_name:
        instances["Ec2KeyName"] = spec.key_name
    if ssh_group_id:
        instances["AdditionalMasterSecurityGroups"] = [ssh_group_id]
    params: Dict[str, Any] = {
        "Name": spec.name or f"orchard-{spec.layout.bucket}",
        "ReleaseLabel": spec.release,
        "LogUri": spec.layout.log_uri,
        "Applications": [{"Name": name} for name in release_line(spec.release).applications],
        "Instances": instances,
        "BootstrapActions": [bootstrap_action(spec)],
        "Configurations": configurations(spec),
        "ServiceRole": spec.service_role,
        "JobFlowRole": spec.instance_profile,
        "VisibleToAllUsers": True,
        "AutoTerminationPolicy": {"IdleTimeout": spec.idle_timeout_s},
        "ScaleDownBehavior": "TERMINATE_AT_TASK_COMPLETION",
        "StepConcurrencyLevel": 1,
        "Tags": cluster_tags(spec),
    }
    return params


def instance_groups(spec: ClusterSpec) -> List[Dict[str, Any]]:
    """Primary (On-Demand), core (`core_count`), and with --autoscale a task group that starts
    empty: managed scaling adds task nodes there (Spot with --spot), the core nodes stay."""
    groups = [
        {"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
         "InstanceType": spec.primary_instance_type or spec.instance_type, "InstanceCount": 1},
        {"Name": "core", "InstanceRole": "CORE",
         "Market": "SPOT" if spec.spot and not spec.autoscale else "ON_DEMAND",
         "InstanceType": spec.instance_type, "InstanceCount": spec.core_count},
    ]
    if spec.autoscale:
        groups.append({"Name": "task", "InstanceRole": "TASK", "Market": "SPOT" if spec.spot else "ON_DEMAND",
                       "InstanceType": spec.instance_type, "InstanceCount": 0})
    return groups


def managed_scaling_policy(spec: ClusterSpec) -> Optional[Dict[str, Any]]:
    """The managed-scaling policy of --autoscale MIN:MAX, or None without it.

    Units are instances (core + task nodes, the primary not counted). The core nodes stay at
    MIN (they hold HDFS and the YARN application masters: removing them is slow and risky); EMR
    adds and removes task nodes up to MAX. With --spot, at most MIN units are On-Demand (the
    core nodes), so every task node is Spot.
    """
    if not spec.autoscale:
        return None
    low, high = spec.autoscale
    limits = {"UnitType": "Instances", "MinimumCapacityUnits": low, "MaximumCapacityUnits": high,
              "MaximumCoreCapacityUnits": low}
    if spec.spot:
        limits["MaximumOnDemandCapacityUnits"] = low
    return {"ComputeLimits": limits}


def put_managed_scaling(cluster_id: str, policy: Dict[str, Any]) -> Request:
    return Request("emr", "PutManagedScalingPolicy", {"ClusterId": cluster_id, "ManagedScalingPolicy": policy},
                   why="--autoscale: EMR sizes the cluster between MIN and MAX worker nodes")


def get_block_public_access() -> Request:
    return Request("emr", "GetBlockPublicAccessConfiguration", {},
                   why="the account's setting in this region, to merge into (never replaced)")


def put_block_public_access(permitted: List[Dict[str, int]]) -> Request:
    return Request("emr", "PutBlockPublicAccessConfiguration", {
        "BlockPublicAccessConfiguration": {
            "BlockPublicSecurityGroupRules": True,
            "PermittedPublicSecurityGroupRuleRanges": permitted,
        },
    }, why="only if it was off: EMR then refuses to start any cluster of this account and region "
           "whose security groups open a port to 0.0.0.0/0 or ::/0, except the port ranges "
           "already permitted (kept)")


def block_public_access_plan(current: Dict[str, Any]) -> Dict[str, Any]:
    """What `init` changes in the account's EMR block public access (per account and region).

    `current` is GetBlockPublicAccessConfiguration's answer. Orchard turns the block on and
    keeps the permitted port ranges (AWS's default permits 22); nothing else changes. Returns
    {before, after: {block, permitted}, change: bool}.
    """
    config = current.get("BlockPublicAccessConfiguration") or {}
    permitted = [{k: v for k, v in r.items() if k in ("MinRange", "MaxRange") and v is not None}
                 for r in config.get("PermittedPublicSecurityGroupRuleRanges") or []]
    before = {"block": bool(config.get("BlockPublicSecurityGroupRules")), "permitted": permitted}
    after = {"block": True, "permitted": permitted}
    return {"before": before, "after": after, "change": before != after}


def describe_ranges(permitted: List[Dict[str, int]]) -> str:
    ports = [str(r["MinRange"]) if r.get("MaxRange", r["MinRange"]) == r["MinRange"]
             else f"{r['MinRange']}-{r['MaxRange']}" for r in permitted]
    return f"ports {', '.join(ports)} permitted" if ports else "no port permitted"


def merge_block_public_access(aws: Aws, confirm: Callable[[str], bool]) -> Dict[str, Any]:
    """Read the account's EMR block public access; when off, turn it on (keeping the permitted
    ranges) if `confirm(description)` agrees. Returns the plan plus {applied: bool}."""
    plan = block_public_access_plan(aws.call(get_block_public_access()))
    plan["applied"] = False
    if plan["change"]:
        description = (f"EMR block public access in {aws.region} (every cluster of this account "
                       f"there): off -> on, {describe_ranges(plan['after']['permitted'])}")
        plan["description"] = description
        if aws.dry_run or confirm(description):
            aws.call(put_block_public_access(plan["after"]["permitted"]))
            plan["applied"] = True
    return plan


# -- network ----------------------------------------------------------------------------------
def resolve_subnet(aws: Aws, subnet_id: Optional[str]) -> Tuple[str, str]:
    """(subnet id, vpc id): the given subnet, else a default subnet of the default VPC."""
    if subnet_id:
        subnets = aws.call(Request("ec2", "DescribeSubnets", {"SubnetIds": [subnet_id]},
                                   why="the subnet's VPC"))["Subnets"]
        return subnets[0]["SubnetId"], subnets[0]["VpcId"]
    vpcs = aws.call(Request("ec2", "DescribeVpcs", {
        "Filters": [{"Name": "is-default", "Values": ["true"]}]}, why="the default VPC"))["Vpcs"]
    if not vpcs:
        raise OrchardError(f"no default VPC in {aws.region}: pass --subnet-id of a subnet with a "
                           "route to the internet (or S3 and EMR VPC endpoints)")
    vpc_id = vpcs[0]["VpcId"]
    subnets = aws.call(Request("ec2", "DescribeSubnets", {"Filters": [
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}]},
        why="a default subnet of the default VPC"))["Subnets"]
    if not subnets:
        raise OrchardError(f"the default VPC {vpc_id} has no default subnet: pass --subnet-id")
    subnet = sorted(subnets, key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))[0]
    return subnet["SubnetId"], vpc_id


def tag_for_emr(resources: List[str]) -> Request:
    return Request("ec2", "CreateTags", {
        "Resources": resources, "Tags": [{"Key": EMR_MANAGED_TAG, "Value": "true"}],
    }, why="AmazonEMRServicePolicy_v2 launches only into VPCs/subnets/groups tagged so "
           "(EMR's own default groups included, when they exist already)")


def emr_default_groups(aws: Aws, vpc_id: str) -> List[str]:
    """Ids of EMR's default security groups already in `vpc_id` (EMR reuses them by name)."""
    groups = aws.call(Request("ec2", "DescribeSecurityGroups", {"Filters": [
        {"Name": "group-name", "Values": list(EMR_DEFAULT_GROUPS)},
        {"Name": "vpc-id", "Values": [vpc_id]}]},
        why="EMR's default groups, if an earlier cluster made them: they need the v2 policy's tag"))
    return sorted(group["GroupId"] for group in groups["SecurityGroups"])


def ensure_ssh_group(aws: Aws, layout: Layout, vpc_id: str, cidr: str) -> str:
    """A security group letting SSH (22/tcp) in from `cidr` only; other sources are revoked."""
    name = layout.security_group
    groups = aws.call(Request("ec2", "DescribeSecurityGroups", {"Filters": [
        {"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]},
        why="reuse orchard's SSH group if it exists"))["SecurityGroups"]
    if groups:
        group_id = groups[0]["GroupId"]
        stale = []
        for permission in groups[0].get("IpPermissions", []):
            ranges = [r for r in permission.get("IpRanges", []) if r.get("CidrIp") != cidr]
            others = permission.get("Ipv6Ranges", []) or permission.get("UserIdGroupPairs", [])
            if ranges or others or permission.get("FromPort") != 22:
                stale.append({k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort",
                                                         "IpRanges", "Ipv6Ranges", "UserIdGroupPairs")
                              if k in permission and permission[k] not in ([], None)})
        if stale:
            aws.call(Request("ec2", "RevokeSecurityGroupIngress", {"GroupId": group_id,
                                                                    "IpPermissions": stale},
                             why="SSH only from the CIDR given this time"))
    else:
        group_id = aws.call(Request("ec2", "CreateSecurityGroup", {
            "GroupName": name, "VpcId": vpc_id,
            "Description": f"orchard: SSH to the EMR primary node from {cidr} only",
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": [
                {"Key": PROJECT_TAG[0], "Value": PROJECT_TAG[1]}, {"Key": EMR_MANAGED_TAG, "Value": "true"}]}],
        }, why="SSH access for the tunnel, from one network"))["GroupId"]
    aws.call(Request("ec2", "AuthorizeSecurityGroupIngress", {"GroupId": group_id, "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": cidr, "Description": "orchard aws tunnel"}]}]},
        ok_errors=("InvalidPermission.Duplicate",), why=f"22/tcp from {cidr} only"))
    return group_id


def check_artifacts(aws: Aws, spec: ClusterSpec) -> None:
    """Fail before paying for a cluster whose bootstrap would not find its files."""
    layout = spec.layout
    missing = []
    python = release_line(spec.release).python
    for key in (layout.bootstrap_key, layout.wheel_key, layout.wheelhouse_lock_key_for(python), layout.entry_key,
                layout.model_key(spec.model_file)):
        head = aws.try_call(Request("s3", "HeadObject", {"Bucket": layout.bucket, "Key": key},
                                    why="the artefact the cluster needs is in the bucket"),
                            missing=("404", "NoSuchKey", "NotFound", "403"))
        if head is None:
            missing.append(layout.uri(key))
    if missing:
        raise OrchardError(f"missing in the bucket: {', '.join(missing)}; run "
                           f"`orchard aws push --bucket {layout.bucket} --release {spec.release}` first")


def run_job_flow(aws: Aws, request: Request, tries: int = 6, pause_s: float = 10.0) -> Dict[str, Any]:
    """RunJobFlow, retried while IAM has not yet propagated a role made moments ago by `init`
    (EMR then answers ValidationException about the role or instance profile, creating nothing)."""
    for attempt in range(1, tries + 1):
        try:
            return aws.call(request)
        except AwsError as error:
            message = str(error).lower()
            about_iam = any(word in message for word in ("instance profile", "instanceprofile", "role"))
            if attempt == tries or error.code != "ValidationException" or not about_iam:
                raise
            log.info("IAM not ready yet (%s); retrying in %.0f s", error, pause_s)
            _sleep(pause_s)
    raise AssertionError("unreachable")


def create_cluster(aws: Aws, spec: ClusterSpec) -> Dict[str, Any]:
    """Check, prepare the network, then RunJobFlow. Returns {cluster_id, ...}."""
    spec.validate()
    check_roles(aws, spec.service_role, spec.instance_profile)
    check_artifacts(aws, spec)
    subnet_id, vpc_id = resolve_subnet(aws, spec.subnet_id)
    group_id = ensure_ssh_group(aws, spec.layout, vpc_id, spec.ssh_cidr) if spec.ssh_cidr else None
    emr_groups = emr_default_groups(aws, vpc_id)
    aws.call(tag_for_emr([vpc_id, subnet_id] + ([group_id] if group_id else []) + emr_groups))
    params = run_job_flow_params(spec, subnet_id, group_id)
    response = run_job_flow(aws, Request("emr", "RunJobFlow", params, why="the cluster"))
    policy = managed_scaling_policy(spec)
    if policy:
        aws.call(put_managed_scaling(response["JobFlowId"], policy))
    return {"cluster_id": response["JobFlowId"], "name": params["Name"], "region": aws.region,
            "release": spec.release, "subnet_id": subnet_id, "ssh_security_group": group_id,
            "log_uri": spec.layout.log_uri, "emr_default_groups_tagged": emr_groups,
            "idle_timeout_s": spec.idle_timeout_s, "managed_scaling": policy}


# -- the step ---------------------------------------------------------------------------------
def orchard_run_args(input_uri: str, output_uri: str, model_path: str,
                     options: Optional[List[str]] = None) -> List[str]:
    """The `orchard run` arguments of a step (the same CLI as on a laptop)."""
    return ["run", "--input", input_uri, "--output", output_uri, "--model-path", model_path,
            *(options or [])]


def spark_submit_args(entry: str, run_args: List[str], master: str = "yarn",
                      deploy_mode: str = "client", conf: Optional[Dict[str, str]] = None) -> List[str]:
    """`spark-submit ... ENTRY run ...`: the step's command, also what the local test runs."""
    args = ["spark-submit", "--master", master, "--deploy-mode", deploy_mode]
    for key, value in sorted((conf or {}).items()):
        args += ["--conf", f"{key}={value}"]
    return args + [entry] + run_args


def utc_stamp(now: Optional[dt.datetime] = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def step_request(cluster_id: str, layout: Layout, input_uri: str, output_uri: str,
                 model_file: str = "mobilenet_v2_1.0_224.onnx", options: Optional[List[str]] = None,
                 deploy_mode: str = "client", name: Optional[str] = None,
                 action_on_failure: str = "CONTINUE") -> Request:
    """AddJobFlowSteps: spark-submit of the entry script in the bucket, `orchard run` arguments."""
    check_s3_uri(input_uri, "--input")
    check_s3_uri(output_uri, "--output")
    run_args = orchard_run_args(input_uri, output_uri, node_model_path(model_file), options)
    args = spark_submit_args(layout.uri(layout.entry_key), run_args, deploy_mode=deploy_mode)
    return Request("emr", "AddJobFlowSteps", {"JobFlowId": cluster_id, "Steps": [{
        "Name": name or f"orchard run {input_uri} -> {output_uri}",
        "ActionOnFailure": action_on_failure,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
    }]}, why="spark-submit of `orchard run` on the cluster")


def submit(aws: Aws, request: Request) -> Dict[str, Any]:
    response = aws.call(request)
    step = request.params["Steps"][0]
    args = step["HadoopJarStep"]["Args"]
    return {"cluster_id": request.params["JobFlowId"], "step_id": response["StepIds"][0],
            "output": args[args.index("--output") + 1], "args": args}


# -- following a cluster ----------------------------------------------------------------------
def describe_cluster(aws: Aws, cluster_id: str) -> Dict[str, Any]:
    return aws.call(Request("emr", "DescribeCluster", {"ClusterId": cluster_id}))["Cluster"]


def latest_step_id(aws: Aws, cluster_id: str) -> Optional[str]:
    steps = aws.call(Request("emr", "ListSteps", {"ClusterId": cluster_id}))["Steps"]
    return steps[0]["Id"] if steps else None  # EMR lists the most recent first


def describe_step(aws: Aws, cluster_id: str, step_id: str) -> Dict[str, Any]:
    return aws.call(Request("emr", "DescribeStep", {"ClusterId": cluster_id, "StepId": step_id}))["Step"]


def _reason(status: Dict[str, Any]) -> str:
    details = status.get("FailureDetails") or {}
    change = status.get("StateChangeReason") or {}
    text = "; ".join(str(x) for x in (details.get("Reason"), details.get("Message"),
                                       details.get("LogFile"), change.get("Message")) if x)
    return f" ({text})" if text else ""


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def wait(aws: Aws, cluster_id: str, step_id: Optional[str] = None, poll_s: float = 30.0,
         timeout_s: Optional[float] = None, echo: Callable[[str], None] = print,
         sleep: Optional[Callable[[float], None]] = None,
         clock: Callable[[], float] = time.monotonic) -> Dict[str, Any]:
    """Print state changes until the step ends (or, without a step, the cluster is ready).

    Returns {cluster_id, cluster_state, step_id, step_state}; raises OrchardError when the step
    fails or the cluster ends first.
    """
    started = clock()
    last: Tuple[Optional[str], Optional[str]] = (None, None)
    while True:
        cluster = describe_cluster(aws, cluster_id)
        cluster_state = cluster["Status"]["State"]
        step_state, step = None, None
        if step_id:
            step = describe_step(aws, cluster_id, step_id)
            step_state = step["Status"]["State"]
        if (cluster_state, step_state) != last:
            stamp = dt.datetime.now().strftime("%H:%M:%S")
            echo(f"{stamp} cluster {cluster_id} {cluster_state}"
                 + (f", step {step_id} {step_state}" if step_id else ""))
            last = (cluster_state, step_state)
        result = {"cluster_id": cluster_id, "cluster_state": cluster_state,
                  "step_id": step_id, "step_state": step_state}
        if step_id and step_state in STEP_DONE_OK:
            return result
        if step_id and step_state in STEP_DONE_BAD:
            raise OrchardError(f"step {step_id} {step_state}{_reason(step['Status'])}: "
                               f"see `orchard aws logs --cluster-id {cluster_id} --step-id {step_id}`")
        if cluster_state in CLUSTER_DONE:
            raise OrchardError(f"cluster {cluster_id} {cluster_state}{_reason(cluster['Status'])}")
        if not step_id and cluster_state in CLUSTER_READY:
            return result
        if aws.dry_run:
            return result
        if timeout_s is not None and clock() - started > timeout_s:
            raise OrchardError(f"still {cluster_state}" + (f"/{step_state}" if step_id else "")
                               + f" after {timeout_s:.0f} s (the cluster keeps running)")
        (sleep or _sleep)(poll_s)


def parse_s3_uri(uri: str) -> Tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3n", "s3a") or not parsed.netloc:
        raise OrchardError(f"not an S3 URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def step_logs(aws: Aws, cluster_id: str, step_id: Optional[str] = None,
              streams: Tuple[str, ...] = ("stdout", "stderr")) -> Dict[str, Any]:
    """The step's log files from the cluster's log URI: {step_id, uri, logs: {stream: text|None}}.

    EMR copies step logs to S3 about every five minutes, and once more when the step ends.
    """
    cluster = describe_cluster(aws, cluster_id)
    log_uri = cluster.get("LogUri")
    if not log_uri:
        raise OrchardError(f"cluster {cluster_id} has no log URI: its logs stay on the nodes")
    step_id = step_id or latest_step_id(aws, cluster_id)
    if not step_id:
        raise OrchardError(f"cluster {cluster_id} has no steps")
    bucket, prefix = parse_s3_uri(log_uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    folder = f"{prefix}{cluster_id}/steps/{step_id}/"
    logs: Dict[str, Optional[str]] = {}
    for stream in streams:
        response = aws.try_call(Request("s3", "GetObject", {"Bucket": bucket, "Key": f"{folder}{stream}.gz"}),
                                missing=("NoSuchKey", "404", "NotFound"))
        body = response.get("Body") if response else None
        if body is None:
            logs[stream] = None
            continue
        data = body.read()
        try:
            logs[stream] = gzip.decompress(data).decode("utf-8", errors="replace")
        except OSError:
            logs[stream] = data.decode("utf-8", errors="replace")
    return {"cluster_id": cluster_id, "step_id": step_id, "uri": f"s3://{bucket}/{folder}", "logs": logs}


def terminate(aws: Aws, cluster_id: str, wait_s: Optional[float] = None, poll_s: float = 15.0,
              echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """TerminateJobFlows; with `wait_s`, poll until the cluster is gone (at most that long)."""
    cluster = describe_cluster(aws, cluster_id)
    state = cluster["Status"]["State"]
    requested = False
    if state not in CLUSTER_DONE and state != "TERMINATING":
        if cluster.get("TerminationProtected"):
            raise OrchardError(f"cluster {cluster_id} is termination-protected: turn that off first "
                               f"(aws emr modify-cluster-attributes --cluster-id {cluster_id} "
                               "--no-termination-protected)")
        aws.call(Request("emr", "TerminateJobFlows", {"JobFlowIds": [cluster_id]}, why="stop paying"))
        requested, state = True, "TERMINATING"
    if wait_s is not None and not aws.dry_run:
        deadline = time.monotonic() + wait_s
        while state not in CLUSTER_DONE:
            if time.monotonic() > deadline:
                raise OrchardError(f"cluster {cluster_id} still {state} after {wait_s:.0f} s")
            _sleep(poll_s)
            new_state = describe_cluster(aws, cluster_id)["Status"]["State"]
            if new_state != state:
                echo(f"{dt.datetime.now().strftime('%H:%M:%S')} cluster {cluster_id} {new_state}")
            state = new_state
    return {"cluster_id": cluster_id, "state": state, "requested": requested}


def tunnel_command(aws: Aws, cluster_id: str, identity_file: Optional[str] = None) -> Dict[str, Any]:
    """The `ssh -N -L ...` command forwarding the primary node's web UIs to localhost."""
    cluster = describe_cluster(aws, cluster_id)
    host = cluster.get("MasterPublicDnsName")
    if not host:
        raise OrchardError(f"cluster {cluster_id} ({cluster['Status']['State']}) has no primary node "
                           "address yet: wait until it is WAITING or RUNNING")
    key_name = (cluster.get("Ec2InstanceAttributes") or {}).get("Ec2KeyName")
    if not identity_file and not key_name:
        raise OrchardError(f"cluster {cluster_id} has no EC2 key pair: create it with --key-name "
                           "and --ssh-cidr to use the tunnel")
    identity = identity_file or os.path.join("~", ".ssh", f"{key_name}.pem")
    command = ["ssh", "-i", os.path.expanduser(identity), "-N",
               "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=30",
               "-o", "StrictHostKeyChecking=accept-new"]
    for port, _ in TUNNEL_PORTS.values():
        command += ["-L", f"{port}:localhost:{port}"]
    command.append(f"hadoop@{host}")
    scheme = {"jupyterhub": "https"}
    urls = {name: f"{scheme.get(name, 'http')}://localhost:{port}/"
            for name, (port, _) in TUNNEL_PORTS.items()}
    return {"cluster_id": cluster_id, "host": host, "command": command, "urls": urls}
