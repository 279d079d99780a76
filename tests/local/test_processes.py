"""Ports and processes of the local cluster (orchard.local.processes)."""
from __future__ import annotations

import os
import socket
import sys

from orchard.local.processes import (
    Processes, choose_ports, log_tail, port_is_free, process_start_time,
)
from tests.local.boxes import record


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


def test_process_start_time_identifies_live_processes_only(sleepers):
    assert process_start_time(os.getpid())
    process = sleepers()
    started = process_start_time(process.pid)
    assert started and process_start_time(process.pid) == started
    process.kill()
    process.wait()
    assert process_start_time(process.pid) is None


def test_started_processes_are_recorded_alive_and_stopped(tmp_path):
    processes = Processes()
    command = [sys.executable, "-c", "import time; time.sleep(120)"]
    started = processes.start("sleeper", command, tmp_path / "logs" / "sleeper.log", tmp_path)
    assert started["name"] == "sleeper" and started["start_time"] == process_start_time(started["pid"])
    assert started["command"] == [sys.executable, "-c"] and processes.alive(started)
    assert not processes.alive({**started, "start_time": "another process's"})  # a reused pid
    assert processes.stop([started], timeout=10) == {"sleeper": started["pid"]}
    assert not processes.alive(started) and process_start_time(started["pid"]) is None
    assert "orchard local up: sleeper" in (tmp_path / "logs" / "sleeper.log").read_text()


def test_stop_leaves_records_of_dead_processes_alone(sleepers):
    process = sleepers()
    gone = record("gone", process.pid)
    process.kill()
    process.wait()
    assert Processes().stop([gone], timeout=1) == {}


def test_log_tail(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("\n".join(f"line {i}" for i in range(10)) + "\n")
    assert log_tail(log, lines=2) == "; last lines: line 8 | line 9"
    assert log_tail(tmp_path / "missing.log") == ""
