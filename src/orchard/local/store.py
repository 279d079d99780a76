"""A real S3-compatible object store for the local cluster: one SeaweedFS `weed server`.

One process runs SeaweedFS's master, a volume server, a filer and the S3 gateway, all on
127.0.0.1. Requests must be signed (AWS Signature V4) with the access and secret key generated
once per state directory and kept in its `s3-identities.json` (mode 600).
"""
from __future__ import annotations

import json
import os
import secrets
import string
import urllib.request
from pathlib import Path
from typing import Dict, List

IDENTITIES_FILE = "s3-identities.json"
ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
REGION = "us-east-1"


def credentials(home: Path) -> Dict[str, str]:
    """This state directory's S3 access and secret key; generated (and saved) the first time."""
    file = home / IDENTITIES_FILE
    if file.is_file():
        identity = json.loads(file.read_text())["identities"][0]["credentials"][0]
        return {"access_key": identity["accessKey"], "secret_key": identity["secretKey"]}
    access_key = "ORCH" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(16))
    secret_key = secrets.token_urlsafe(30)
    identities = {"identities": [{
        "name": "orchard",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    home.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(str(file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(identities, out, indent=2)
    return {"access_key": access_key, "secret_key": secret_key}


def weed_command(weed: Path, home: Path, ports: Dict[str, int]) -> List[str]:
    """`weed server` with master, volume, filer and S3 on the given loopback ports."""
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    return [
        str(weed), "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={ports['s3_master']}", f"-master.port.grpc={ports['s3_master_grpc']}",
        "-master.volumeSizeLimitMB=1024",
        f"-volume.port={ports['s3_volume']}", f"-volume.port.grpc={ports['s3_volume_grpc']}",
        "-volume.max=0", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={ports['s3_filer']}", f"-filer.port.grpc={ports['s3_filer_grpc']}",
        f"-filer.localSocket={home / 'filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.config={home / IDENTITIES_FILE}", f"-s3.localSocket={home / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]


def weed_env(home: Path) -> Dict[str, str]:
    """weed's environment: its own log files go to <home>/tmp instead of /tmp."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp)}


GRPC_SOCKETS = {"s3": "s3_grpc", "filer": "s3_filer_grpc", "master": "s3_master_grpc",
                "volume": "s3_volume_grpc"}


def remove_grpc_sockets(ports: Dict[str, int]) -> None:
    """weed leaves /tmp/seaweedfs-s3-grpc-<port>.sock behind when it stops; remove those of
    this box's ports (call once its weed is gone)."""
    for kind, name in GRPC_SOCKETS.items():
        if name in ports:
            path = Path(f"/tmp/seaweedfs-{kind}-grpc-{ports[name]}.sock")
            if path.is_socket():
                path.unlink()


def remove_stale_sockets(home: Path) -> None:
    for name in ("filer.sock", "s3.sock"):
        try:
            (home / name).unlink()
        except FileNotFoundError:
            pass


def s3_client(endpoint: str, access_key: str, secret_key: str):
    """A boto3 S3 client for a path-style, plain-HTTP endpoint."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                      connect_timeout=5, read_timeout=60, max_pool_connections=32),
    )


def has_volume_server(master_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{master_port}/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology", {})
    except (OSError, ValueError):
        return False
    return any(rack.get("DataNodes") for dc in topology.get("DataCenters") or []
               for rack in dc.get("Racks") or [])


def is_ready(endpoint: str, access_key: str, secret_key: str, master_port: int) -> bool:
    """The S3 gateway answers a signed request and a volume server takes writes."""
    if not has_volume_server(master_port):
        return False
    try:
        s3_client(endpoint, access_key, secret_key).list_buckets()
    except Exception:  # not up yet: connection refused, 5xx while the filer starts
        return False
    return True
