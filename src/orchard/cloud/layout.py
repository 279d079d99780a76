"""Where things live: the bucket's keys, the IAM names and the nodes' paths, from the bucket name.

Every command derives the same names from `--bucket`, so `init`, `push`, `cluster create` and
`submit` agree without a state file:

    s3://B/data/                            the images (`push DATASET_DIR`)
    s3://B/orchard/wheels/orchard-V-py3-none-any.whl
    s3://B/orchard/wheelhouse/requirements.txt    the nodes' libraries, locked (hashes)
    s3://B/orchard/wheelhouse/<arch>/*.whl  their wheels, x86_64 and aarch64 (Graviton)
    s3://B/orchard/wheelhouse-py3.11/...    the same for Python 3.11 (the emr-spark-8 line)
    s3://B/orchard/emr-bootstrap.sh         the bootstrap action
    s3://B/orchard/spark_entry.py           the script the step runs (`orchard run`)
    s3://B/orchard/models/<model file>      the ONNX weights, copied to /opt/orchard/models/
    s3://B/logs/                            EMR logs (expire after 30 days by default)
    s3://B/runs/<UTC time>/                 outputs of `submit`: Parquet, run.json
    s3://B/jupyter/                         JupyterHub notebooks
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from orchard import __version__
from orchard.errors import OrchardError

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

ARTIFACTS_PREFIX = "orchard/"
DATA_PREFIX = "data/"
LOGS_PREFIX = "logs/"
RUNS_PREFIX = "runs/"
NODE_MODEL_DIR = "/opt/orchard/models"  # where the bootstrap action puts the model on every node
NODE_SYSTEM_PYTHON = "/usr/bin/python3"  # EMR 7 (Amazon Linux 2023): Python 3.9, the OS's own
DEFAULT_NODE_PYTHON = "3.9"  # EMR 7's; emr-spark-8 nodes: 3.11 (/usr/bin/python3.11)
NODE_VENV = "/opt/orchard/venv"  # orchard's libraries, apart from the rpm-installed ones
NODE_PYTHON = f"{NODE_VENV}/bin/python"  # what Spark's Python workers (PYSPARK_PYTHON) run

SERVICE_ROLE = "orchard-emr-service-role"
EC2_ROLE_PREFIX = "orchard-emr-ec2-"
DEFAULT_SERVICE_ROLE = "EMR_DefaultRole"  # with --use-default-roles (`aws emr create-default-roles`)
DEFAULT_EC2_ROLE = "EMR_EC2_DefaultRole"
EMR_MANAGED_TAG = "for-use-with-amazon-emr-managed-policies"  # AmazonEMRServicePolicy_v2 scope
PROJECT_TAG = ("project", "orchard")


def check_bucket_name(bucket: str) -> str:
    """Bucket names orchard accepts: S3's rules, without dots (TLS-only access needs that)."""
    reserved = bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3"))
    if not BUCKET_NAME.match(bucket or "") or reserved:
        raise OrchardError(
            f"invalid bucket name {bucket!r}: use 3-63 lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit (no dots: they break TLS to "
            "virtual-hosted bucket names, and orchard's buckets are TLS-only)"
        )
    return bucket


def check_prefix(prefix: str) -> str:
    """'data' -> 'data/'; '' stays '' (the bucket's root)."""
    prefix = prefix.strip("/")
    if ".." in prefix.split("/"):
        raise OrchardError(f"invalid prefix {prefix!r}")
    return f"{prefix}/" if prefix else ""


@dataclass(frozen=True)
class Layout:
    """The names derived from one bucket (and orchard's version)."""

    bucket: str
    version: str = __version__

    def __post_init__(self) -> None:
        check_bucket_name(self.bucket)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def wheel_name(self) -> str:
        return f"orchard-{self.version}-py3-none-any.whl"

    @property
    def wheel_key(self) -> str:
        return f"{ARTIFACTS_PREFIX}wheels/{self.wheel_name}"

    @property
    def wheelhouse_prefix(self) -> str:
        return f"{ARTIFACTS_PREFIX}wheelhouse/"

    @property
    def wheelhouse_lock_key(self) -> str:
        return f"{self.wheelhouse_prefix}requirements.txt"

    def wheelhouse_prefix_for(self, python: str = DEFAULT_NODE_PYTHON) -> str:
        """The wheelhouse for nodes running Python `python` ('3.9': EMR 7, '3.11': emr-spark-8)."""
        return self.wheelhouse_prefix if python == DEFAULT_NODE_PYTHON else \
            f"{ARTIFACTS_PREFIX}wheelhouse-py{python}/"

    def wheelhouse_lock_key_for(self, python: str = DEFAULT_NODE_PYTHON) -> str:
        return f"{self.wheelhouse_prefix_for(python)}requirements.txt"

    @property
    def bootstrap_key(self) -> str:
        return f"{ARTIFACTS_PREFIX}emr-bootstrap.sh"

    @property
    def entry_key(self) -> str:
        return f"{ARTIFACTS_PREFIX}spark_entry.py"

    def model_key(self, file_name: str) -> str:
        return f"{ARTIFACTS_PREFIX}models/{file_name}"

    @property
    def log_uri(self) -> str:
        return self.uri(LOGS_PREFIX)

    @property
    def data_uri(self) -> str:
        return self.uri(DATA_PREFIX)

    def run_uri(self, stamp: str) -> str:
        return self.uri(f"{RUNS_PREFIX}{stamp}/")

    @property
    def ec2_role(self) -> str:
        """The nodes' role (and instance profile), one per bucket: its S3 rights name the bucket."""
        name = f"{EC2_ROLE_PREFIX}{self.bucket}"
        if len(name) <= 64:
            return name
        digest = hashlib.sha256(self.bucket.encode()).hexdigest()[:8]
        return f"{name[:55]}-{digest}"

    @property
    def security_group(self) -> str:
        return f"orchard-{self.bucket}-ssh"


def node_model_path(file_name: str) -> str:
    return f"{NODE_MODEL_DIR}/{file_name}"
