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

from orchard.errors import OrchardError
from orchard.local import deps as localdeps, store as localstore
from orchard.local.cluster import LocalCluster
from orchard.local.processes import process_start_time
from orchard.local.state import STATE_FILE
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
    monkeypatch.setattr(localdeps, "s3a_jars", lambda: [Path("/c/hadoop-aws-3.3.4.jar"),
                                                        Path("/c/aws-java-sdk-bundle-1.12.262.jar")])
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
