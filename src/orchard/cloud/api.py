"""One door to AWS: every request is built as data (`Request`), then sent, or printed (dry run).

The builders in orchard.cloud.s3/iam/emr return `Request` objects; `Aws.call` either sends one
through boto3 (the standard credential chain, `--profile`, `--region`) or, with `dry_run`,
checks it against botocore's API model, records it and answers with a placeholder response,
without credentials and without any network access. Both modes go through the same builders and
the same sequence of calls; `Aws.journal` holds every request made, in order.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from orchard import __version__
from orchard.errors import OrchardError
from orchard.storage.fs import PART_SIZE, transfer_config

log = logging.getLogger(__name__)

DEFAULT_REGION = "eu-west-3"  # Paris: the seeds' data stays in the EU (GDPR)
GLOBAL_SERVICES = ("iam", "sts")
# Placeholders the dry run answers with, where a later request needs a value from AWS.
DRY_ACCOUNT = "<account-id>"
DRY_CLUSTER_ID = "j-DRYRUN"
DRY_STEP_ID = "s-DRYRUN"
DRY_VPC_ID = "vpc-DRYRUN"
DRY_SUBNET_ID = "subnet-DRYRUN"
DRY_GROUP_ID = "sg-DRYRUN"
DRY_PRIMARY_DNS = "ec2-0-0-0-0.eu-west-3.compute.amazonaws.com"


@dataclass
class Request:
    """One AWS API request: service, operation (API name) and its parameters, as sent."""

    service: str
    operation: str
    params: Dict[str, Any] = field(default_factory=dict)
    ok_errors: Tuple[str, ...] = ()  # error codes meaning "already so": the call is then a no-op
    why: str = ""  # shown in --dry-run output

    def to_dict(self, region: str) -> Dict[str, Any]:
        entry: Dict[str, Any] = {"service": self.service, "operation": self.operation,
                                 "region": "global" if self.service in GLOBAL_SERVICES else region,
                                 "params": self.params}
        if self.why:
            entry["why"] = self.why
        return entry


class AwsError(OrchardError):
    """An AWS request failed; the message names the request and AWS's error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class Aws:
    """Sends (or, dry run, records) requests; creates boto3 clients lazily, one per service."""

    def __init__(self, region: str = DEFAULT_REGION, profile: Optional[str] = None,
                 dry_run: bool = False, max_pool_connections: int = 32) -> None:
        self.region = region
        self.profile = profile
        self.dry_run = dry_run
        self.max_pool_connections = max_pool_connections
        self.journal: List[Dict[str, Any]] = []
        self._clients: Dict[str, Any] = {}
        self._session = None
        self._lock = threading.Lock()

    # -- clients ---------------------------------------------------------------------------
    def session(self):
        if self.dry_run:
            raise AssertionError("internal: a dry run must not create an AWS session")
        if self._session is None:
            import boto3
            import botocore.exceptions

            try:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
            except botocore.exceptions.ProfileNotFound:
                raise OrchardError(f"AWS profile {self.profile!r} not found in ~/.aws/config or "
                                   "~/.aws/credentials") from None
        return self._session

    def client(self, service: str):
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                from botocore.config import Config

                config = Config(retries={"mode": "standard", "max_attempts": 10},
                                user_agent_extra=f"orchard/{__version__}",
                                max_pool_connections=self.max_pool_connections)
                client = self.session().client(service, region_name=self.region, config=config)
                self._clients[service] = client
        return client

    # -- requests --------------------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._lock:
            self.journal.append(request.to_dict(self.region))

    def call(self, request: Request) -> Dict[str, Any]:
        """Send `request` (or record it, dry run) and return the response as a dict."""
        self._record(request)
        if self.dry_run:
            validate(request)
            return dry_run_response(request, self.region)
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        from botocore import xform_name

        method = getattr(self.client(request.service), xform_name(request.operation))
        try:
            response = method(**request.params)
        except ClientError as error:
            code = error_code(error)
            if code in request.ok_errors:
                log.debug("%s %s: %s (already so)", request.service, request.operation, code)
                return {"OrchardAlreadyDone": code}
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            raise AwsError(f"AWS {request.service} {request.operation} failed: {code}: {message}",
                           code) from None
        except NoCredentialsError:
            raise OrchardError(NO_CREDENTIALS) from None
        except BotoCoreError as error:
            raise AwsError(f"AWS {request.service} {request.operation} failed: {error}") from None
        response.pop("ResponseMetadata", None)
        return response

    def try_call(self, request: Request, missing: Tuple[str, ...]) -> Optional[Dict[str, Any]]:
        """Like `call`, but None when AWS answers one of the `missing` error codes."""
        try:
            return self.call(request)
        except AwsError as error:
            if error.code in missing:
                return None
            raise

    def upload_file(self, bucket: str, key: str, filename: str, size: int,
                    extra_args: Optional[Dict[str, Any]] = None,
                    callback: Optional[Callable[[int], None]] = None) -> None:
        """Upload a file (parts of PART_SIZE at and above it); recorded as one PutObject."""
        extra_args = dict(extra_args or {})
        request = Request("s3", "PutObject", {"Bucket": bucket, "Key": key,
                                              "Body": f"<{size} bytes of {filename}>", **extra_args})
        self._record(request)
        if self.dry_run:
            validate(request)
            if callback:
                callback(size)
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        from boto3.exceptions import S3UploadFailedError

        try:
            if size < PART_SIZE:  # one PutObject: lighter than a transfer manager per file
                with open(filename, "rb") as body:
                    self.client("s3").put_object(Bucket=bucket, Key=key, Body=body, **extra_args)
                if callback:
                    callback(size)
            else:
                self.client("s3").upload_file(filename, bucket, key, ExtraArgs=extra_args,
                                              Callback=callback, Config=transfer_config())
        except NoCredentialsError:
            raise OrchardError(NO_CREDENTIALS) from None
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            raise AwsError(f"upload of {filename} to s3://{bucket}/{key} failed: {error}",
                           error_code(error)) from None

    def requests(self) -> List[Dict[str, Any]]:
        return list(self.journal)


NO_CREDENTIALS = (
    "no AWS credentials found (standard chain: AWS_* variables, ~/.aws/credentials, SSO, "
    "instance role): run `aws configure` or `aws sso login`, or pass --profile; "
    "--dry-run needs none"
)



_MODELS: Dict[str, Any] = {}


def validate(request: Request) -> None:
    """Check `request` against botocore's model of the API (names, types, required fields)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = _MODELS.get(request.service)
    if model is None:
        model = botocore.session.get_session().get_service_model(request.service)
        _MODELS[request.service] = model
    operation = model.operation_model(request.operation)
    report = ParamValidator().validate(request.params, operation.input_shape)
    if report.has_errors():
        raise OrchardError(f"internal: invalid {request.service} {request.operation} request: "
                           f"{report.generate_report()}")


def dry_run_response(request: Request, region: str) -> Dict[str, Any]:
    """What a dry run pretends AWS answered: nothing exists yet, and creations succeed."""
    op, params = request.operation, request.params
    if op == "GetCallerIdentity":
        return {"Account": DRY_ACCOUNT, "Arn": f"arn:aws:iam::{DRY_ACCOUNT}:user/dry-run"}
    if op == "GetBucketLocation":
        return {"LocationConstraint": None if region == "us-east-1" else region}
    if op == "ListObjectsV2":
        return {"Contents": [], "IsTruncated": False, "KeyCount": 0}
    if op == "DescribeVpcs":
        return {"Vpcs": [{"VpcId": DRY_VPC_ID, "IsDefault": True}]}
    if op == "DescribeSubnets":
        return {"Subnets": [{"SubnetId": params.get("SubnetIds", [DRY_SUBNET_ID])[0],
                             "VpcId": DRY_VPC_ID, "AvailabilityZone": f"{region}a"}]}
    if op == "DescribeSecurityGroups":
        return {"SecurityGroups": []}
    if op == "CreateSecurityGroup":
        return {"GroupId": DRY_GROUP_ID}
    if op == "RunJobFlow":
        return {"JobFlowId": DRY_CLUSTER_ID}
    if op == "AddJobFlowSteps":
        return {"StepIds": [DRY_STEP_ID for _ in params.get("Steps", [])]}
    if op == "DescribeCluster":
        return {"Cluster": {"Id": params.get("ClusterId"), "Name": "dry-run",
                            "Status": {"State": "WAITING"}, "LogUri": "s3n://<bucket>/logs/",
                            "MasterPublicDnsName": DRY_PRIMARY_DNS,
                            "Ec2InstanceAttributes": {"Ec2KeyName": "<key-name>"}}}
    if op == "ListSteps":
        return {"Steps": [{"Id": DRY_STEP_ID, "Name": "dry-run", "Status": {"State": "COMPLETED"}}]}
    if op == "DescribeStep":
        return {"Step": {"Id": params.get("StepId"), "Name": "dry-run",
                         "Status": {"State": "COMPLETED"}}}
    if op == "GetRole":
        name = params["RoleName"]
        return {"Role": {"RoleName": name, "Arn": f"arn:aws:iam::{DRY_ACCOUNT}:role/{name}"}}
    if op == "GetInstanceProfile":
        name = params["InstanceProfileName"]
        return {"InstanceProfile": {"InstanceProfileName": name, "Roles": [{"RoleName": name}]}}
    if op == "GetObject":
        return {"Body": None}
    if op == "DescribeKey":
        key = params["KeyId"]
        arn = key if key.startswith("arn:") and ":key/" in key else \
            f"arn:aws:kms:{region}:{DRY_ACCOUNT}:key/<key id of {key}>"
        return {"KeyMetadata": {"KeyId": arn.rsplit("/", 1)[-1], "Arn": arn}}
    return {}


def dumps(value: Any, width: int = 100, indent: int = 2) -> str:
    """JSON like json.dumps(indent=2), but lists and objects that fit in `width` stay on one line."""

    def render(item: Any, level: int, used: int) -> str:
        flat = json.dumps(item, default=str)
        if not isinstance(item, (dict, list)) or not item or used + len(flat) <= width:
            return flat
        pad, end = " " * (indent * (level + 1)), " " * (indent * level)
        if isinstance(item, dict):
            lines = []
            for key, child in item.items():
                head = f"{pad}{json.dumps(key)}: "
                lines.append(head + render(child, level + 1, len(head)))
            return "{\n" + ",\n".join(lines) + "\n" + end + "}"
        lines = [pad + render(child, level + 1, len(pad)) for child in item]
        return "[\n" + ",\n".join(lines) + "\n" + end + "]"

    return render(value, 0, 0)
