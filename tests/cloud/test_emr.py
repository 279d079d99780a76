"""orchard.cloud.emr: EMR's own security groups tagged for the v2 policy (item 7), the account's
block public access merged, not replaced (item 8), and the cluster's pieces."""
from __future__ import annotations

import pytest

from orchard.cloud import emr as emr_module
from orchard.cloud.api import Aws, AwsError, Request
from orchard.cloud.emr import block_public_access_plan, merge_block_public_access
from orchard.cloud.layout import EMR_MANAGED_TAG
from orchard.errors import OrchardError
from tests.cloud.conftest import BUCKET, LAYOUT, REGION, cli, cli_json, deploy_base, ops, params_of

boto3 = pytest.importorskip("boto3")


# -- EMR's default security groups ------------------------------------------------------------
def test_old_emr_security_groups_get_the_v2_policy_tag(sent, capsys, small_dataset, wheel,
                                                       stand_in_wheelhouse):
    """Groups an earlier EMR (v1 policy) made in the default VPC: EMR reuses them by name, and
    AmazonEMRServicePolicy_v2 may use only tagged ones."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    old = {name: ec2.create_security_group(GroupName=name, Description="made by EMR in 2019",
                                           VpcId=vpc_id)["GroupId"]
           for name in ("ElasticMapReduce-master", "ElasticMapReduce-slave")}
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    elsewhere = ec2.create_security_group(GroupName="ElasticMapReduce-master", Description="x",
                                          VpcId=other_vpc)["GroupId"]
    unrelated = ec2.create_security_group(GroupName="web", Description="x", VpcId=vpc_id)["GroupId"]
    deploy_base(capsys, small_dataset, wheel, stand_in_wheelhouse)
    sent.clear()
    created = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET)
    assert created["emr_default_groups_tagged"] == sorted(old.values())
    tags = params_of(sent, "CreateTags")[0]
    assert set(sorted(old.values())) <= set(tags["Resources"]) and vpc_id in tags["Resources"]
    assert tags["Tags"] == [{"Key": EMR_MANAGED_TAG, "Value": "true"}]
    assert ops(sent).index("CreateTags") < ops(sent).index("RunJobFlow")
    groups = ec2.describe_security_groups(GroupIds=[*old.values(), elsewhere, unrelated])["SecurityGroups"]
    tagged = {g["GroupId"] for g in groups if {"Key": EMR_MANAGED_TAG, "Value": "true"} in g.get("Tags", [])}
    assert tagged == set(old.values())  # not another VPC's, not the account's other groups


def test_a_fresh_vpc_has_no_emr_groups_to_tag(sent, capsys, small_dataset, wheel, stand_in_wheelhouse):
    deploy_base(capsys, small_dataset, wheel, stand_in_wheelhouse)
    assert cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET)["emr_default_groups_tagged"] == []


# -- EMR block public access (one setting per account and region) ---------------------------------
def emr_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    return emr_backends[DEFAULT_ACCOUNT_ID][REGION]


def set_block_public_access(block: bool, ranges):
    """The account's setting as another team left it (moto's Put cannot store False)."""
    emr_backend().block_public_access_configuration = {"block_public_access_configuration": {
        "block_public_security_group_rules": block,
        "permitted_public_security_group_rule_ranges": [
            {"min_range": low, "max_range": high} for low, high in ranges]}}


def stored_block_public_access():
    config = boto3.client("emr", region_name=REGION).get_block_public_access_configuration()
    return config["BlockPublicAccessConfiguration"]


def test_block_public_access_already_on_is_left_as_it_is(sent, capsys):
    """AWS's default: on, port 22 permitted. init keeps the exception and sends no Put."""
    set_block_public_access(True, [(22, 22)])
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET, "--yes")
    assert result["emr_block_public_access"]["change"] is False
    assert "PutBlockPublicAccessConfiguration" not in ops(sent)
    assert stored_block_public_access()["PermittedPublicSecurityGroupRuleRanges"] == [
        {"MinRange": 22, "MaxRange": 22}]


def test_block_public_access_off_is_turned_on_keeping_the_exceptions(sent, capsys):
    set_block_public_access(False, [(22, 22), (8000, 8080)])
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET, "--yes")
    plan = result["emr_block_public_access"]
    assert plan["before"] == {"block": False, "permitted": [{"MinRange": 22, "MaxRange": 22},
                                                            {"MinRange": 8000, "MaxRange": 8080}]}
    assert plan["after"]["block"] is True and plan["after"]["permitted"] == plan["before"]["permitted"]
    assert plan["applied"] is True and "off -> on" in plan["description"]
    assert "22, 8000-8080" in plan["description"]
    (put,) = params_of(sent, "PutBlockPublicAccessConfiguration")
    assert put["BlockPublicAccessConfiguration"] == {
        "BlockPublicSecurityGroupRules": True,
        "PermittedPublicSecurityGroupRuleRanges": [{"MinRange": 22, "MaxRange": 22},
                                                   {"MinRange": 8000, "MaxRange": 8080}]}
    stored = stored_block_public_access()
    assert stored["BlockPublicSecurityGroupRules"] is True
    assert len(stored["PermittedPublicSecurityGroupRuleRanges"]) == 2


def test_without_yes_or_a_terminal_init_says_what_it_would_change(sent, capsys):
    set_block_public_access(False, [(22, 22)])
    code, out, err = cli(capsys, "aws", "init", "--bucket", BUCKET)
    assert code == 0
    assert "not changed: EMR block public access in eu-west-3" in err and "--yes" in err
    assert "OFF, left so (pass --yes" in out
    assert "PutBlockPublicAccessConfiguration" not in ops(sent)
    assert stored_block_public_access()["BlockPublicSecurityGroupRules"] is False


def test_a_person_at_a_terminal_is_asked(sent, capsys, monkeypatch):
    set_block_public_access(False, [(22, 22)])
    questions = []

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda text: questions.append(text) or "n")
    assert cli(capsys, "aws", "init", "--bucket", BUCKET)[0] == 0
    assert len(questions) == 1 and "off -> on, ports 22 permitted" in questions[0]
    assert "PutBlockPublicAccessConfiguration" not in ops(sent)
    monkeypatch.setattr("builtins.input", lambda text: "y")
    assert cli(capsys, "aws", "init", "--bucket", BUCKET)[0] == 0
    assert stored_block_public_access()["BlockPublicSecurityGroupRules"] is True


def test_a_dry_run_shows_the_change_without_asking():
    answers = []
    aws = Aws(region=REGION, dry_run=True)
    plan = merge_block_public_access(aws, lambda text: answers.append(text) or False)
    assert plan["applied"] is True  # a dry run shows the Put without asking
    assert answers == []
    plan = block_public_access_plan({"BlockPublicAccessConfiguration": {
        "BlockPublicSecurityGroupRules": False, "PermittedPublicSecurityGroupRuleRanges": []}})
    assert plan["change"] and plan["after"] == {"block": True, "permitted": []}


def test_skip_leaves_block_public_access_unread(sent, capsys):
    assert cli(capsys, "aws", "init", "--bucket", BUCKET, "--skip-emr-block-public-access")[0] == 0
    assert not [op for op in ops(sent, "emr") if "BlockPublicAccess" in op]


# -- pieces -----------------------------------------------------------------------------------
def test_run_job_flow_waits_for_new_iam_roles(monkeypatch):
    answers = [AwsError("AWS emr RunJobFlow failed: ValidationException: Invalid InstanceProfile: "
                        "orchard-emr-ec2-b.", "ValidationException")] * 2 + [{"JobFlowId": "j-OK"}]

    class FlakyAws:
        def call(self, request):
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    pauses = []
    monkeypatch.setattr(emr_module, "_sleep", pauses.append)
    request = Request("emr", "RunJobFlow", {})
    assert emr_module.run_job_flow(FlakyAws(), request, pause_s=10) == {"JobFlowId": "j-OK"}
    assert pauses == [10, 10]
    other = AwsError("AWS emr RunJobFlow failed: ValidationException: bad release", "ValidationException")
    answers[:] = [other]
    with pytest.raises(AwsError, match="bad release"):
        emr_module.run_job_flow(FlakyAws(), request)


@pytest.mark.parametrize("text, seconds", [("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("600", 600),
                                           ("2d", 172800), ("45s", 45)])
def test_parse_duration(text, seconds):
    assert emr_module.parse_duration(text) == seconds


def test_spark_defaults_follow_the_cluster_shape():
    spec = emr_module.ClusterSpec(layout=LAYOUT, region=REGION, core_count=5, instance_type="m5.2xlarge")
    assert emr_module.spark_defaults(spec)["spark.default.parallelism"] == "40"




# -- release lines: EMR 7 (Spark 3.5) and emr-spark-8 (Spark 4) ----------------------------------
@pytest.mark.parametrize("release, spark, python, applications, notebooks", [
    ("emr-7.13.0", "3.5", "3.9", ["Spark", "Hadoop", "JupyterHub"], True),
    ("emr-spark-8.0.0", "4.0", "3.11", ["Spark", "Livy", "JupyterEnterpriseGateway"], False),
])
def test_each_release_line_gets_its_applications_python_and_wheelhouse(release, spark, python, applications,
                                                                      notebooks):
    line = emr_module.release_line(release)
    assert (line.spark, line.python) == (spark, python)
    spec = emr_module.ClusterSpec(layout=LAYOUT, region=REGION, release=release, model_sha256="ab" * 32)
    params = emr_module.run_job_flow_params(spec.validate(), "subnet-1")
    assert params["ReleaseLabel"] == release
    assert [a["Name"] for a in params["Applications"]] == applications
    classifications = [c["Classification"] for c in params["Configurations"]]
    assert ("jupyter-s3-conf" in classifications) is notebooks
    delta = next(c for c in params["Configurations"] if c["Classification"] == "delta-defaults")
    assert delta["Properties"] == {"delta.enabled": "true"}  # the cluster's Delta, not a second copy
    wheelhouse = "orchard/wheelhouse/" if python == "3.9" else f"orchard/wheelhouse-py{python}/"
    assert params["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"] == [
        f"s3://{BUCKET}/{LAYOUT.wheel_key}", f"s3://{BUCKET}/{wheelhouse}",
        f"s3://{BUCKET}/orchard/models/mobilenet_v2_1.0_224.onnx", "ab" * 32, python]


@pytest.mark.parametrize("release", ["emr-6.15.0", "emr-spark-7.0.0", "emr-8.0.0", "emr-7.13"])
def test_other_releases_are_refused(release):
    with pytest.raises(OrchardError, match="emr-spark-8"):
        emr_module.check_release(release)


def test_a_spark4_cluster_needs_its_own_wheelhouse_then_starts(sent, capsys, small_dataset, wheel,
                                                              stand_in_wheelhouse):
    deploy_base(capsys, small_dataset, wheel, stand_in_wheelhouse)  # EMR 7's (Python 3.9)
    code, _, err = cli(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--release", "emr-spark-8.0.0")
    assert code != 0 and "wheelhouse-py3.11/requirements.txt" in err and "--release emr-spark-8.0.0" in err
    pushed = cli_json(capsys, "aws", "push", "--bucket", BUCKET, "--wheel", str(wheel), "--wheelhouse",
                      str(stand_in_wheelhouse), "--no-progress", "--release", "emr-spark-8.0.0")
    assert pushed["artifacts"]["wheelhouse"]["uri"] == f"s3://{BUCKET}/orchard/wheelhouse-py3.11/"
    sent.clear()
    created = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--release", "emr-spark-8.0.0")
    request = params_of(sent, "RunJobFlow")[0]
    assert request["ReleaseLabel"] == "emr-spark-8.0.0"
    assert [a["Name"] for a in request["Applications"]] == ["Spark", "Livy", "JupyterEnterpriseGateway"]
    assert request["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"][-1] == "3.11"
    cluster = boto3.client("emr", region_name=REGION).describe_cluster(ClusterId=created["cluster_id"])["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-spark-8.0.0"
    assert "PutManagedScalingPolicy" not in ops(sent)  # no --autoscale, no policy


# -- managed scaling (--autoscale MIN:MAX) ---------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("2:10", (2, 10)), (" 3 : 3 ", (3, 3))])
def test_parse_autoscale(text, expected):
    assert emr_module.parse_autoscale(text) == expected


@pytest.mark.parametrize("text", ["10:2", "0:4", "4", "a:b", ""])
def test_parse_autoscale_refuses(text):
    with pytest.raises(OrchardError):
        emr_module.parse_autoscale(text)


def test_autoscale_on_demand_policy_is_stored(sent, capsys, small_dataset, wheel, stand_in_wheelhouse):
    """Without --spot every node is On-Demand: no On-Demand cap; the core nodes stay at MIN."""
    deploy_base(capsys, small_dataset, wheel, stand_in_wheelhouse)
    sent.clear()
    created = cli_json(capsys, "aws", "cluster", "create", "--bucket", BUCKET, "--autoscale", "2:8",
                       "--core-count", "5")
    request = params_of(sent, "RunJobFlow")[0]
    groups = {g["InstanceRole"]: g for g in request["Instances"]["InstanceGroups"]}
    assert (groups["CORE"]["InstanceCount"], groups["CORE"]["Market"]) == (2, "ON_DEMAND")  # MIN wins
    assert (groups["TASK"]["InstanceCount"], groups["TASK"]["Market"]) == (0, "ON_DEMAND")
    limits = {"UnitType": "Instances", "MinimumCapacityUnits": 2, "MaximumCapacityUnits": 8,
              "MaximumCoreCapacityUnits": 2}
    assert ops(sent).index("RunJobFlow") < ops(sent).index("PutManagedScalingPolicy")
    assert params_of(sent, "PutManagedScalingPolicy")[0]["ManagedScalingPolicy"] == {"ComputeLimits": limits}
    stored = boto3.client("emr", region_name=REGION).get_managed_scaling_policy(ClusterId=created["cluster_id"])
    assert stored["ManagedScalingPolicy"]["ComputeLimits"] == limits


def test_cost_prices_the_autoscale_range(capsys):
    from orchard.cloud.pricing import cluster_hourly_cost, hourly_cost

    result = cli_json(capsys, "aws", "cost", "--autoscale", "2:6", "--hours", "2")
    scale = result["autoscale"]
    at_min = cluster_hourly_cost("m5.xlarge", 2)["total"]
    assert (scale["min_nodes"], scale["max_nodes"]) == (2, 6)
    assert scale["per_hour"]["min"] == pytest.approx(at_min) == pytest.approx(result["per_hour"]["on_demand"])
    assert scale["per_hour"]["max_on_demand"] == pytest.approx(cluster_hourly_cost("m5.xlarge", 6)["total"], abs=1e-3)
    assert scale["per_hour"]["max_spot_tasks"] == pytest.approx(at_min + hourly_cost("m5.xlarge", 4, spot=True),
                                                                abs=1e-3)
    assert at_min < scale["per_hour"]["max_spot_tasks"] < scale["per_hour"]["max_on_demand"]
    assert scale["per_run"]["max_on_demand"] == pytest.approx(2 * scale["per_hour"]["max_on_demand"], abs=0.01)
    code, out, _ = cli(capsys, "aws", "cost", "--autoscale", "2:6")
    assert code == 0 and "autoscale 2..6 worker nodes" in out
