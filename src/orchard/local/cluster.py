"""The cloud in a box: a real small cluster with real distributed storage on this machine.

`LocalCluster(state_dir).up(...)` starts, all bound to 127.0.0.1:

- a Spark standalone master and N workers, from the installed pyspark
  (`bin/spark-class org.apache.spark.deploy.master.Master` / `...deploy.worker.Worker`);
- SeaweedFS (`weed server` with master, volume, filer and S3 gateway; see orchard.local.store);
- with `hdfs=True`, an HDFS NameNode and DataNode (see orchard.local.hdfs).

Every process is recorded (pid, start time, log file) in `<state_dir>/state.json`; logs go to
`<state_dir>/logs/`. `down()` stops exactly those processes, by pid, and waits until they are
gone. A state file whose processes died (a crash, a reboot) is stale: `up` cleans it and starts
afresh, and `status` says so. What `up` needs from PyPI is downloaded once (orchard.local.deps).

The state directory is `$ORCHARD_STATE_DIR`, default `~/.local/state/orchard/local`.

This class orchestrates; the parts are orchard.local.processes (ports, starting, pid records,
stopping), orchard.local.state (the state file), orchard.local.standalone (Spark's master and
workers, the Spark settings of the box), orchard.local.store and orchard.local.hdfs.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.local import deps as localdeps, hdfs, standalone, store as localstore
from orchard.local.processes import HOST, ProcessRecord, Processes, choose_ports, log_tail, now
from orchard.local.state import StateFile, default_state_dir
from orchard.spark.session import check_java, java_executable

log = logging.getLogger(__name__)

MEMORY_PATTERN = re.compile(r"^[1-9][0-9]*[mMgG]$")
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 90.0

# Ports tried first (the usual ones of each service); a busy one is replaced by a free port.
PREFERRED_PORTS = {
    "spark_master": 7077, "spark_master_ui": 8080,
    "s3": 8333, "s3_grpc": 18333, "s3_master": 9333, "s3_master_grpc": 19333,
    "s3_volume": 8380, "s3_volume_grpc": 18380, "s3_filer": 8888, "s3_filer_grpc": 18888,
    "namenode": 9000, "namenode_ui": 9870, "datanode": 9866, "datanode_ui": 9864,
    "datanode_ipc": 9867,
}
WORKER_UI_PORT = 8081  # worker i: 8081 + i


def wanted_ports(workers: int, hdfs_on: bool, s3_on: bool) -> Dict[str, int]:
    """The preferred port of every service the box will run."""
    wanted = {k: v for k, v in PREFERRED_PORTS.items()
              if k.startswith("spark") or (s3_on and k.startswith("s3"))
              or (hdfs_on and (k.startswith("namenode") or k.startswith("datanode")))}
    wanted.update({f"spark_worker_ui_{i}": WORKER_UI_PORT + i for i in range(workers)})
    return wanted


class LocalCluster:
    """A Spark standalone cluster + SeaweedFS S3 (+ HDFS) on 127.0.0.1, recorded in a state dir.

    `up(workers=2, cores=1, memory="2g", hdfs=False, s3=True) -> status`, `status() -> dict`,
    `down()`. `default_ports=False` takes free ports for everything (for tests).
    """

    def __init__(self, state_dir: Optional[os.PathLike] = None, default_ports: bool = True):
        self.state_dir = Path(state_dir or default_state_dir()).expanduser().absolute()
        self.default_ports = default_ports
        self._state = StateFile(self.state_dir)
        self._processes = Processes()

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    # ------------------------------------------------------------ starting

    def _start(self, state: Dict[str, Any], name: str, command: List[str],
               env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> int:
        record = self._processes.start(name, command, self.log_dir / f"{name}.log", cwd or self.state_dir, env)
        state["processes"].append(record)
        self._state.save(state)
        return record["pid"]

    def up(self, workers: int = 2, cores: int = 1, memory: str = "2g", hdfs: bool = False,
           s3: bool = True, timeout: float = START_TIMEOUT_S) -> Dict[str, Any]:
        """Start the box (or report the one that runs); return its status. OrchardError on bad
        arguments, without Java, or when a service does not start (what started is stopped)."""
        if workers < 1 or cores < 1:
            raise OrchardError("--workers and --cores must be at least 1")
        if not MEMORY_PATTERN.match(memory):
            raise OrchardError(f"--memory must look like 512m or 2g, got {memory!r}")
        check_java()
        started = time.perf_counter()
        settings = {"workers": workers, "cores": cores, "memory": memory, "hdfs": hdfs, "s3": s3}
        with self._state.locked():
            running = self._running_or_clean(settings)
            if running is not None:
                return running
            # what it needs, from the cache or downloaded once, before anything starts
            weed = localdeps.weed_binary() if s3 else None
            s3a_jars = [str(p) for p in localdeps.s3a_jars()] if s3 else []
            hadoop_jars = localdeps.hadoop_jars() if hdfs else []
            ports = choose_ports(wanted_ports(workers, hdfs, s3), prefer=self.default_ports)
            state = {
                "version": 1, "started_at": now(), "state_dir": str(self.state_dir), "settings": settings,
                "ports": ports, "s3a_jars": s3a_jars, "python": sys.executable, "processes": [],
            }
            self._state.save(state)
            try:
                self._start_all(state, weed, hadoop_jars, java_executable() or "java")
                self._wait_ready(state, timeout)
            except BaseException:
                log.error("the local cluster did not start; stopping what was started (logs: %s)",
                          self.log_dir)
                self._processes.stop(state["processes"], STOP_TIMEOUT_S)
                localstore.remove_grpc_sockets(ports)
                self._state.remove()
                raise
            state["up_seconds"] = round(time.perf_counter() - started, 1)
            self._state.save(state)
        status = self.status()
        status["up_seconds"] = state["up_seconds"]
        return status

    def _running_or_clean(self, settings: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """The status of the box when all its processes run; else, after a crash, stop the
        survivors, clear the state and return None (the box can start afresh)."""
        state = self._state.load()
        if not state or not state.get("processes"):
            return None
        dead = [p for p in state["processes"] if not self._processes.alive(p)]
        if not dead:
            status = self.status()
            if settings != state["settings"]:
                status["note"] = (f"already running with {state['settings']}; run "
                                  "`orchard local down` first to change the settings")
            status["already_running"] = True
            return status
        log.warning("stale state in %s: %s died (a crash or reboot?); cleaning up",
                    self.state_dir, ", ".join(f"{p['name']} (pid {p['pid']})" for p in dead))
        self._processes.stop(state["processes"], STOP_TIMEOUT_S)
        localstore.remove_grpc_sockets(state.get("ports", {}))
        self._state.remove()
        return None

    def _start_all(self, state: Dict[str, Any], weed: Optional[Path], hadoop_jars: List[Path],
                   java: str) -> None:
        settings = state["settings"]
        if settings["s3"]:
            assert weed is not None
            self._start_store(state, weed)
        if settings["hdfs"]:
            self._start_hdfs(state, hadoop_jars, java)
        self._start_spark(state)

    def _start_store(self, state: Dict[str, Any], weed: Path) -> None:
        home = self.state_dir / "s3"
        localstore.credentials(home)
        localstore.remove_stale_sockets(home)
        self._start(state, "seaweedfs", localstore.weed_command(weed, home, state["ports"]), cwd=home,
                    env=localstore.weed_env(home))

    def _start_hdfs(self, state: Dict[str, Any], hadoop_jars: List[Path], java: str) -> None:
        home = self.state_dir / "hdfs"
        conf = hdfs.write_config(home, state["ports"])
        cp = hdfs.classpath(conf, hadoop_jars)
        if not hdfs.is_formatted(home):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / "hdfs-format.log", "ab") as out:
                result = subprocess.run(hdfs.format_command(java, cp), stdout=out,
                                        stderr=subprocess.STDOUT, cwd=str(home), timeout=120)
            if result.returncode != 0 or not hdfs.is_formatted(home):
                raise OrchardError(f"formatting HDFS failed: see {self.log_dir / 'hdfs-format.log'}")
        self._start(state, "hdfs-namenode", hdfs.namenode_command(java, cp), cwd=home)
        self._start(state, "hdfs-datanode", hdfs.datanode_command(java, cp), cwd=home)

    def _start_spark(self, state: Dict[str, Any]) -> None:
        ports, settings = state["ports"], state["settings"]
        env = standalone.spark_env(self.state_dir)
        launcher = standalone.spark_class()
        self._start(state, "spark-master", standalone.master_command(launcher, ports), env=env)
        # workers register at once when the master answers (else they back off for seconds)
        self._wait_for("the Spark master", lambda: standalone.master_json(ports) is not None,
                       state, START_TIMEOUT_S)
        for i in range(settings["workers"]):
            work_dir = self.state_dir / "work" / f"worker-{i}"
            work_dir.mkdir(parents=True, exist_ok=True)
            self._start(state, f"spark-worker-{i}", standalone.worker_command(
                launcher, ports, i, settings["cores"], settings["memory"], work_dir), env=env)

    def _wait_for(self, what: str, ready: Callable[[], bool], state: Dict[str, Any],
                  timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [p for p in state["processes"] if not self._processes.alive(p)]
            if dead:
                raise OrchardError(
                    f"{dead[0]['name']} exited while starting; its log: {dead[0]['log']}"
                    + log_tail(Path(dead[0]["log"])))
            if ready():
                log.debug("%s answers (%.1f s)", what, timeout - (deadline - time.monotonic()))
                return
            if time.monotonic() > deadline:
                raise OrchardError(f"{what} did not answer within {timeout:.0f} s; logs in {self.log_dir}")
            time.sleep(0.3)

    def _wait_ready(self, state: Dict[str, Any], timeout: float) -> None:
        ports, settings = state["ports"], state["settings"]
        if settings["s3"]:
            keys = localstore.credentials(self.state_dir / "s3")
            endpoint = f"http://{HOST}:{ports['s3']}"
            self._wait_for("SeaweedFS S3", lambda: localstore.is_ready(
                endpoint, keys["access_key"], keys["secret_key"], ports["s3_master"]), state, timeout)
        if settings["hdfs"]:
            self._wait_for("HDFS", lambda: hdfs.is_ready(ports["namenode_ui"]), state, timeout)
        self._wait_for(f"{settings['workers']} Spark workers",
                       lambda: standalone.alive_workers(ports) >= settings["workers"], state, timeout)

    # ------------------------------------------------------------ status

    def status(self) -> Dict[str, Any]:
        """Where everything is: URLs, keys, pids; `running` only when every process lives."""
        state = self._state.load()
        status: Dict[str, Any] = {
            "state_dir": str(self.state_dir), "running": False, "stale": False,
            "master_url": None, "master_ui": None, "worker_uis": [], "workers": 0,
            "workers_alive": 0, "s3_endpoint": None, "s3_ui": None, "access_key": None,
            "secret_key": None, "hdfs_url": None, "hdfs_ui": None, "pids": {},
            "logs": str(self.log_dir),
        }
        if not state or not state.get("processes"):
            return status
        ports, settings = state["ports"], state["settings"]
        processes = [{"name": p["name"], "pid": p["pid"], "alive": self._processes.alive(p)}
                     for p in state["processes"]]
        status.update({
            "running": all(p["alive"] for p in processes),
            "stale": not all(p["alive"] for p in processes),
            "started_at": state.get("started_at"),
            "settings": settings,
            "master_url": standalone.master_url(ports),
            "master_ui": f"http://{HOST}:{ports['spark_master_ui']}",
            "worker_uis": [f"http://{HOST}:{ports[f'spark_worker_ui_{i}']}"
                           for i in range(settings["workers"])],
            "workers": settings["workers"],
            "workers_alive": standalone.alive_workers(ports),
            "pids": {p["name"]: p["pid"] for p in processes},
            "processes": processes,
        })
        if settings["s3"]:
            status.update({
                "s3_endpoint": f"http://{HOST}:{ports['s3']}",
                "s3_ui": f"http://{HOST}:{ports['s3_filer']}",
                "s3_master_ui": f"http://{HOST}:{ports['s3_master']}",
                **localstore.credentials(self.state_dir / "s3"),
                "s3a_jars": state.get("s3a_jars", []),
            })
        if settings["hdfs"]:
            status.update({
                "hdfs_url": f"hdfs://{HOST}:{ports['namenode']}",
                "hdfs_ui": f"http://{HOST}:{ports['namenode_ui']}/jmx",
            })
        return status

    def spark_conf(self) -> Dict[str, str]:
        """Spark settings that send a run to this box (the `local` profile); OrchardError when
        it is not up or crashed."""
        status = self.status()
        if status["stale"]:
            raise OrchardError(f"the local cluster in {self.state_dir} crashed (some processes are "
                               "gone): run `orchard local up` to restart it")
        if not status["running"]:
            raise OrchardError(f"the local cluster is not up (state dir {self.state_dir}): "
                               "run `orchard local up` first")
        return standalone.profile_conf(status)

    # ------------------------------------------------------------ stopping

    def down(self, timeout: float = STOP_TIMEOUT_S, purge: bool = False) -> Dict[str, Any]:
        """Stop every process `up` started, by pid, and wait until they are gone."""
        started = time.perf_counter()
        with self._state.locked():
            state = self._state.load()
            records: List[ProcessRecord] = state.get("processes", []) if state else []
            stopped = self._processes.stop(records, timeout)
            if state and not any(self._processes.alive(r) for r in records):
                localstore.remove_grpc_sockets(state.get("ports", {}))
            self._state.remove()
            if purge:
                for folder in ("s3", "hdfs", "work", "logs", "spark-conf"):
                    shutil.rmtree(self.state_dir / folder, ignore_errors=True)
        return {"stopped": stopped, "seconds": round(time.perf_counter() - started, 1),
                "purged": purge, "state_dir": str(self.state_dir)}
