"""The local cluster's parts, fast: ports, process records, stale state, profile settings,
configuration files, the download cache, and push/pull (against moto's in-process S3).

The real box (Spark + SeaweedFS + HDFS) is started in test_cluster_integration.py.
"""
from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from orchard.cli import main
from orchard.errors import OrchardError
from orchard.local import deps as localdeps, hdfs, store as localstore
from orchard.local.cluster import LocalCluster
from orchard.local.processes import choose_ports, free_port, port_is_free, process_start_time
from orchard.local.standalone import profile_conf
from orchard.storage import sync as transfer


# -- ports ------------------------------------------------------------------------------------
def test_choose_ports_prefers_the_usual_ports_and_replaces_busy_ones():
    busy = {7077}
    ports = choose_ports({"spark_master": 7077, "spark_master_ui": 8080, "s3": 8333},
                         is_free=lambda port: port not in busy)
    assert ports["spark_master_ui"] == 8080 and ports["s3"] == 8333
    assert ports["spark_master"] not in (7077, 8080, 8333)
    assert len(set(ports.values())) == 3


def test_choose_ports_without_preference_takes_distinct_free_ports():
    ports = choose_ports({f"p{i}": 8080 for i in range(6)}, prefer=False)
    assert len(set(ports.values())) == 6
    assert all(port_is_free(port) for port in ports.values())


def test_a_listening_port_is_not_free():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_is_free(server.getsockname()[1])


# -- processes and state ------------------------------------------------------------------------
def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            start_new_session=True)


@pytest.fixture
def sleepers():
    started = []

    def start():
        process = _sleeper()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def _write_state(state_dir: Path, processes, settings=None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "version": 1, "started_at": "2026-01-01T00:00:00+00:00",
        "settings": settings or {"workers": 1, "cores": 1, "memory": "1g", "hdfs": True, "s3": True},
        "ports": {"spark_master": 17077, "spark_master_ui": 18080, "spark_worker_ui_0": 18081,
                  "s3": 18333, "s3_filer": 18888, "s3_master": 19333, "namenode": 19000,
                  "namenode_ui": 19870},
        "s3a_jars": ["/cache/hadoop-aws-3.3.1.jar", "/cache/aws-java-sdk-bundle-1.11.901.jar"],
        "processes": processes,
    }
    (state_dir / "state.json").write_text(json.dumps(state))


def _record(name, pid, start_time="auto"):
    return {"name": name, "pid": pid, "log": f"/logs/{name}.log",
            "start_time": process_start_time(pid) if start_time == "auto" else start_time}


def test_process_start_time_identifies_live_processes_only(sleepers):
    assert process_start_time(os.getpid())
    process = sleepers()
    started = process_start_time(process.pid)
    assert started and process_start_time(process.pid) == started
    process.kill()
    process.wait()
    assert process_start_time(process.pid) is None


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
    _write_state(box.state_dir, [_record("spark-master", process.pid)])
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
    _write_state(box.state_dir, [_record("seaweedfs", dead.pid, "12345"), _record("spark-master", alive.pid)])
    status = box.status()
    assert status["stale"] and not status["running"]
    with pytest.raises(OrchardError, match="crashed"):
        box.spark_conf()
    result = box.down()
    assert result["stopped"] == {"spark-master": alive.pid}
    assert alive.wait(timeout=10) is not None
    assert not (box.state_dir / "state.json").exists()
    assert box.status()["pids"] == {}


def test_down_never_signals_a_reused_pid(tmp_path, sleepers):
    """A recorded pid now used by another process (different start time) is left alone."""
    box = LocalCluster(tmp_path / "box")
    stranger = sleepers()
    _write_state(box.state_dir, [_record("spark-master", stranger.pid, "not-its-start-time")])
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
        _write_state(box.state_dir, [_record("spark-worker-0", parent.pid)])
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
    _write_state(box.state_dir, [_record("seaweedfs", dead.pid, "1"), _record("spark-master", survivor.pid)])
    box.up(workers=3, cores=2, memory="1g", hdfs=False, s3=True)
    assert survivor.wait(timeout=10) is not None  # the crashed session's survivor was stopped
    assert len(started) == 1
    state = json.loads((box.state_dir / "state.json").read_text())
    assert state["settings"] == {"workers": 3, "cores": 2, "memory": "1g", "hdfs": False, "s3": True}
    assert {f"spark_worker_ui_{i}" for i in range(3)} <= set(state["ports"])
    assert not any(name.startswith("namenode") for name in state["ports"])


def test_a_second_up_reports_the_running_box(tmp_path, sleepers, monkeypatch):
    started = []
    _no_real_services(monkeypatch, started)
    box = LocalCluster(tmp_path / "box")
    process = sleepers()
    _write_state(box.state_dir, [_record("spark-master", process.pid)])
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


# -- the local profile ---------------------------------------------------------------------------
def _status(hdfs_url="hdfs://127.0.0.1:9000"):
    return {
        "master_url": "spark://127.0.0.1:7077", "settings": {"cores": 1, "memory": "2g"},
        "s3_endpoint": "http://127.0.0.1:8333", "access_key": "AK", "secret_key": "SK",
        "s3a_jars": ["/c/hadoop-aws-3.3.1.jar", "/c/aws-java-sdk-bundle-1.11.901.jar"],
        "hdfs_url": hdfs_url,
    }


def test_profile_conf_points_spark_at_the_box():
    conf = profile_conf(_status())
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    assert conf["spark.jars"] == "/c/hadoop-aws-3.3.1.jar,/c/aws-java-sdk-bundle-1.11.901.jar"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AK"
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "SK"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert conf["spark.hadoop.fs.defaultFS"] == "hdfs://127.0.0.1:9000"
    assert conf["spark.hadoop.dfs.replication"] == "1"
    assert conf["spark.executor.memory"] == "1024m"
    assert "spark.hadoop.fs.defaultFS" not in profile_conf(_status(hdfs_url=None))


def test_the_local_profile_says_how_to_start_the_box(tmp_path, monkeypatch):
    from orchard.local.profiles import profile_spark_conf

    monkeypatch.setenv("ORCHARD_STATE_DIR", str(tmp_path / "none"))
    with pytest.raises(OrchardError, match="orchard local up"):
        profile_spark_conf("local")


# -- configuration files ---------------------------------------------------------------------------
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


def test_hdfs_config_for_java17_and_one_datanode(tmp_path):
    ports = {"namenode": 19000, "namenode_ui": 19870, "datanode": 19866, "datanode_ui": 19864,
             "datanode_ipc": 19867}
    conf = hdfs.write_config(tmp_path, ports)
    for name in ("hdfs", "datanode", "secondary", "journal", "static"):
        assert (conf / "webapps" / name / "WEB-INF" / "web.xml").is_file()
    site = (conf / "hdfs-site.xml").read_text()
    assert "<name>dfs.replication</name><value>1</value>" in site
    assert "<name>dfs.webhdfs.enabled</name><value>false</value>" in site
    assert "127.0.0.1:19866" in site
    assert "hdfs://127.0.0.1:19000" in (conf / "core-site.xml").read_text()
    assert not hdfs.is_formatted(tmp_path)
    assert hdfs.namenode_state(free_port(set())) is None


# -- the download cache ----------------------------------------------------------------------------
def _sdist(path: Path, files) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_jars_are_extracted_once_then_served_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    downloads = []

    def fake_download(requirement, into):
        downloads.append(requirement)
        return _sdist(into / "sagemaker_pyspark-1.4.5.tar.gz", {
            "sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar": b"aws",
            "sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar": b"bundle",
            "sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-s3-1.12.262.jar": b"not wanted",
        })

    monkeypatch.setattr(localdeps, "_download_sdist", fake_download)
    jars = localdeps.s3a_jars()
    assert [j.name for j in jars] == list(localdeps.S3A_JARS)
    assert jars[0].read_bytes() == b"aws"
    assert sorted(p.name for p in jars[0].parent.iterdir()) == sorted([*localdeps.S3A_JARS, ".complete"])
    assert localdeps.s3a_jars() == jars and downloads == ["sagemaker-pyspark==1.4.5"]
    assert not list((tmp_path / "cache" / "local-cluster").glob("download-*"))  # archive deleted


def test_a_failed_download_says_what_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that "
                                           "satisfies the requirement pyspark==2.4.8\n")

    monkeypatch.setattr(localdeps.subprocess, "run", no_network)
    with pytest.raises(OrchardError, match=r"could not download .*PyPI.*satisfies"):
        localdeps.hadoop_jars()


def test_missing_members_are_reported(tmp_path):
    archive = _sdist(tmp_path / "x.tar.gz", {"x/deps/jars/a.jar": b"a"})
    with pytest.raises(OrchardError, match="lacks b.jar"):
        localdeps._extract_members(archive, "deps/jars", ["a.jar", "b.jar"], tmp_path / "out")


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


# -- the commands ---------------------------------------------------------------------------------
def test_local_status_command_when_nothing_runs(tmp_path, capsys):
    assert main(["local", "status", "--state-dir", str(tmp_path / "box")]) == 0
    assert "not running" in capsys.readouterr().out
    assert main(["local", "status", "--json", "--state-dir", str(tmp_path / "box")]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert main(["local", "down", "--state-dir", str(tmp_path / "box")]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_local_status_command_shows_urls_keys_and_pids(tmp_path, sleepers, capsys):
    box = LocalCluster(tmp_path / "box")
    keys = localstore.credentials(box.state_dir / "s3")
    process = sleepers()
    _write_state(box.state_dir, [_record("spark-master", process.pid)])
    assert main(["local", "status", "--state-dir", str(box.state_dir)]) == 0
    out = capsys.readouterr().out
    for text in ("spark://127.0.0.1:17077", "http://127.0.0.1:18080", "0 of 1", keys["secret_key"],
                 "hdfs://127.0.0.1:19000", f"spark-master={process.pid}"):
        assert text in out


def test_push_command_reports_a_user_error(tmp_path, capsys):
    assert main(["push", str(tmp_path / "absent"), "s3://b/p"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "gs://b/p", "--jobs", "0"]) == 2


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
