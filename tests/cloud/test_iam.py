"""orchard.cloud.iam on moto: the KMS key resolved to its ARN (item 4), the service role's
trust over every region (item 5), the Spot service-linked role (item 6)."""
from __future__ import annotations

import json

import pytest

from orchard.cloud.api import Aws
from orchard.cloud.iam import SERVICE_ROLE, SPOT_ROLE, init_roles, service_trust, trusted_regions
from tests.cloud.conftest import BUCKET, LAYOUT, REGION, cli, cli_json, ops, params_of

boto3 = pytest.importorskip("boto3")
OTHER_REGION = "eu-central-1"


def kms_statement(sent):
    policy = json.loads([p for p in params_of(sent, "PutRolePolicy")
                         if p["PolicyName"] == "orchard-bucket-access"][-1]["PolicyDocument"])
    return [s for s in policy["Statement"] if s["Sid"] == "UseBucketKey"][0]


def test_kms_key_encrypts_and_scopes_the_nodes(sent, capsys):
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    assert cli(capsys, "aws", "init", "--bucket", BUCKET, "--kms-key-id", key)[0] == 0
    rule = boto3.client("s3", region_name=REGION).get_bucket_encryption(
        Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    assert kms_statement(sent)["Resource"] == key


@pytest.mark.parametrize("given", ["alias/seeds-data", "alias-arn", "key-id"])
def test_a_kms_alias_or_key_id_becomes_the_keys_arn(sent, capsys, given):
    """An IAM policy naming the alias authorises the alias only: every SSE-KMS read would fail."""
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/seeds-data", TargetKeyId=key["KeyId"])
    given = {"alias-arn": f"arn:aws:kms:{REGION}:{key['AWSAccountId']}:alias/seeds-data",
             "key-id": key["KeyId"]}.get(given, given)
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET, "--kms-key-id", given)
    assert result["kms_key_arn"] == key["Arn"]
    assert params_of(sent, "DescribeKey") == [{"KeyId": given}]
    assert kms_statement(sent)["Resource"] == key["Arn"]
    assert "alias" not in json.dumps(kms_statement(sent))
    node_policy = boto3.client("iam").get_role_policy(RoleName=LAYOUT.ec2_role,
                                                      PolicyName="orchard-bucket-access")["PolicyDocument"]
    assert [s["Resource"] for s in node_policy["Statement"] if s["Sid"] == "UseBucketKey"] == [key["Arn"]]
    rule = boto3.client("s3", region_name=REGION).get_bucket_encryption(
        Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key["Arn"]


def test_an_unknown_kms_key_stops_init_before_anything_is_made(sent, capsys):
    code, _, err = cli(capsys, "aws", "init", "--bucket", BUCKET, "--kms-key-id", "alias/nope")
    assert code == 2 and "alias/nope" in err and "not found" in err
    assert ops(sent) == ["DescribeKey"]


def source_arns(trust):
    value = trust["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"]
    return [value] if isinstance(value, str) else value


def test_the_service_role_trusts_every_region_init_ran_in(sent, capsys):
    first = cli_json(capsys, "aws", "init", "--bucket", BUCKET)
    assert first["iam"]["service_role_regions"] == [REGION]
    account = boto3.client("sts").get_caller_identity()["Account"]
    iam = boto3.client("iam")
    trust = iam.get_role(RoleName=SERVICE_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert source_arns(trust) == [f"arn:aws:elasticmapreduce:{REGION}:{account}:*"]
    assert trust["Statement"][0]["Condition"]["StringEquals"] == {"aws:SourceAccount": account}

    sent.clear()
    second = cli_json(capsys, "aws", "init", "--bucket", "orchard-test-frankfurt", "--region", OTHER_REGION)
    assert second["iam"]["service_role_regions"] == sorted([REGION, OTHER_REGION])
    assert ops(sent, "iam")[:1] == ["GetRole"]  # read first: the regions already trusted
    update = [p for p in params_of(sent, "UpdateAssumeRolePolicy") if p["RoleName"] == SERVICE_ROLE][0]
    expected = sorted(f"arn:aws:elasticmapreduce:{r}:{account}:*" for r in (REGION, OTHER_REGION))
    assert source_arns(json.loads(update["PolicyDocument"])) == expected
    trust = iam.get_role(RoleName=SERVICE_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert source_arns(trust) == expected  # what IAM now holds: both regions
    # and a third init in the first region keeps the second
    cli_json(capsys, "aws", "init", "--bucket", BUCKET)
    assert source_arns(iam.get_role(RoleName=SERVICE_ROLE)["Role"]["AssumeRolePolicyDocument"]) == expected


def test_trusted_regions_reads_single_and_listed_arns():
    trust = service_trust("123456789012", ["eu-west-3"])
    assert trusted_regions(trust) == {"eu-west-3"}
    assert trusted_regions(json.dumps(service_trust("1", ["us-east-1", "eu-west-3"]))) == {"us-east-1", "eu-west-3"}
    assert trusted_regions(None) == set()


def test_init_creates_the_spot_service_linked_role_when_missing(sent, capsys):
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET)
    assert result["iam"]["spot_service_linked_role"] == "created"
    assert params_of(sent, "CreateServiceLinkedRole") == [{"AWSServiceName": "spot.amazonaws.com"}]
    roles = boto3.client("iam").list_roles(PathPrefix="/aws-service-role/spot.amazonaws.com/")["Roles"]
    assert len(roles) == 1  # moto names it after the service; AWS: AWSServiceRoleForEC2Spot
    # already there (AWS answers InvalidInput "has been taken"; moto EntityAlreadyExists): success
    assert cli(capsys, "aws", "init", "--bucket", BUCKET)[0] == 0


def test_an_existing_spot_role_is_left_alone(sent, capsys):
    boto3.client("iam").create_role(RoleName=SPOT_ROLE, Path="/aws-service-role/spot.amazonaws.com/",
                                    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    result = cli_json(capsys, "aws", "init", "--bucket", BUCKET, "--use-default-roles")
    assert result["iam"]["spot_service_linked_role"] == "existed"
    assert "CreateServiceLinkedRole" not in ops(sent)


def test_use_default_roles_creates_no_orchard_roles(sent, capsys):
    assert cli(capsys, "aws", "init", "--bucket", BUCKET, "--use-default-roles")[0] == 0
    assert [op for op in ops(sent, "iam") if op not in ("GetRole", "CreateServiceLinkedRole")] == []
    assert not [r for r in boto3.client("iam").list_roles()["Roles"] if r["RoleName"].startswith("orchard")]


def test_dry_run_shows_the_iam_requests_in_order():
    aws = Aws(region=REGION, dry_run=True)
    init_roles(aws, LAYOUT, f"arn:aws:kms:{REGION}:1:key/k")
    assert [e["operation"] for e in aws.journal] == [
        "GetCallerIdentity", "GetRole", "CreateRole", "UpdateAssumeRolePolicy", "AttachRolePolicy",
        "PutRolePolicy", "CreateRole", "UpdateAssumeRolePolicy", "PutRolePolicy", "CreateInstanceProfile",
        "AddRoleToInstanceProfile", "GetRole", "CreateServiceLinkedRole"]
