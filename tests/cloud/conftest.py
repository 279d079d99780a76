"""Fixtures of the AWS tests: moto (in-process `mock_aws`), the requests boto3 sends, orchard's
wheel, a small dataset, a stand-in wheelhouse, and the CLI run in-process."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from orchard.cli import main
from orchard.cloud.artifacts import build_wheel
from orchard.cloud.layout import Layout
from orchard.cloud.wheelhouse import LOCK_FILE, LOCK_NAME, build_wheelhouse, find_python39

REGION = "eu-west-3"
BUCKET = "orchard-test-seeds"
LAYOUT = Layout(BUCKET)
SSH_CIDR = "203.0.113.7/32"
MODEL = "mobilenet_v2_1.0_224.onnx"
# Wheelhouses downloaded by tests are kept here between runs (the suite's cache folder is
# per test): $ORCHARD_WHEELHOUSE_CACHE, default ~/.cache/orchard/wheelhouse.
WHEELHOUSE_CACHE = Path(os.environ.get("ORCHARD_WHEELHOUSE_CACHE")
                        or Path.home() / ".cache" / "orchard" / "wheelhouse")


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials, no profile, nothing reaching AWS: moto's in-process mock."""
    moto = pytest.importorskip("moto")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # orchard must pass eu-west-3 itself
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # AmazonEMRServicePolicy_v2 exists
    _conditions_moto_cannot_evaluate(monkeypatch)
    _managed_scaling_moto_lacks(monkeypatch)
    with moto.mock_aws():
        yield


def _conditions_moto_cannot_evaluate(monkeypatch) -> None:
    """moto applies bucket policies without their Conditions ("Conditions are not taken into
    account"), so orchard's Deny-unless-TLS statements would deny every request. On AWS they
    match only plain-HTTP or TLS < 1.2 requests, and boto3 speaks TLS 1.2+: drop them here."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self, action, resource):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy.decode())
        document["Statement"] = [s for s in document["Statement"] if "Condition" not in s]
        if not document["Statement"]:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)


def _managed_scaling_moto_lacks(monkeypatch) -> None:
    """moto (5.2.x) has no EMR managed-scaling calls: store the policy on moto's cluster, so
    boto3's own PutManagedScalingPolicy / GetManagedScalingPolicy (request validation and answer
    parsing) are exercised and a test can read back what EMR would hold. An unknown cluster is
    refused as EMR does. Where moto has them, its own are used."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.emr.responses import ElasticMapReduceResponse

    if hasattr(ElasticMapReduceResponse, "put_managed_scaling_policy"):
        return

    def plain(value):  # moto's parsed request (XFormedDict) as plain dicts
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, list) else value

    def put_managed_scaling_policy(self):
        params = self._get_params()
        cluster = self.backend.describe_cluster(params["ClusterId"])  # InvalidCluster when unknown
        cluster.orchard_managed_scaling = plain(params["ManagedScalingPolicy"])
        return EmptyResult()

    def get_managed_scaling_policy(self):
        cluster = self.backend.describe_cluster(self._get_param("ClusterId"))
        policy = getattr(cluster, "orchard_managed_scaling", None)
        return ActionResult({"ManagedScalingPolicy": policy} if policy else {})

    monkeypatch.setattr(ElasticMapReduceResponse, "put_managed_scaling_policy", put_managed_scaling_policy,
                        raising=False)
    monkeypatch.setattr(ElasticMapReduceResponse, "get_managed_scaling_policy", get_managed_scaling_policy,
                        raising=False)


Call = Tuple[str, str, str, Dict[str, Any]]


@pytest.fixture
def sent(aws_env, monkeypatch) -> List[Call]:
    """(service, region, operation, params) of every request boto3 sends, in order."""
    from botocore.client import BaseClient

    calls: List[Call] = []
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        calls.append((self.meta.service_model.service_name, self.meta.region_name,
                      operation_name, json.loads(json.dumps(api_params, default=str))))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


@pytest.fixture
def no_aws(monkeypatch):
    """A dry run must work without credentials and create no boto3 client at all."""
    boto3 = pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run created an AWS session")

    monkeypatch.setattr(boto3, "Session", refuse)
    monkeypatch.setattr(boto3, "client", refuse)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """orchard's wheel, built once from this checkout the way `push` builds it."""
    path = build_wheel(tmp_path_factory.mktemp("wheel"))
    assert path.name == LAYOUT.wheel_name
    return path


@pytest.fixture
def small_dataset(tmp_path, sample_dir) -> Path:
    """3 classes x 2 images in each split, plus a hidden file push must leave alone."""
    root = tmp_path / "fruits"
    for split in ("Training", "Test"):
        for cls in sorted(p.name for p in (sample_dir / split).iterdir())[:3]:
            target = root / split / cls
            target.mkdir(parents=True)
            for image in sorted((sample_dir / split / cls).iterdir())[:2]:
                shutil.copy2(image, target / image.name)
    (root / ".DS_Store").write_bytes(b"junk")
    return root


@pytest.fixture
def stand_in_wheelhouse(tmp_path) -> Path:
    """A wheelhouse's shape (the real lock, one small file per architecture) for the moto
    tests: the real one (~220 MB) is tested in test_wheelhouse.py and test_artifacts.py."""
    folder = tmp_path / "wheelhouse"
    for arch in ("x86_64", "aarch64"):
        (folder / arch).mkdir(parents=True)
        (folder / arch / f"tqdm-4.67.1-py3-none-{arch}.whl").write_bytes(arch.encode())
    shutil.copy2(LOCK_FILE, folder / LOCK_NAME)
    return folder


def cli(capsys, *argv: str) -> Tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *argv: str) -> Dict[str, Any]:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def dry_run(capsys, *argv: str) -> Dict[str, Any]:
    code, out, err = cli(capsys, *argv, "--dry-run")
    assert code == 0, err
    document = json.loads(out)
    assert document["dry_run"] is True
    return document


def ops(calls: List[Call], service=None) -> List[str]:
    return [op for svc, _, op, _ in calls if service is None or svc == service]


def params_of(calls: List[Call], operation: str) -> List[Dict[str, Any]]:
    return [params for _, _, op, params in calls if op == operation]


def push_args(small_dataset: Path, wheel: Path, wheelhouse: Path) -> Tuple[str, ...]:
    return ("aws", "push", str(small_dataset), "--bucket", BUCKET, "--wheel", str(wheel),
            "--wheelhouse", str(wheelhouse), "--no-progress")


def deploy_base(capsys, small_dataset: Path, wheel: Path, wheelhouse: Path) -> None:
    assert cli(capsys, "aws", "init", "--bucket", BUCKET, "--yes")[0] == 0
    assert cli(capsys, *push_args(small_dataset, wheel, wheelhouse))[0] == 0


@pytest.fixture(scope="session")
def python39() -> str:
    found = find_python39()
    if not found:
        pytest.skip("no Python 3.9 here (set ORCHARD_PYTHON39): EMR 7's Python is needed")
    return found


@pytest.fixture(scope="session")
def x86_64_wheelhouse() -> Path:
    """The real wheelhouse (x86_64 part), downloaded once into WHEELHOUSE_CACHE."""
    return build_wheelhouse(cache=WHEELHOUSE_CACHE, architectures=("x86_64",))
