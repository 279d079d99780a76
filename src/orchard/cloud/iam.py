"""IAM for EMR: a service role (AWS's scoped v2 policy) and the nodes' role, scoped to one bucket.

- `orchard-emr-service-role`: assumed by EMR itself (trust limited to this account and to
  every region `init` ran in: the role is global, its trust lists each region's EMR ARNs), with
  the AWS managed `AmazonEMRServicePolicy_v2` (it acts only on resources tagged
  `for-use-with-amazon-emr-managed-policies=true`) plus the right to pass the nodes' role.
- `orchard-emr-ec2-<bucket>` (role + instance profile): what the nodes may do. S3: list, read,
  write and delete in this bucket only, read EMR's own public artefacts; KMS only on the
  bucket's key when one is given (an alias is resolved to the key's ARN: a policy naming an
  alias authorises the alias only, not the key). No `s3:*`, no S3 action on `*`.
- `AWSServiceRoleForEC2Spot`: the service-linked role EC2 needs for Spot instances
  (`cluster create --spot`), which AmazonEMRServicePolicy_v2 cannot create.
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, List, Optional, Set

from orchard.cloud.api import Aws, Request
from orchard.cloud.layout import EC2_ROLE_PREFIX, PROJECT_TAG, SERVICE_ROLE, Layout
from orchard.errors import OrchardError

EMR_SERVICE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
ROLE_TAGS = [{"Key": PROJECT_TAG[0], "Value": PROJECT_TAG[1]}]
SPOT_SERVICE = "spot.amazonaws.com"
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
EMR_SOURCE_ARN = re.compile(r"^arn:aws[a-z-]*:elasticmapreduce:([a-z0-9-]+):")


def caller_identity() -> Request:
    return Request("sts", "GetCallerIdentity", {}, why="the account id, for the roles' trust and ARNs")


def emr_source_arn(region: str, account: str) -> str:
    return f"arn:aws:elasticmapreduce:{region}:{account}:*"


def service_trust(account: str, regions: Iterable[str]) -> Dict[str, Any]:
    """EMR may assume the role for this account's clusters in each of `regions` (one global role
    serves every region orchard was initialised in)."""
    arns = [emr_source_arn(region, account) for region in sorted(set(regions))]
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "elasticmapreduce.amazonaws.com"},
            "Action": "sts:AssumeRole",
            # confused-deputy protection: only EMR acting for this account, in these regions
            "Condition": {"StringEquals": {"aws:SourceAccount": account},
                          "ArnLike": {"aws:SourceArn": arns if len(arns) > 1 else arns[0]}},
        }],
    }


def trusted_regions(trust: Any) -> Set[str]:
    """The regions an existing service role's trust names in its aws:SourceArn conditions.

    `trust` is the AssumeRolePolicyDocument as IAM returns it (a dict; a JSON string is read too).
    """
    if isinstance(trust, str):
        trust = json.loads(trust)
    regions: Set[str] = set()
    for statement in (trust or {}).get("Statement", []):
        for operator in ("ArnLike", "ArnEquals", "StringLike", "StringEquals"):
            value = statement.get("Condition", {}).get(operator, {}).get("aws:SourceArn", [])
            for arn in [value] if isinstance(value, str) else value:
                match = EMR_SOURCE_ARN.match(arn)
                if match:
                    regions.add(match[1])
    return regions


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
                  kms_key_arn: Optional[str] = None,
                  trust_regions: Iterable[str] = ()) -> List[Request]:
    """Every request of `init`'s IAM part, in order; each is idempotent. The service role's trust
    covers `region` and the `trust_regions` it already had."""
    service, nodes = SERVICE_ROLE, layout.ec2_role
    regions = sorted({region, *trust_regions})
    exists = ("EntityAlreadyExists",)
    return [
        Request("iam", "CreateRole", {
            "RoleName": service, "AssumeRolePolicyDocument": _doc(service_trust(account, regions)),
            "Description": "orchard: Amazon EMR service role", "Tags": ROLE_TAGS,
        }, ok_errors=exists, why="EMR's service role"),
        Request("iam", "UpdateAssumeRolePolicy", {
            "RoleName": service, "PolicyDocument": _doc(service_trust(account, regions)),
        }, why=f"trust: EMR, for this account only, in {', '.join(regions)} (also on a role that "
               "existed: the regions it trusted are kept)"),
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


def describe_key(key: str) -> Request:
    return Request("kms", "DescribeKey", {"KeyId": key},
                   why="the key's ARN: an IAM policy naming an alias grants nothing on the key")


def resolve_kms_key(aws: Aws, key: Optional[str]) -> Optional[str]:
    """The ARN of the KMS key `key` names (key id, key ARN, alias/NAME or alias ARN); None for
    None. Raises OrchardError when KMS does not know the key."""
    if not key:
        return None
    found = aws.try_call(describe_key(key), missing=("NotFoundException",))
    if found is None:
        raise OrchardError(f"KMS key {key!r} not found in {aws.region} (kms:DescribeKey)")
    return found["KeyMetadata"]["Arn"]


def get_service_role() -> Request:
    return Request("iam", "GetRole", {"RoleName": SERVICE_ROLE},
                   why="the regions the service role's trust already covers (kept)")


def spot_role_requests() -> List[Request]:
    return [
        Request("iam", "GetRole", {"RoleName": SPOT_ROLE},
                why="Spot instances need EC2's service-linked role"),
        Request("iam", "CreateServiceLinkedRole", {"AWSServiceName": SPOT_SERVICE},
                # AWS: InvalidInput "...has been taken in this account" (created meanwhile)
                ok_errors=("InvalidInput", "EntityAlreadyExists"),
                why="only if missing: AmazonEMRServicePolicy_v2 cannot create it (--spot)"),
    ]


def ensure_spot_role(aws: Aws) -> bool:
    """Create AWSServiceRoleForEC2Spot when missing; True when it was created."""
    get, create = spot_role_requests()
    if aws.try_call(get, missing=("NoSuchEntity",)) is not None and not aws.dry_run:
        return False
    aws.call(create)
    return True


def init_roles(aws: Aws, layout: Layout, kms_key_arn: Optional[str] = None) -> Dict[str, Any]:
    """orchard's roles (service, nodes) and the Spot service-linked role; `kms_key_arn` is a key
    ARN (see `resolve_kms_key`)."""
    account = aws.call(caller_identity())["Account"]
    existing = aws.try_call(get_service_role(), missing=("NoSuchEntity",))
    trusted = trusted_regions((existing or {}).get("Role", {}).get("AssumeRolePolicyDocument"))
    for request in role_requests(layout, account, aws.region, kms_key_arn, trusted):
        aws.call(request)
    spot_created = ensure_spot_role(aws)
    return {"service_role": SERVICE_ROLE, "instance_profile": layout.ec2_role,
            "service_role_regions": sorted(trusted | {aws.region}),
            "spot_service_linked_role": "created" if spot_created else "existed",
            "node_s3_scope": [f"arn:aws:s3:::{layout.bucket}", f"arn:aws:s3:::{layout.bucket}/*"]}


def check_roles(aws: Aws, service_role: str, instance_profile: str) -> None:
    """Fail early, with the fix, when the roles `cluster create` names do not exist."""
    role = aws.try_call(Request("iam", "GetRole", {"RoleName": service_role},
                                why="the service role exists"), missing=("NoSuchEntity",))
    profile = aws.try_call(Request("iam", "GetInstanceProfile", {"InstanceProfileName": instance_profile},
                                   why="the instance profile exists"), missing=("NoSuchEntity",))
    missing = [name for name, found in ((service_role, role), (instance_profile, profile)) if not found]
    if missing:
        raise OrchardError(f"IAM role/instance profile not found: {', '.join(missing)}; run "
                           "`orchard aws init --bucket B` first (or `aws emr create-default-roles` "
                           "with --use-default-roles)")
