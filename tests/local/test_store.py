"""SeaweedFS, the local cluster's S3 (orchard.local.store)."""
from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

from orchard.local import store as localstore
from orchard.local.processes import free_port


def test_credentials_are_generated_once_per_state_dir(tmp_path):
    first = localstore.credentials(tmp_path / "a")
    assert localstore.credentials(tmp_path / "a") == first
    assert localstore.credentials(tmp_path / "b") != first
    file = tmp_path / "a" / localstore.IDENTITIES_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    identity = json.loads(file.read_text())["identities"][0]
    assert identity["credentials"][0]["accessKey"] == first["access_key"]


def test_weed_listens_on_loopback_with_signed_requests(tmp_path):
    ports = {name: 20000 + i for i, name in enumerate(
        ["s3", "s3_grpc", "s3_master", "s3_master_grpc", "s3_volume", "s3_volume_grpc", "s3_filer", "s3_filer_grpc"])}
    command = localstore.weed_command(Path("/bin/weed"), tmp_path, ports)
    assert command[:2] == ["/bin/weed", "server"]
    assert "-ip.bind=127.0.0.1" in command and "-s3" in command
    assert f"-s3.port={ports['s3']}" in command and f"-master.port.grpc={ports['s3_master_grpc']}" in command
    assert f"-s3.config={tmp_path / localstore.IDENTITIES_FILE}" in command


def test_weeds_leftover_grpc_sockets_are_removed(tmp_path):
    port = free_port(set())
    path = Path(f"/tmp/seaweedfs-s3-grpc-{port}.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
    other = tmp_path / "not-a-socket"
    other.write_text("x")
    try:
        localstore.remove_grpc_sockets({"s3_grpc": port})
        assert not path.exists()
    finally:
        if path.exists():
            path.unlink()
    assert localstore.weed_env(tmp_path)["TMPDIR"] == str(tmp_path / "tmp")
