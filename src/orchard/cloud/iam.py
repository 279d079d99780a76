"""IAM for EMR: a service role (AWS's scoped v2 policy) and the nodes' role, scoped to one bucket.

- `orchard-emr-service-role`: assumed by EMR itself (trust limited to this account), with the
  AWS managed `AmazonEMRServicePolicy_v2` (it acts only on resources tagged
  `for-use-with-amazon-emr-managed-policies=true`) plus the right to pass the nodes' role.
- `orchard-emr-ec2-<bucket>` (role + instance profile): what the nodes may do. S3: list, read,
  write and delete in this bucket only, read EMR's own public artefacts; KMS only on the
  bucket's key when one is given. No `s3:*`, no S3 action on `*`.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from orchard.cloud.api import Aws, Request
from orchard.cloud.layout import EC2_ROLE_PREFIX, PROJECT_TAG, SERVICE_ROLE, Layout

EMR_SERVICE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
ROLE_TAGS = [{"Key": PROJECT_TAG[0], "Value": PROJECT_TAG[1]}]


def caller_identity() -> Request:
    return Request("sts", "GetCallerIdentity", {}, why="the account id, for the roles' trust and ARNs")


def service_trust(account: str, region: str) -> Dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # confused-deputy protection: only EMR acting for this account
            "Condition": {"StringEquals": {"aws:SourceAccount": account},
                          "ArnLike": {"aws:SourceArn": f"arn:aws:elasticmapreduce:{region}:{account}:*"}},
        }],
    }


def ec2_trust() -> Dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}],
    }


def pass_role_policy(account: str) -> Dict[str, Any]:
    """AmazonEMRServicePolicy_v2 may pass only EMR_EC2_DefaultRole: allow orchard's nodes' roles."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PassOrchardNodeRoles", "Effect": "Allow", "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::{account}:role/{EC2_ROLE_PREFIX}*",
            "Condition": {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}},
        }],
    }


def node_policy(bucket: str, region: str, kms_key_arn: Optional[str] = None) -> Dict[str, Any]:
    """What the cluster's nodes may do: this bucket, EMR's public artefacts, EMR read-only calls."""
    statements: List[Dict[str, Any]] = [
        {"Sid": "ListOrchardBucket", "Effect": "Allow",
         "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
         "Resource": f"arn:aws:s3:::{bucket}"},
        {"Sid": "ReadWriteOrchardBucket", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Sid": "ReadEmrArtefacts", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"arn:aws:s3:::{region}.elasticmapreduce/*", "arn:aws:s3:::elasticmapreduce/*"]},
        {"Sid": "DescribeOwnCluster", "Effect": "Allow",
         "Action": ["elasticmapreduce:DescribeCluster", "elasticmapreduce:ListBootstrapActions",
                    "elasticmapreduce:ListInstanceGroups", "elasticmapreduce:ListInstances",
                    "elasticmapreduce:ListSteps", "elasticmapreduce:DescribeStep"],
         "Resource": "*"},
    ]
    if kms_key_arn:
        statements.append({"Sid": "UseBucketKey", "Effect": "Allow",
                           "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                           "Resource": kms_key_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def _doc(policy: Dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True)


def role_requests(layout: Layout, account: str, region: str,
                  kms_key_arn: Optional[str] = None) -> List[Request]:
    """Every request of `init`'s IAM part, in order; each is idempotent."""
    service, nodes = SERVICE_ROLE, layout.ec2_role
    exists = ("EntityAlreadyExists",)
    return [
        Request("iam", "CreateRole", {
            "RoleName": service, "AssumeRolePolicyDocument": _doc(service_trust(account, region)),
            "Description": "orchard: Amazon EMR service role", "Tags": ROLE_TAGS,
        }, ok_errors=exists, why="EMR's service role"),
        Request("iam", "UpdateAssumeRolePolicy", {
            "RoleName": service, "PolicyDocument": _doc(service_trust(account, region)),
        }, why="trust: EMR, for this account only (also on a role that existed)"),
        Request("iam", "AttachRolePolicy", {"RoleName": service, "PolicyArn": EMR_SERVICE_POLICY_ARN},
                why="AWS's scoped EMR service policy (v2: tagged resources only)"),
        Request("iam", "PutRolePolicy", {
            "RoleName": service, "PolicyName": "orchard-pass-node-roles",
            "PolicyDocument": _doc(pass_role_policy(account)),
        }, why="let EMR hand orchard's node roles to the instances"),
        Request("iam", "CreateRole", {
            "RoleName": nodes, "AssumeRolePolicyDocument": _doc(ec2_trust()),
            "Description": f"orchard: EMR nodes, S3 access to {layout.bucket} only", "Tags": ROLE_TAGS,
        }, ok_errors=exists, why="the nodes' role"),
        Request("iam", "UpdateAssumeRolePolicy", {"RoleName": nodes, "PolicyDocument": _doc(ec2_trust())},
                why="trust: EC2 (also on a role that existed)"),
        Request("iam", "PutRolePolicy", {
            "RoleName": nodes, "PolicyName": "orchard-bucket-access",
            "PolicyDocument": _doc(node_policy(layout.bucket, region, kms_key_arn)),
        }, why=f"S3 rights scoped to s3://{layout.bucket}"),
        Request("iam", "CreateInstanceProfile", {"InstanceProfileName": nodes, "Tags": ROLE_TAGS},
                ok_errors=exists, why="the instance profile EC2 needs to carry the role"),
        Request("iam", "AddRoleToInstanceProfile", {"InstanceProfileName": nodes, "RoleName": nodes},
                ok_errors=("LimitExceeded",), why="(LimitExceeded: the role is already in it)"),
    ]


def kms_key_arn(key: Optional[str], region: str, account: str) -> Optional[str]:
    """An ARN for the IAM policy from a key id or ARN (aliases are taken as given)."""
    if not key:
        return None
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{account}:{key}"
    return f"arn:aws:kms:{region}:{account}:key/{key}"


def init_roles(aws: Aws, layout: Layout, kms_key: Optional[str] = None) -> Dict[str, Any]:
    account = aws.call(caller_identity())["Account"]
    key_arn = kms_key_arn(kms_key, aws.region, account)
    for request in role_requests(layout, account, aws.region, key_arn):
        aws.call(request)
    return {"service_role": SERVICE_ROLE, "instance_profile": layout.ec2_role,
            "node_s3_scope": [f"arn:aws:s3:::{layout.bucket}", f"arn:aws:s3:::{layout.bucket}/*"]}


def check_roles(aws: Aws, service_role: str, instance_profile: str) -> None:
    """Fail early, with the fix, when the roles `cluster create` names do not exist."""
    from orchard.errors import OrchardError

    role = aws.try_call(Request("iam", "GetRole", {"RoleName": service_role},
                                why="the service role exists"), missing=("NoSuchEntity",))
    profile = aws.try_call(Request("iam", "GetInstanceProfile", {"InstanceProfileName": instance_profile},
                                   why="the instance profile exists"), missing=("NoSuchEntity",))
    missing = [name for name, found in ((service_role, role), (instance_profile, profile)) if not found]
    if missing:
        raise OrchardError(f"IAM role/instance profile not found: {', '.join(missing)}; run "
                           "`orchard aws init --bucket B` first (or `aws emr create-default-roles` "
                           "with --use-default-roles)")
