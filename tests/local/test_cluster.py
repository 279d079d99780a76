"""The local cluster's orchestration, fast (orchard.local.cluster): status of a recorded box, stale
state, up and down with stand-in processes.

The real box (Spark + SeaweedFS + HDFS) is started in test_cluster_integration.py. The push and
pull tests below move to tests/storage.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchard.cli import main
from orchard.errors import OrchardError
from orchard.local import deps as localdeps, store as localstore
from orchard.local.cluster import LocalCluster
from orchard.local.processes import process_start_time
from orchard.local.state import STATE_FILE
from orchard.storage import sync as transfer
from tests.local.boxes import record, write_state


def test_status_of_a_box_never_started(tmp_path):
    status = LocalCluster(tmp_path / "box").status()
    assert status["running"] is False and status["stale"] is False
    assert status["master_url"] is None and status["pids"] == {} and status["workers_alive"] == 0
    for key in ("master_url", "workers_alive", "master_ui", "s3_endpoint", "access_key",
                "secret_key", "hdfs_url", "pids"):
        assert key in status


def test_state_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_STATE_DIR", str(tmp_path / "from-env"))
    assert LocalCluster().state_dir == tmp_path / "from-env"
    monkeypatch.delenv("ORCHARD_STATE_DIR")
    assert LocalCluster().state_dir == Path.home() / ".local" / "state" / "orchard" / "local"


def test_status_reads_the_recorded_box(tmp_path, sleepers):
    box = LocalCluster(tmp_path / "box")
    localstore.credentials(box.state_dir / "s3")
    process = sleepers()
    write_state(box.state_dir, [record("spark-master", process.pid)])
    status = box.status()
    assert status["running"] and not status["stale"]
    assert status["master_url"] == "spark://127.0.0.1:17077"
    assert status["master_ui"] == "http://127.0.0.1:18080"
    assert status["worker_uis"] == ["http://127.0.0.1:18081"]
    assert status["s3_endpoint"] == "http://127.0.0.1:18333"
    assert status["access_key"].startswith("ORCH") and len(status["secret_key"]) >= 30
    assert status["hdfs_url"] == "hdfs://127.0.0.1:19000"
    assert status["pids"] == {"spark-master": process.pid}
    assert status["workers_alive"] == 0  # nothing answers on 18080


def test_a_dead_process_makes_the_state_stale_and_down_stops_the_rest(tmp_path, sleepers):
    box = LocalCluster(tmp_path / "box")
    dead, alive = sleepers(), sleepers()
    dead.kill()
    dead.wait()
    write_state(box.state_dir, [record("seaweedfs", dead.pid, "12345"), record("spark-master", alive.pid)])
    status = box.status()
    assert status["stale"] and not status["running"]
    with pytest.raises(OrchardError, match="crashed"):
        box.spark_conf()
    result = box.down()
    assert result["stopped"] == {"spark-master": alive.pid}
    assert alive.wait(timeout=10) is not None
    assert not (box.state_dir / STATE_FILE).exists()
    assert box.status()["pids"] == {}


def test_down_never_signals_a_reused_pid(tmp_path, sleepers):
    """A recorded pid now used by another process (different start time) is left alone."""
    box = LocalCluster(tmp_path / "box")
    stranger = sleepers()
    write_state(box.state_dir, [record("spark-master", stranger.pid, "not-its-start-time")])
    assert box.down()["stopped"] == {}
    time.sleep(0.2)
    assert stranger.poll() is None


def test_down_also_stops_what_a_recorded_process_started_in_its_group(tmp_path):
    box = LocalCluster(tmp_path / "box")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; "
         "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
         "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); "
         "print(c.pid, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    child_pid = int(parent.stdout.readline())
    try:
        write_state(box.state_dir, [record("spark-worker-0", parent.pid)])
        box.down(timeout=3)
        parent.wait(timeout=10)
        assert process_start_time(child_pid) is None
    finally:
        for pid in (parent.pid, child_pid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        parent.stdout.close()


def _no_real_services(monkeypatch, started):
    monkeypatch.setattr(localdeps, "weed_binary", lambda: Path("/bin/true"))
    monkeypatch.setattr(localdeps, "s3a_jars", lambda: [Path("/c/hadoop-aws-3.3.1.jar"),
                                                        Path("/c/aws-java-sdk-bundle-1.11.901.jar")])
    monkeypatch.setattr(localdeps, "hadoop_jars", lambda: [])
    monkeypatch.setattr(LocalCluster, "_start_all", lambda self, state, *a: started.append(state))
    monkeypatch.setattr(LocalCluster, "_wait_ready", lambda self, state, timeout: None)


def test_up_on_stale_state_cleans_up_and_starts_afresh(tmp_path, sleepers, monkeypatch):
    started = []
    _no_real_services(monkeypatch, started)
    box = LocalCluster(tmp_path / "box", default_ports=False)
    dead, survivor = sleepers(), sleepers()
    dead.kill()
    dead.wait()
    write_state(box.state_dir, [record("seaweedfs", dead.pid, "1"), record("spark-master", survivor.pid)])
    box.up(workers=3, cores=2, memory="1g", hdfs=False, s3=True)
    assert survivor.wait(timeout=10) is not None  # the crashed session's survivor was stopped
    assert len(started) == 1
    state = json.loads((box.state_dir / STATE_FILE).read_text())
    assert state["settings"] == {"workers": 3, "cores": 2, "memory": "1g", "hdfs": False, "s3": True}
    assert {f"spark_worker_ui_{i}" for i in range(3)} <= set(state["ports"])
    assert not any(name.startswith("namenode") for name in state["ports"])


def test_a_second_up_reports_the_running_box(tmp_path, sleepers, monkeypatch):
    started = []
    _no_real_services(monkeypatch, started)
    box = LocalCluster(tmp_path / "box")
    process = sleepers()
    write_state(box.state_dir, [record("spark-master", process.pid)])
    status = box.up(workers=4)
    assert started == [] and status["already_running"] and status["running"]
    assert "orchard local down" in status["note"]
    assert process.poll() is None


def test_up_checks_its_arguments(tmp_path):
    box = LocalCluster(tmp_path / "box")
    with pytest.raises(OrchardError, match="at least 1"):
        box.up(workers=0)
    with pytest.raises(OrchardError, match="512m or 2g"):
        box.up(memory="lots")


# -- push and pull ------------------------------------------------------------------------------
def test_parse_uri():
    assert transfer.parse_uri("s3://bucket/a/b/") == transfer.Location("s3", "bucket", "a/b")
    assert transfer.parse_uri("s3a://bucket") == transfer.Location("s3", "bucket", "")
    assert transfer.parse_uri("hdfs:///data/x") == transfer.Location("hdfs", "", "/data/x")
    assert transfer.parse_uri("hdfs://nn:9000/x").uri == "hdfs://nn:9000/x"
    for bad in ("/local/path", "gs://bucket/x", "s3:///nobucket"):
        with pytest.raises(OrchardError):
            transfer.parse_uri(bad)


def test_s3_etag_matches_single_and_multipart_uploads(tmp_path):
    import hashlib

    file = tmp_path / "f"
    file.write_bytes(b"a" * 10 + b"b" * 10 + b"c" * 5)
    assert transfer.s3_etag(file) == hashlib.md5(file.read_bytes()).hexdigest()
    parts = [hashlib.md5(b"a" * 10).digest(), hashlib.md5(b"b" * 10).digest(), hashlib.md5(b"c" * 5).digest()]
    assert transfer.s3_etag(file, part_size=10) == hashlib.md5(b"".join(parts)).hexdigest() + "-3"


@pytest.fixture
def fake_s3(monkeypatch):
    moto = pytest.importorskip("moto")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with moto.mock_aws():
        import boto3

        yield boto3.client("s3")


def _dataset(root: Path) -> Path:
    for split in ("Training", "Test"):
        for label in ("Apple Braeburn", "Kiwi"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}_100.jpg").write_bytes(f"{split}/{label}/{i}".encode() * 50)
    return root


def test_push_creates_the_bucket_copies_and_then_skips_identical_files(tmp_path, fake_s3):
    data = _dataset(tmp_path / "data")
    first = transfer.push(str(data), "s3://fruits/sample", jobs=4)
    assert (first["files"], first["copied"], first["skipped"]) == (12, 12, 0)
    keys = {o["Key"] for o in fake_s3.list_objects_v2(Bucket="fruits")["Contents"]}
    assert "sample/Training/Apple Braeburn/0_100.jpg" in keys and len(keys) == 12
    again = transfer.push(str(data), "s3://fruits/sample")
    assert (again["copied"], again["skipped"]) == (0, 12)
    (data / "Test" / "Kiwi" / "1_100.jpg").write_bytes(b"changed")
    changed = transfer.push(str(data), "s3://fruits/sample")
    assert (changed["copied"], changed["skipped"]) == (1, 11)


def test_pull_round_trips_and_skips_identical_files(tmp_path, fake_s3):
    data = _dataset(tmp_path / "data")
    transfer.push(str(data), "s3://fruits/sample")
    out = tmp_path / "out"
    first = transfer.pull("s3://fruits/sample", str(out))
    assert first["copied"] == 12
    for path in data.rglob("*.jpg"):
        assert (out / path.relative_to(data)).read_bytes() == path.read_bytes()
    assert transfer.pull("s3://fruits/sample", str(out))["skipped"] == 12
    assert not list(out.rglob("*.orchard-part"))
    with pytest.raises(OrchardError, match="nothing to pull"):
        transfer.pull("s3://fruits/absent", str(tmp_path / "none"))


def test_push_and_pull_need_the_box_for_the_local_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_STATE_DIR", str(tmp_path / "none"))
    data = _dataset(tmp_path / "data")
    with pytest.raises(OrchardError, match="orchard local up"):
        transfer.push(str(data), "s3://fruits/x", profile="local")
    with pytest.raises(OrchardError, match="orchard local up --hdfs"):
        transfer.pull("hdfs:///x", str(tmp_path / "out"), profile="local")
    with pytest.raises(OrchardError, match="profile `local` only"):
        transfer.push(str(data), "s3://fruits/x", profile="emr")


def test_push_command_reports_a_user_error(tmp_path, capsys):
    assert main(["push", str(tmp_path / "absent"), "s3://b/p"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "gs://b/p", "--jobs", "0"]) == 2


def test_storage_errors_become_one_line_user_errors(tmp_path, fake_s3):
    from botocore.exceptions import ClientError

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "HeadBucket")

    with pytest.raises(OrchardError, match=r"s3://x/y: .*Access Denied"):
        with transfer.storage_errors("s3://x/y"):
            denied()
    with pytest.raises(ValueError):
        with transfer.storage_errors("s3://x/y"):
            raise ValueError("not a storage error")
