"""`orchard aws ...` through the CLI against moto: the flow init -> push -> cluster create ->
submit -> wait -> logs -> terminate, the dry runs, the user errors and the documented outputs.

Every request boto3 actually sends is captured (a wrapper around botocore's `_make_api_call`)
and its content asserted, as is the state moto keeps.
"""
from __future__ import annotations

import gzip
import json
import re
import shlex
from pathlib import Path
from typing import List

import pytest

from orchard.cloud import emr as emr_module
from orchard.cloud.emr import DEFAULT_RELEASE
from orchard.cloud.layout import NODE_PYTHON
from tests.cloud.conftest import (
    BUCKET, LAYOUT, REGION, SSH_CIDR, cli, cli_json, deploy_base, dry_run, ops, params_of,
    push_args,
)

boto3 = pytest.importorskip("boto3")


def s3_actions(statement) -> List[str]:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return [a for a in actions if a == "*" or a.lower().startswith("s3:")]


def resources(statement) -> List[str]:
    value = statement["Resource"]
    return value if isinstance(value, list) else [value]


# -- the whole flow ---------------------------------------------------------------------------
def test_init_push_create_submit_wait_logs_terminate(sent, capsys, small_dataset, wheel, stand_in_wheelhouse,
                                                     monkeypatch):
    # init -----------------------------------------------------------------------------------
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET, "--yes")
    assert result["region"] == REGION and result["encryption"] == "AES256"
    s3_regions = {region for svc, region, _, _ in sent if svc in ("s3", "emr", "ec2")}
    assert s3_regions == {REGION}
    create = params_of(sent, "CreateBucket")[0]
    assert create["CreateBucketConfiguration"] == {"LocationConstraint": REGION}

    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    tls = [s for s in policy["Statement"] if s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert tls and tls[0]["Effect"] == "Deny" and tls[0]["Principal"] == "*"
    assert set(tls[0]["Resource"]) == {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    logs_rule = [r for r in rules if r.get("Filter", {}).get("Prefix") == "logs/"][0]
    assert logs_rule["Status"] == "Enabled" and logs_rule["Expiration"]["Days"] == 30

    iam = boto3.client("iam")
    node_role = LAYOUT.ec2_role
    node_policy = iam.get_role_policy(RoleName=node_role, PolicyName="orchard-bucket-access")["PolicyDocument"]
    if isinstance(node_policy, str):
        node_policy = json.loads(node_policy)
    for statement in node_policy["Statement"]:
        actions = s3_actions(statement)
        assert "s3:*" not in actions and "*" not in actions
        if actions:
            assert "*" not in resources(statement)
            assert all(BUCKET in r or r.endswith("elasticmapreduce/*") for r in resources(statement))
            if any(a in actions for a in ("s3:PutObject", "s3:DeleteObject")):
                assert resources(statement) == [f"arn:aws:s3:::{BUCKET}/*"]
    attached = iam.list_attached_role_policies(RoleName="orchard-emr-service-role")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonEMRServicePolicy_v2"]
    trust = iam.get_role(RoleName="orchard-emr-service-role")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    profile = iam.get_instance_profile(InstanceProfileName=node_role)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [node_role]
    emr = boto3.client("emr", region_name=REGION)
    bpa = emr.get_block_public_access_configuration()["BlockPublicAccessConfiguration"]
    assert bpa["BlockPublicSecurityGroupRules"] is True
    assert not bpa.get("PermittedPublicSecurityGroupRuleRanges")

    # idempotent: a second init succeeds and changes nothing that matters
    again = cli_json(capsys, "aws", "init", "--bucket", BUCKET)
    assert again["emr_block_public_access"]["change"] is False  # on since the first init
    assert again["existed"] is True
    assert len(iam.get_instance_profile(InstanceProfileName=node_role)["InstanceProfile"]["Roles"]) == 1

    # push -----------------------------------------------------------------------------------
    push = push_args(small_dataset, wheel, stand_in_wheelhouse)
    pushed = cli_json(capsys, *push)
    assert pushed["dataset"]["files"] == 12 and pushed["dataset"]["uploaded"] == 12
    assert pushed["artifacts"]["uploaded"] == 4 + 3  # + the wheelhouse: lock, one file per arch
    assert pushed["artifacts"]["wheelhouse"] == {"uri": f"s3://{BUCKET}/orchard/wheelhouse/", "python": "3.9", "files": 3}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert len([k for k in keys if k.startswith("data/")]) == 12
    assert not any(".DS_Store" in k for k in keys)
    assert {LAYOUT.wheel_key, LAYOUT.bootstrap_key, LAYOUT.entry_key,
            LAYOUT.model_key("mobilenet_v2_1.0_224.onnx"), LAYOUT.wheelhouse_lock_key,
            "orchard/wheelhouse/x86_64/tqdm-4.67.1-py3-none-x86_64.whl",
            "orchard/wheelhouse/aarch64/tqdm-4.67.1-py3-none-aarch64.whl"} <= keys
    script = s3.get_object(Bucket=BUCKET, Key=LAYOUT.bootstrap_key)["Body"].read().decode()
    assert "--no-index" in script and "--require-hashes" in script and "pyspark==" not in script
    # a second push skips everything; a changed file alone goes up again
    assert cli_json(capsys, *push)["dataset"]["uploaded"] == 0
    changed = sorted(small_dataset.rglob("*.jpg"))[0]
    changed.write_bytes(changed.read_bytes() + b"\0")
    again = cli_json(capsys, *push)
    assert (again["dataset"]["uploaded"], again["dataset"]["skipped"]) == (1, 11)
    assert again["artifacts"]["uploaded"] == 0

    # cluster create ---------------------------------------------------------------------------
    sent.clear()
    created = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "seeds",
                       "--ssh-cidr", SSH_CIDR, "--spot", "--autoscale", "3:6", "--idle-timeout", "45m")
    cluster_id = created["cluster_id"]
    assert cluster_id.startswith("j-")
    request = params_of(sent, "RunJobFlow")[0]
    assert request["ReleaseLabel"] == DEFAULT_RELEASE == "emr-7.13.0"
    assert [a["Name"] for a in request["Applications"]] == ["Spark", "Hadoop", "JupyterHub"]
    groups = {g["InstanceRole"]: g for g in request["Instances"]["InstanceGroups"]}
    assert groups["MASTER"] == {"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
                                "InstanceType": "m5.xlarge", "InstanceCount": 1}
    # --autoscale 3:6 --spot: 3 core nodes On-Demand, an empty task group on Spot
    assert (groups["CORE"]["InstanceType"], groups["CORE"]["InstanceCount"], groups["CORE"]["Market"]) == \
        ("m5.xlarge", 3, "ON_DEMAND")
    assert (groups["TASK"]["InstanceCount"], groups["TASK"]["Market"]) == (0, "SPOT")
    action = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert action["Path"] == f"s3://{BUCKET}/orchard/emr-bootstrap.sh"
    assert action["Args"][:3] == [f"s3://{BUCKET}/{LAYOUT.wheel_key}", f"s3://{BUCKET}/orchard/wheelhouse/",
                                  f"s3://{BUCKET}/orchard/models/mobilenet_v2_1.0_224.onnx"]
    assert action["Args"][4] == "3.9"  # the nodes' Python the wheelhouse is for
    assert request["LogUri"] == f"s3://{BUCKET}/logs/"
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 45 * 60}
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert "ManagedScalingPolicy" not in request  # attached by PutManagedScalingPolicy
    limits = {"UnitType": "Instances", "MinimumCapacityUnits": 3, "MaximumCapacityUnits": 6,
              "MaximumCoreCapacityUnits": 3, "MaximumOnDemandCapacityUnits": 3}
    assert params_of(sent, "PutManagedScalingPolicy") == [
        {"ClusterId": cluster_id, "ManagedScalingPolicy": {"ComputeLimits": limits}}]
    assert emr.get_managed_scaling_policy(ClusterId=cluster_id)["ManagedScalingPolicy"]["ComputeLimits"] == limits
    assert created["managed_scaling"] == {"ComputeLimits": limits}
    spark_defaults = [c for c in request["Configurations"] if c["Classification"] == "spark-defaults"][0]
    assert spark_defaults["Properties"]["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark_defaults["Properties"]["spark.python.worker.reuse"] == "true"
    assert "spark.executor.memoryOverhead" in spark_defaults["Properties"]
    # Spark's Python is orchard's virtual environment (also for Livy/JupyterHub sessions)
    assert spark_defaults["Properties"]["spark.pyspark.python"] == NODE_PYTHON == "/opt/orchard/venv/bin/python"
    spark_env = [c for c in request["Configurations"] if c["Classification"] == "spark-env"][0]
    assert spark_env["Configurations"][0]["Properties"]["PYSPARK_PYTHON"] == NODE_PYTHON
    jupyter = [c for c in request["Configurations"] if c["Classification"] == "jupyter-s3-conf"][0]
    assert jupyter["Properties"] == {"s3.persistence.enabled": "true", "s3.persistence.bucket": BUCKET}
    assert request["ServiceRole"] == "orchard-emr-service-role" and request["JobFlowRole"] == node_role
    # SSH: only from the given CIDR, never from the world
    for _, _, op, params in sent:
        assert "0.0.0.0/0" not in json.dumps(params) and "::/0" not in json.dumps(params), op
    ingress = params_of(sent, "AuthorizeSecurityGroupIngress")[0]["IpPermissions"]
    assert ingress == [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": SSH_CIDR, "Description": "orchard aws tunnel"}]}]
    ec2 = boto3.client("ec2", region_name=REGION)
    group = ec2.describe_security_groups(GroupIds=[created["ssh_security_group"]])["SecurityGroups"][0]
    cidrs = [r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])]
    assert cidrs == [SSH_CIDR]
    assert request["Instances"]["AdditionalMasterSecurityGroups"] == [group["GroupId"]]
    # what moto now holds
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == request["ReleaseLabel"]
    assert cluster["LogUri"] == f"s3://{BUCKET}/logs/"
    assert sorted(a["Name"] for a in cluster["Applications"]) == ["Hadoop", "JupyterHub", "Spark"]
    bootstrap = emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"][0]
    assert bootstrap["ScriptPath"] == f"s3://{BUCKET}/orchard/emr-bootstrap.sh"

    # submit -----------------------------------------------------------------------------------
    sent.clear()
    submitted = cli_json(capsys, "aws", "submit", "--cluster-id", cluster_id, "--bucket", BUCKET,
                         "--pca-k", "50")
    step_id = submitted["step_id"]
    step = params_of(sent, "AddJobFlowSteps")[0]["Steps"][0]
    args = step["HadoopJarStep"]["Args"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert args[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "client"]
    entry = args.index(f"s3://{BUCKET}/orchard/spark_entry.py")
    assert args[entry + 1:entry + 4] == ["run", "--input", f"s3://{BUCKET}/data/"]
    output = args[args.index("--output") + 1]
    assert output.startswith(f"s3://{BUCKET}/runs/") and output == submitted["output"]
    assert args[args.index("--model-path") + 1] == "/opt/orchard/models/mobilenet_v2_1.0_224.onnx"
    assert args[args.index("--pca-k") + 1] == "50"
    assert emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Config"]["Args"] == args

    # wait: moto keeps a step RUNNING; "time passes" by completing it on the first sleep ----------
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    moto_step = [s for s in emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id].steps
                 if s.id == step_id][0]
    sleeps: List[float] = []

    def pass_time(seconds):
        sleeps.append(seconds)
        moto_step.state = "COMPLETED"

    monkeypatch.setattr(emr_module, "_sleep", pass_time)
    code, out, _ = cli(capsys, "aws", "wait", "--cluster-id", cluster_id, "--step-id", step_id,
                       "--poll-seconds", "5")
    assert code == 0 and sleeps == [5]
    lines = out.strip().splitlines()
    assert f"step {step_id} RUNNING" in lines[0] and f"step {step_id} COMPLETED" in lines[1]
    assert lines[-1] == f"done: step {step_id} COMPLETED"

    # logs: what EMR would have copied to the log URI --------------------------------------------
    folder = f"logs/{cluster_id}/steps/{step_id}/"
    s3.put_object(Bucket=BUCKET, Key=folder + "stdout.gz",
                  Body=gzip.compress(b'{"counts": {"featurized": 12}}\n'))
    s3.put_object(Bucket=BUCKET, Key=folder + "stderr.gz", Body=gzip.compress(b"orchard INFO stage pca_fit\n"))
    code, out, _ = cli(capsys, "aws", "logs", "--cluster-id", cluster_id)
    assert code == 0
    assert f"==> s3://{BUCKET}/{folder}stdout.gz <==" in out and '"featurized": 12' in out
    assert "stage pca_fit" in out
    fetched = cli_json(capsys, "aws", "logs", "--cluster-id", cluster_id, "--step-id", step_id,
                       "--stream", "controller")
    assert fetched["logs"] == {"controller": None}

    # a failing step makes `wait` fail, with the reason ----------------------------------------
    failing = cli_json(capsys, "aws", "submit", "--cluster-id", cluster_id, "--bucket", BUCKET)
    moto_failing = [s for s in emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id].steps
                    if s.id == failing["step_id"]][0]
    moto_failing.state = "FAILED"
    code, _, err = cli(capsys, "aws", "wait", "--cluster-id", cluster_id, "--step-id", failing["step_id"])
    assert code != 0 and "FAILED" in err and "orchard aws logs" in err

    # tunnel -----------------------------------------------------------------------------------
    tunnel = cli_json(capsys, "aws", "tunnel", "--cluster-id", cluster_id)
    command = tunnel["command"]
    assert command[0] == "ssh" and command[-1].startswith("hadoop@")
    assert command[command.index("-i") + 1].endswith("seeds.pem")
    forwards = [command[i + 1] for i, part in enumerate(command) if part == "-L"]
    assert forwards == ["4040:localhost:4040", "18080:localhost:18080", "8088:localhost:8088",
                        "9443:localhost:9443"]

    # terminate --------------------------------------------------------------------------------
    sent.clear()
    code, out, _ = cli(capsys, "aws", "terminate", "--cluster-id", cluster_id, "--wait")
    assert code == 0 and out.strip().endswith(f"cluster {cluster_id} terminated")
    assert params_of(sent, "TerminateJobFlows") == [{"JobFlowIds": [cluster_id]}]
    assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "TERMINATED"
    assert cli_json(capsys, "aws", "terminate", "--cluster-id", cluster_id)["requested"] is False


# -- dry run ----------------------------------------------------------------------------------
def test_dry_run_prints_requests_and_sends_nothing(no_aws, capsys, small_dataset, wheel, stand_in_wheelhouse):
    init = dry_run(capsys, "aws", "init", "--bucket", BUCKET)
    assert [r["operation"] for r in init["requests"]][:3] == ["CreateBucket", "GetBucketLocation",
                                                             "PutPublicAccessBlock"]
    assert init["requests"][-1]["operation"] == "PutBlockPublicAccessConfiguration"

    create = dry_run(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "k",
                     "--ssh-cidr", SSH_CIDR)
    assert [r["operation"] for r in create["requests"]] == [
        "GetRole", "GetInstanceProfile", "HeadObject", "HeadObject", "HeadObject", "HeadObject",
        "HeadObject", "DescribeVpcs", "DescribeSubnets", "DescribeSecurityGroups", "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress", "DescribeSecurityGroups", "CreateTags", "RunJobFlow"]
    run_job_flow = create["requests"][-1]
    assert run_job_flow["region"] == REGION and run_job_flow["service"] == "emr"
    # the very builder the real call uses
    spec = emr_module.ClusterSpec(layout=LAYOUT, region=REGION, key_name="k", ssh_cidr=SSH_CIDR,
                                  service_role="orchard-emr-service-role", instance_profile=LAYOUT.ec2_role,
                                  model_sha256=run_job_flow["params"]["BootstrapActions"][0]
                                  ["ScriptBootstrapAction"]["Args"][3]).validate()
    assert run_job_flow["params"] == emr_module.run_job_flow_params(spec, "subnet-DRYRUN", "sg-DRYRUN")

    submit = dry_run(capsys, "aws", "submit", "--cluster-id", "j-123", "--bucket", BUCKET,
                     "--output", f"s3://{BUCKET}/runs/x/")
    (step_request,) = submit["requests"]
    assert step_request["operation"] == "AddJobFlowSteps"
    assert step_request["params"]["Steps"][0]["HadoopJarStep"]["Args"][-6:] == [
        "--input", f"s3://{BUCKET}/data/", "--output", f"s3://{BUCKET}/runs/x/",
        "--model-path", "/opt/orchard/models/mobilenet_v2_1.0_224.onnx"]

    push = dry_run(capsys, *push_args(small_dataset, wheel, stand_in_wheelhouse))
    puts = [r["params"]["Key"] for r in push["requests"] if r["operation"] == "PutObject"]
    assert len(puts) == 12 + 4 + 3 and LAYOUT.bootstrap_key in puts and LAYOUT.wheelhouse_lock_key in puts

    for command in (("terminate",), ("wait",), ("logs",), ("tunnel",)):
        document = dry_run(capsys, "aws", *command, "--cluster-id", "j-123")
        assert document["requests"][0]["operation"] == "DescribeCluster"
    terminate = dry_run(capsys, "aws", "terminate", "--cluster-id", "j-123")
    assert terminate["requests"][-1] == {"service": "emr", "operation": "TerminateJobFlows",
                                         "region": REGION, "params": {"JobFlowIds": ["j-123"]},
                                         "why": "stop paying"}


def test_dry_run_and_real_run_send_the_same_requests(sent, capsys, small_dataset, wheel, stand_in_wheelhouse):
    """One builder per request, one sequence: a dry run lists what the real run then sends."""
    def planned(*argv):
        code, out, err = cli(capsys, *argv, "--dry-run")
        assert code == 0, err
        return [(r["service"], r["operation"]) for r in json.loads(out)["requests"]]

    assert sent == []  # dry runs sent nothing
    for argv in (("aws", "init", "--bucket", BUCKET, "--yes"),
                 push_args(small_dataset, wheel, stand_in_wheelhouse),
                 ("aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "k", "--ssh-cidr", SSH_CIDR)):
        plan = planned(*argv)
        sent.clear()
        assert cli(capsys, *argv)[0] == 0
        real = [(svc, op) for svc, _, op, _ in sent]
        if "push" in argv:  # boto3's upload_file sends PutObject (multipart above 8 MiB: the model)
            real = [(s, "PutObject" if o in ("CreateMultipartUpload",) else o) for s, o in real
                    if o not in ("UploadPart", "CompleteMultipartUpload")]
            real, plan = sorted(real), sorted(plan)  # uploads run in parallel
        assert real == plan, argv


# -- safety checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "0.0.0.0/1", "203.0.113.7/4", "::/0"])
def test_ssh_is_never_opened_to_the_world(no_aws, capsys, cidr):
    code, out, err = cli(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "k",
                         "--ssh-cidr", cidr, "--dry-run")
    assert code != 0 and out == ""
    assert "--ssh-cidr" in err


def test_a_new_cidr_replaces_the_old_one(sent, capsys, small_dataset, wheel, stand_in_wheelhouse):
    deploy_base(capsys, small_dataset, wheel, stand_in_wheelhouse)
    first = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "k",
                     "--ssh-cidr", SSH_CIDR)
    second = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--key-name", "k",
                      "--ssh-cidr", "198.51.100.0/24")
    assert first["ssh_security_group"] == second["ssh_security_group"]
    ec2 = boto3.client("ec2", region_name=REGION)
    group = ec2.describe_security_groups(GroupIds=[second["ssh_security_group"]])["SecurityGroups"][0]
    assert [r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])] == ["198.51.100.0/24"]


def test_cluster_create_refuses_before_init_or_push(sent, capsys, small_dataset, wheel):
    code, _, err = cli(capsys, "aws", "cluster", "create", "--bucket", BUCKET)
    assert code != 0 and "orchard aws init" in err
    assert cli(capsys, "aws", "init", "--bucket", BUCKET)[0] == 0
    code, _, err = cli(capsys, "aws", "cluster", "create", "--bucket", BUCKET)
    assert code != 0 and "orchard aws push" in err
    assert "RunJobFlow" not in ops(sent)


@pytest.mark.parametrize("argv, message", [
    (("aws", "init", "--bucket", "My.Bucket"), "invalid bucket name"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--release", "emr-6.15.0"), "EMR 7"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--autoscale", "5:2"), "--autoscale"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--autoscale", "3"), "MIN:MAX"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--release", "emr-spark-7.0.0"), "emr-spark-8"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--autoscale", "0:4"), "--autoscale"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--idle-timeout", "soon"), "invalid duration"),
    (("aws", "cluster", "create", "--bucket", BUCKET, "--ssh-cidr", SSH_CIDR), "--key-name"),
    (("aws", "submit", "--cluster-id", "j-1", "--bucket", BUCKET, "--input", "/local/path"), "--input"),
])
def test_user_errors_are_one_clear_line(no_aws, capsys, argv, message):
    code, out, err = cli(capsys, *argv, "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith("orchard: error:") and message in err and len(err.strip().splitlines()) == 1



# -- the documentation shows what the commands print ---------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "aws.md"


def documented_outputs():
    """(command line, printed block) of each `$ orchard ...` example in docs/aws.md."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(r"```\n\$ (orchard [^\n]+)\n(.*?)\n```", text, flags=re.S)


def test_docs_show_current_outputs(no_aws, capsys):
    examples = documented_outputs()
    commands = [line for line, _ in examples]
    assert any("cluster create" in c and "--dry-run" in c for c in commands)
    assert any(" submit " in c and "--dry-run" in c for c in commands)
    assert any(" cost " in c for c in commands)
    for line, block in examples:
        code, out, err = cli(capsys, *shlex.split(line)[1:])
        assert code == 0, err
        assert out.rstrip("\n") == block, \
            f"docs/aws.md is out of date for `{line}`: run python scripts/update-aws-docs.py"
