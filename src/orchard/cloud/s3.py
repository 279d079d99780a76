"""The bucket: safe settings (`init`) and uploads that skip what is already there (`push`)."""
from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from orchard.cloud.api import MULTIPART_CHUNK, Aws, Request
from orchard.cloud.layout import LOGS_PREFIX, PROJECT_TAG
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

DEFAULT_LOG_RETENTION_DAYS = 30
MD5_METADATA = "md5"  # x-amz-meta-md5: the content's MD5, when the ETag is not one (SSE-KMS, multipart)


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


# -- push: uploads that skip identical objects ----------------------------------------------
def is_hidden(relative: str) -> bool:
    """Names starting with '.' or '_' are hidden to Spark and Hadoop: not part of a dataset."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def local_files(root: Path) -> List[Tuple[str, Path]]:
    """(relative posix path, path) of every visible regular file below `root`, sorted."""
    if not root.is_dir():
        raise OrchardError(f"dataset folder not found: {root}")
    found: List[Tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if not is_hidden(relative) and path.is_file():
                found.append((relative, path))
    if not found:
        raise OrchardError(f"no files to upload under {root}")
    return found


def file_digests(path: Path, chunk: int = MULTIPART_CHUNK) -> Tuple[str, str]:
    """(MD5 hex, the ETag S3 gives the object when uploaded with parts of `chunk` bytes)."""
    whole = hashlib.md5()
    parts: List[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            whole.update(block)
            parts.append(hashlib.md5(block).digest())
            size += len(block)
    md5 = whole.hexdigest()
    if size < chunk:
        return md5, md5
    return md5, f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def list_objects(aws: Aws, bucket: str, prefix: str) -> Dict[str, Dict[str, Any]]:
    """{key: {size, etag}} of the objects under `prefix`."""
    objects: Dict[str, Dict[str, Any]] = {}
    params: Dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = aws.call(Request("s3", "ListObjectsV2", dict(params),
                                why="what is already uploaded (to skip identical files)"))
        for item in page.get("Contents", []):
            objects[item["Key"]] = {"size": int(item["Size"]), "etag": str(item.get("ETag", "")).strip('"')}
        if not page.get("IsTruncated"):
            return objects
        params["ContinuationToken"] = page["NextContinuationToken"]


@dataclass
class Upload:
    path: Path
    key: str
    size: int
    md5: str
    etag: str
    content_type: Optional[str] = None


def is_identical(aws: Aws, bucket: str, upload: Upload, remote: Optional[Dict[str, Any]]) -> bool:
    if remote is None or remote["size"] != upload.size:
        return False
    if remote["etag"] in (upload.md5, upload.etag):
        return True
    # SSE-KMS objects' ETags are not MD5s: compare the MD5 orchard stored as metadata.
    head = aws.try_call(Request("s3", "HeadObject", {"Bucket": bucket, "Key": upload.key}),
                        missing=("404", "NoSuchKey", "NotFound"))
    return bool(head) and head.get("Metadata", {}).get(MD5_METADATA) == upload.md5


def plan_uploads(files: List[Tuple[str, Path]], prefix: str) -> List[Upload]:
    uploads = []
    for relative, path in files:
        md5, etag = file_digests(path)
        content_type = mimetypes.guess_type(path.name)[0]
        uploads.append(Upload(path=path, key=f"{prefix}{relative}", size=path.stat().st_size,
                              md5=md5, etag=etag, content_type=content_type))
    return uploads


def sync(aws: Aws, bucket: str, uploads: List[Upload], remote: Dict[str, Dict[str, Any]],
         workers: int = 8, progress: bool = True, label: str = "upload") -> Dict[str, int]:
    """Upload what differs, in parallel, with a progress bar; skip identical objects.

    Resumable: every file is its own object, so an interrupted push loses at most the files in
    flight; running it again uploads only what is missing or changed.
    """
    todo = [u for u in uploads if not is_identical(aws, bucket, u, remote.get(u.key))]
    skipped = len(uploads) - len(todo)
    total = sum(u.size for u in todo)
    if not todo:
        return {"uploaded": 0, "skipped": skipped, "bytes": 0}
    from tqdm import tqdm

    lock = threading.Lock()
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress or None,
              leave=False) as bar:
        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def one(upload: Upload) -> None:
            extra: Dict[str, Any] = {"Metadata": {MD5_METADATA: upload.md5}}
            if upload.content_type:
                extra["ContentType"] = upload.content_type
            aws.upload_file(bucket, upload.key, str(upload.path), upload.size, extra, advance)

        if aws.dry_run or workers <= 1:
            for upload in todo:
                one(upload)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(one, upload) for upload in todo]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    return {"uploaded": len(todo), "skipped": skipped, "bytes": total}
