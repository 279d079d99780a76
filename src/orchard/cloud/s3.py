"""The bucket: safe settings (`init`), and the bucket as orchard.storage.sync sees it (`push`)."""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from orchard.cloud.api import Aws, Request
from orchard.cloud.layout import LOGS_PREFIX, PROJECT_TAG
from orchard.errors import OrchardError
from orchard.storage.fs import MD5_METADATA, FileInfo, upload_extra_args
from orchard.storage.sync import LocalFile

DEFAULT_LOG_RETENTION_DAYS = 30


# -- init: one builder per request ----------------------------------------------------------
def create_bucket(bucket: str, region: str) -> Request:
    params: Dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
    if region != "us-east-1":  # us-east-1 is the one region that takes no LocationConstraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return Request("s3", "CreateBucket", params, ok_errors=("BucketAlreadyOwnedByYou",),
                   why=f"the bucket, in {region}; ACLs disabled (bucket owner owns every object)")


def get_bucket_location(bucket: str) -> Request:
    return Request("s3", "GetBucketLocation", {"Bucket": bucket},
                   why="check that an existing bucket is in the requested region")


def public_access_block(bucket: str) -> Request:
    return Request("s3", "PutPublicAccessBlock", {
        "Bucket": bucket,
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        },
    }, why="no public access, whatever ACL or policy is set later")


def ownership_controls(bucket: str) -> Request:
    return Request("s3", "PutBucketOwnershipControls", {
        "Bucket": bucket,
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    }, why="ACLs disabled (also on a bucket that existed before)")


def encryption(bucket: str, kms_key_id: Optional[str] = None) -> Request:
    if kms_key_id:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}
        rule = {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
        why = "default encryption with your KMS key (S3 Bucket Key on: fewer KMS calls)"
    else:
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        why = "default encryption SSE-S3 (AES-256, keys managed by S3)"
    return Request("s3", "PutBucketEncryption", {
        "Bucket": bucket, "ServerSideEncryptionConfiguration": {"Rules": [rule]},
    }, why=why)


def tls_only_policy(bucket: str) -> Dict[str, Any]:
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "DenyOutdatedTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
        ],
    }


def bucket_policy(bucket: str, existing: Optional[Dict[str, Any]] = None) -> Request:
    """orchard's TLS-only statements, added to the statements of an `existing` policy."""
    policy = tls_only_policy(bucket)
    if existing:
        ours = {statement["Sid"] for statement in policy["Statement"]}
        kept = [s for s in existing.get("Statement", []) if s.get("Sid") not in ours]
        policy["Statement"] = kept + policy["Statement"]
    return Request("s3", "PutBucketPolicy", {
        "Bucket": bucket, "Policy": json.dumps(policy, sort_keys=True),
    }, why="deny every request not over TLS 1.2+ (aws:SecureTransport, s3:TlsVersion)")


def lifecycle_rules(log_days: int) -> List[Dict[str, Any]]:
    return [
        {"ID": "orchard-expire-logs", "Status": "Enabled", "Filter": {"Prefix": LOGS_PREFIX},
         "Expiration": {"Days": log_days}},
        {"ID": "orchard-abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
    ]


def lifecycle(bucket: str, log_days: int = DEFAULT_LOG_RETENTION_DAYS,
              existing: Optional[List[Dict[str, Any]]] = None) -> Request:
    """orchard's lifecycle rules, added to the `existing` rules of the bucket."""
    rules = lifecycle_rules(log_days)
    ours = {rule["ID"] for rule in rules}
    kept = [rule for rule in existing or [] if rule.get("ID") not in ours]
    return Request("s3", "PutBucketLifecycleConfiguration", {
        "Bucket": bucket, "LifecycleConfiguration": {"Rules": kept + rules},
    }, why=f"EMR logs expire after {log_days} days; interrupted uploads are cleaned after 7")


def tagging(bucket: str) -> Request:
    return Request("s3", "PutBucketTagging", {
        "Bucket": bucket, "Tagging": {"TagSet": [{"Key": PROJECT_TAG[0], "Value": PROJECT_TAG[1]}]},
    }, why="cost allocation")


def init_bucket(aws: Aws, bucket: str, kms_key_id: Optional[str] = None,
                log_days: int = DEFAULT_LOG_RETENTION_DAYS) -> Dict[str, Any]:
    """Create (or bring up to date) the bucket with orchard's safe settings. Idempotent.

    On a bucket that existed, a policy's and the lifecycle's other statements and rules are
    kept (orchard's are added or replaced), and an SSE-KMS encryption is never downgraded.
    """
    if log_days < 1:
        raise OrchardError(f"--log-retention-days must be >= 1, got {log_days}")
    created = aws.call(create_bucket(bucket, aws.region))
    existed = "OrchardAlreadyDone" in created
    location = aws.call(get_bucket_location(bucket)).get("LocationConstraint") or "us-east-1"
    if location == "EU":
        location = "eu-west-1"
    if location != aws.region:
        raise OrchardError(f"bucket {bucket} already exists in {location}, not {aws.region}: "
                           f"pass --region {location}, or choose another bucket name")
    policy, rules = None, None
    if existed:
        policy, rules = _existing_settings(aws, bucket, kms_key_id)
    aws.call(public_access_block(bucket))
    aws.call(ownership_controls(bucket))
    aws.call(encryption(bucket, kms_key_id))
    aws.call(bucket_policy(bucket, policy))
    aws.call(lifecycle(bucket, log_days, rules))
    if not existed:  # PutBucketTagging replaces every tag: only on a bucket orchard created
        aws.call(tagging(bucket))
    return {"bucket": bucket, "region": aws.region, "existed": existed,
            "encryption": "aws:kms" if kms_key_id else "AES256"}


def _existing_settings(aws: Aws, bucket: str, kms_key_id: Optional[str]):
    """(policy, lifecycle rules) of an existing bucket; refuses to downgrade its encryption."""
    current = aws.try_call(Request("s3", "GetBucketEncryption", {"Bucket": bucket},
                                   why="never downgrade an existing KMS encryption"),
                           missing=("ServerSideEncryptionConfigurationNotFoundError",))
    for rule in (current or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm", "").startswith("aws:kms") and not kms_key_id:
            raise OrchardError(f"bucket {bucket} is encrypted with KMS key "
                               f"{default.get('KMSMasterKeyID', '(AWS managed)')}: pass --kms-key-id "
                               "to keep it (orchard does not downgrade to SSE-S3)")
    found = aws.try_call(Request("s3", "GetBucketPolicy", {"Bucket": bucket},
                                 why="keep the statements of an existing policy"),
                         missing=("NoSuchBucketPolicy",))
    policy = json.loads(found["Policy"]) if found and found.get("Policy") else None
    found = aws.try_call(Request("s3", "GetBucketLifecycleConfiguration", {"Bucket": bucket},
                                 why="keep the rules of an existing lifecycle"),
                         missing=("NoSuchLifecycleConfiguration",))
    return policy, (found or {}).get("Rules")


# -- push: the sync engine's view of the bucket, through `Aws` ------------------------------
def list_objects(aws: Aws, bucket: str, prefix: str) -> Dict[str, FileInfo]:
    """{key relative to `prefix`: FileInfo(size, ETag)} of the objects under `prefix`."""
    objects: Dict[str, FileInfo] = {}
    params: Dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = aws.call(Request("s3", "ListObjectsV2", dict(params),
                                why="what is already uploaded (to skip identical files)"))
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):]
            objects[name] = FileInfo(name, int(item["Size"]), etag=str(item.get("ETag", "")).strip('"'))
        if not page.get("IsTruncated"):
            return objects
        params["ContinuationToken"] = page["NextContinuationToken"]


class BucketTarget:
    """s3://bucket/prefix for orchard.storage.sync, every request through `aws` (so that a dry
    run records them): list, HeadObject for the stored MD5, uploads (one PutObject each)."""

    def __init__(self, aws: Aws, bucket: str, prefix: str):
        self.aws, self.bucket, self.prefix = aws, bucket, prefix
        self.uri = f"s3://{bucket}/{prefix}"

    def list(self) -> Dict[str, FileInfo]:
        return list_objects(self.aws, self.bucket, self.prefix)

    def stored_md5(self, name: str) -> Optional[str]:
        head = self.aws.try_call(Request("s3", "HeadObject", {"Bucket": self.bucket, "Key": self.prefix + name}),
                                 missing=("404", "NoSuchKey", "NotFound"))
        return (head or {}).get("Metadata", {}).get(MD5_METADATA)

    def upload(self, file: LocalFile, progress: Optional[Callable[[int], None]]) -> None:
        extra = upload_extra_args(file.path, file.digests()[0])
        self.aws.upload_file(self.bucket, self.prefix + file.name, str(file.path), file.size, extra, progress)
