"""orchard.cloud.api: requests as data, checked against botocore's model, recorded in order;
the dry run's answers; a clear message without credentials."""
from __future__ import annotations

import pytest

from orchard.cloud import s3 as s3_module
from orchard.cloud.api import DRY_ACCOUNT, Aws, Request, dumps
from orchard.errors import OrchardError
from tests.cloud.conftest import BUCKET, REGION, cli


def test_aws_requests_are_recorded_in_order_with_region():
    aws = Aws(region=REGION, dry_run=True)
    s3_module.init_bucket(aws, BUCKET)
    assert [entry["operation"] for entry in aws.journal][:2] == ["CreateBucket", "GetBucketLocation"]
    assert all(entry["region"] == REGION for entry in aws.journal)
    encryption = [e for e in aws.journal if e["operation"] == "PutBucketEncryption"][0]
    assert encryption["params"]["ServerSideEncryptionConfiguration"]["Rules"][0] == {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    aws.call(Request("iam", "GetRole", {"RoleName": "r"}))
    assert aws.journal[-1]["region"] == "global"  # IAM has no region


def test_dry_run_checks_requests_against_the_api_model():
    aws = Aws(region=REGION, dry_run=True)
    with pytest.raises(OrchardError, match="invalid s3 PutBucketTagging request"):
        aws.call(Request("s3", "PutBucketTagging", {"Bucket": BUCKET, "Tags": []}))


def test_dry_run_resolves_a_kms_alias_to_a_placeholder_key_arn():
    aws = Aws(region=REGION, dry_run=True)
    arn = aws.call(Request("kms", "DescribeKey", {"KeyId": "alias/seeds"}))["KeyMetadata"]["Arn"]
    assert arn == f"arn:aws:kms:{REGION}:{DRY_ACCOUNT}:key/<key id of alias/seeds>"
    given = f"arn:aws:kms:{REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert aws.call(Request("kms", "DescribeKey", {"KeyId": given}))["KeyMetadata"]["Arn"] == given


def test_dumps_keeps_short_lists_on_one_line():
    assert dumps({"a": [1, 2], "b": {"c": "d"}}) == '{"a": [1, 2], "b": {"c": "d"}}'
    assert dumps({"a": ["x" * 60, "y" * 60]}) == '{\n  "a": [\n    "' + "x" * 60 + '",\n    "' + "y" * 60 + '"\n  ]\n}'


def test_missing_credentials_say_how_to_fix(capsys, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = cli(capsys, "aws", "terminate", "--cluster-id", "j-1")
    assert code == 2 and "no AWS credentials" in err and "--profile" in err
