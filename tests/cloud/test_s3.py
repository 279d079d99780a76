"""orchard.cloud.s3: the bucket `init` makes (or brings up to date) on moto; what it keeps."""
from __future__ import annotations

import json

import pytest

from tests.cloud.conftest import BUCKET, REGION, cli, cli_json, ops

boto3 = pytest.importorskip("boto3")


def test_init_keeps_what_an_existing_bucket_already_has(sent, capsys):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    theirs = {"Sid": "TheirReadOnlyRole", "Effect": "Allow",
              "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:GetObject",
              "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [
        {"ID": "their-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}}]})
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "seeds"}]})
    for _ in range(2):
        assert cli_json(capsys, "aws", "init", "--bucket", BUCKET)["existed"] is True
    sids = [st.get("Sid") for st in json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]]
    assert sids == ["TheirReadOnlyRole", "DenyInsecureTransport", "DenyOutdatedTLS"]
    ids = [rule["ID"] for rule in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]]
    assert ids == ["their-tmp", "orchard-expire-logs", "orchard-abort-incomplete-uploads"]
    assert s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"] == [{"Key": "team", "Value": "seeds"}]


def test_init_never_downgrades_kms_encryption(sent, capsys):
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    assert cli(capsys, "aws", "init", "--bucket", BUCKET, "--kms-key-id", key)[0] == 0
    code, _, err = cli(capsys, "aws", "init", "--bucket", BUCKET)
    assert code == 2 and "--kms-key-id" in err
    rule = boto3.client("s3", region_name=REGION).get_bucket_encryption(
        Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_init_refuses_a_bucket_in_another_region(sent, capsys):
    boto3.client("s3", region_name="eu-central-1").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    code, _, err = cli(capsys, "aws", "init", "--bucket", BUCKET)
    assert code == 2 and "eu-central-1" in err
    assert "PutBucketPolicy" not in ops(sent)


