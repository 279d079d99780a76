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
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from orchard.errors import OrchardError
from orchard.local import deps as localdeps, hdfs, store as localstore

log = logging.getLogger(__name__)

STATE_DIR_ENV = "ORCHARD_STATE_DIR"
STATE_FILE = "state.json"
HOST = "127.0.0.1"
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


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".local" / "state" / "orchard" / "local")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- ports


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:port (servers set SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(taken: set) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port
    raise OrchardError("could not find a free port on 127.0.0.1")


def choose_ports(wanted: Dict[str, int], prefer: bool = True,
                 is_free: Callable[[int], bool] = port_is_free) -> Dict[str, int]:
    """A distinct free port for each name: the preferred one when free, else any free one."""
    chosen: Dict[str, int] = {}
    for name, preferred in wanted.items():
        taken = set(chosen.values())
        if prefer and preferred not in taken and is_free(preferred):
            chosen[name] = preferred
        else:
            chosen[name] = free_port(taken)
    return chosen


# ---------------------------------------------------------------- processes


def process_start_time(pid: int) -> Optional[str]:
    """An id of the process `pid` that changes if the pid is reused (its start time), or None
    when no such process runs (zombies count as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] in ("Z", "X") else fields[19]
    try:
        result = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = result.stdout.strip()
    if result.returncode != 0 or not text or text.startswith("Z"):
        return None
    return text.split(None, 1)[1] if " " in text else text


def group_members(pgid: int) -> List[int]:
    """Pids in process group `pgid` (the children a recorded process started, e.g. executors)."""
    members: List[int] = []
    if Path("/proc/self/stat").exists():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
        return members
    try:
        result = subprocess.run(["ps", "-A", "-o", "pid=,pgid="], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return members
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == str(pgid):
            members.append(int(parts[0]))
    return members


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# ---------------------------------------------------------------- the box


class LocalCluster:
    """A Spark standalone cluster + SeaweedFS S3 (+ HDFS) on 127.0.0.1, recorded in a state dir.

    `up(workers=2, cores=1, memory="2g", hdfs=False, s3=True) -> status`, `status() -> dict`,
    `down()`. `default_ports=False` takes free ports for everything (for tests).
    """

    def __init__(self, state_dir: Optional[os.PathLike] = None, default_ports: bool = True):
        self.state_dir = Path(state_dir or default_state_dir()).expanduser().absolute()
        self.default_ports = default_ports
        self._children: Dict[int, subprocess.Popen] = {}

    # ------------------------------------------------------------ state

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def _load(self) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("ignoring the unreadable state file %s", self.state_file)
            return None

    def _save(self, state: Dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state directory."""
        import fcntl

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _alive(self, record: Dict[str, Any]) -> bool:
        pid = int(record["pid"])
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return False
        start_time = record.get("start_time")
        return start_time is not None and process_start_time(pid) == start_time

    # ------------------------------------------------------------ starting

    def _start(self, state: Dict[str, Any], name: str, command: List[str],
               env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{name}.log"
        with open(log_file, "ab") as out:
            out.write(f"\n===== orchard local up: {name} at {_now()}\n".encode())
            out.flush()
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(cwd or self.state_dir), env=env, start_new_session=True,
            )
        self._children[process.pid] = process
        start_time = None
        for _ in range(50):
            start_time = process_start_time(process.pid)
            if start_time or process.poll() is not None:
                break
            time.sleep(0.01)
        state["processes"].append({"name": name, "pid": process.pid, "start_time": start_time,
                                   "log": str(log_file), "command": command[:2]})
        self._save(state)
        log.debug("started %s (pid %d): %s", name, process.pid, " ".join(command))
        return process.pid

    def _spark_env(self) -> Dict[str, str]:
        import pyspark

        env = dict(os.environ)
        conf_dir = self.state_dir / "spark-conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        env.update({
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_CONF_DIR": str(conf_dir),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_DAEMON_MEMORY": "512m",
            "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON") or sys.executable,
            # stopped applications' folders (their copies of spark.jars) go after an hour
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true "
                                 "-Dspark.worker.cleanup.interval=600 "
                                 "-Dspark.worker.cleanup.appDataTtl=3600",
        })
        for variable in ("SPARK_MASTER_HOST", "SPARK_MASTER_PORT", "SPARK_WORKER_INSTANCES"):
            env.pop(variable, None)
        return env

    @staticmethod
    def _spark_class() -> str:
        import pyspark

        script = Path(pyspark.__file__).parent / "bin" / "spark-class"
        if not script.is_file():
            raise OrchardError(f"{script} not found: the installed pyspark lacks its launcher")
        return str(script)

    def up(self, workers: int = 2, cores: int = 1, memory: str = "2g", hdfs: bool = False,
           s3: bool = True, timeout: float = START_TIMEOUT_S) -> Dict[str, Any]:
        """Start the box (or report the one that runs); return its status."""
        if workers < 1 or cores < 1:
            raise OrchardError("--workers and --cores must be at least 1")
        if not MEMORY_PATTERN.match(memory):
            raise OrchardError(f"--memory must look like 512m or 2g, got {memory!r}")
        from orchard.spark.session import check_java, java_executable

        check_java()
        started = time.perf_counter()
        with self._locked():
            state = self._load()
            if state and state.get("processes"):
                dead = [p for p in state["processes"] if not self._alive(p)]
                if not dead:
                    status = self.status()
                    asked = {"workers": workers, "cores": cores, "memory": memory, "hdfs": hdfs, "s3": s3}
                    if asked != state["settings"]:
                        status["note"] = (f"already running with {state['settings']}; run "
                                          "`orchard local down` first to change the settings")
                    status["already_running"] = True
                    return status
                log.warning("stale state in %s: %s died (a crash or reboot?); cleaning up",
                            self.state_dir, ", ".join(f"{p['name']} (pid {p['pid']})" for p in dead))
                self._stop(state["processes"], STOP_TIMEOUT_S)
                localstore.remove_grpc_sockets(state.get("ports", {}))
                self.state_file.unlink()
            # what it needs, from the cache or downloaded once, before anything starts
            weed = localdeps.weed_binary() if s3 else None
            s3a_jars = [str(p) for p in localdeps.s3a_jars()] if s3 else []
            hadoop_jars = localdeps.hadoop_jars() if hdfs else []

            wanted = {k: v for k, v in PREFERRED_PORTS.items()
                      if k.startswith("spark") or (s3 and k.startswith("s3"))
                      or (hdfs and (k.startswith("namenode") or k.startswith("datanode")))}
            wanted.update({f"spark_worker_ui_{i}": WORKER_UI_PORT + i for i in range(workers)})
            ports = choose_ports(wanted, prefer=self.default_ports)
            state = {
                "version": 1, "started_at": _now(), "state_dir": str(self.state_dir),
                "settings": {"workers": workers, "cores": cores, "memory": memory, "hdfs": hdfs, "s3": s3},
                "ports": ports, "s3a_jars": s3a_jars, "python": sys.executable, "processes": [],
            }
            self._save(state)
            try:
                self._start_all(state, weed, hadoop_jars, java_executable() or "java")
                self._wait_ready(state, timeout)
            except BaseException:
                log.error("the local cluster did not start; stopping what was started (logs: %s)",
                          self.log_dir)
                self._stop(state["processes"], STOP_TIMEOUT_S)
                localstore.remove_grpc_sockets(ports)
                with contextlib.suppress(FileNotFoundError):
                    self.state_file.unlink()
                raise
            state["up_seconds"] = round(time.perf_counter() - started, 1)
            self._save(state)
        status = self.status()
        status["up_seconds"] = state["up_seconds"]
        return status

    def _start_all(self, state: Dict[str, Any], weed: Optional[Path], hadoop_jars: List[Path],
                   java: str) -> None:
        ports, settings = state["ports"], state["settings"]
        if settings["s3"]:
            home = self.state_dir / "s3"
            localstore.credentials(home)
            localstore.remove_stale_sockets(home)
            assert weed is not None
            self._start(state, "seaweedfs", localstore.weed_command(weed, home, ports), cwd=home,
                        env=localstore.weed_env(home))
        if settings["hdfs"]:
            home = self.state_dir / "hdfs"
            conf = hdfs.write_config(home, ports)
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
        env = self._spark_env()
        spark_class = self._spark_class()
        self._start(state, "spark-master", [
            spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
            "--port", str(ports["spark_master"]), "--webui-port", str(ports["spark_master_ui"]),
        ], env=env)
        # workers register at once when the master answers (else they back off for seconds)
        self._wait_for("the Spark master", lambda: self._master_json(ports) is not None,
                       state, START_TIMEOUT_S)
        for i in range(settings["workers"]):
            work_dir = self.state_dir / "work" / f"worker-{i}"
            work_dir.mkdir(parents=True, exist_ok=True)
            self._start(state, f"spark-worker-{i}", [
                spark_class, "org.apache.spark.deploy.worker.Worker",
                f"spark://{HOST}:{ports['spark_master']}", "--host", HOST,
                "--webui-port", str(ports[f"spark_worker_ui_{i}"]),
                "--cores", str(settings["cores"]), "--memory", settings["memory"],
                "--work-dir", str(work_dir),
            ], env=env)

    def _wait_for(self, what: str, ready: Callable[[], bool], state: Dict[str, Any],
                  timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [p for p in state["processes"] if not self._alive(p)]
            if dead:
                raise OrchardError(
                    f"{dead[0]['name']} exited while starting; its log: {dead[0]['log']}"
                    + _log_tail(Path(dead[0]["log"])))
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
                       lambda: self._alive_workers(ports) >= settings["workers"], state, timeout)

    # ------------------------------------------------------------ status

    @staticmethod
    def _master_json(ports: Dict[str, int]) -> Optional[Dict[str, Any]]:
        url = f"http://{HOST}:{ports['spark_master_ui']}/json/"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def _alive_workers(self, ports: Dict[str, int]) -> int:
        master = self._master_json(ports)
        if not master:
            return 0
        return sum(1 for w in master.get("workers", []) if w.get("state") == "ALIVE")

    def status(self) -> Dict[str, Any]:
        """Where everything is: URLs, keys, pids; `running` only when every process lives."""
        state = self._load()
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
        processes = [{"name": p["name"], "pid": p["pid"], "alive": self._alive(p)}
                     for p in state["processes"]]
        status.update({
            "running": all(p["alive"] for p in processes),
            "stale": not all(p["alive"] for p in processes),
            "started_at": state.get("started_at"),
            "settings": settings,
            "master_url": f"spark://{HOST}:{ports['spark_master']}",
            "master_ui": f"http://{HOST}:{ports['spark_master_ui']}",
            "worker_uis": [f"http://{HOST}:{ports[f'spark_worker_ui_{i}']}"
                           for i in range(settings["workers"])],
            "workers": settings["workers"],
            "workers_alive": self._alive_workers(ports),
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
        """Spark settings that send a run to this box (the `local` profile)."""
        status = self.status()
        if status["stale"]:
            raise OrchardError(f"the local cluster in {self.state_dir} crashed (some processes are "
                               "gone): run `orchard local up` to restart it")
        if not status["running"]:
            raise OrchardError(f"the local cluster is not up (state dir {self.state_dir}): "
                               "run `orchard local up` first")
        return profile_conf(status)

    # ------------------------------------------------------------ stopping

    def down(self, timeout: float = STOP_TIMEOUT_S, purge: bool = False) -> Dict[str, Any]:
        """Stop every process `up` started, by pid, and wait until they are gone."""
        started = time.perf_counter()
        with self._locked():
            state = self._load()
            records = state.get("processes", []) if state else []
            stopped = self._stop(records, timeout)
            if state and not any(self._alive(r) for r in records):
                localstore.remove_grpc_sockets(state.get("ports", {}))
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            if purge:
                for folder in ("s3", "hdfs", "work", "logs", "spark-conf"):
                    shutil.rmtree(self.state_dir / folder, ignore_errors=True)
        return {"stopped": stopped, "seconds": round(time.perf_counter() - started, 1),
                "purged": purge, "state_dir": str(self.state_dir)}

    def _stop(self, records: List[Dict[str, Any]], timeout: float) -> Dict[str, int]:
        """SIGTERM each recorded live process (and, after it, what it left in its process
        group), wait until all are gone; SIGKILL what is left at the timeout."""
        live = [r for r in records if self._alive(r)]
        members: Dict[int, Optional[str]] = {}
        for record in live:  # children such as executors: in the group of the recorded process
            for pid in group_members(int(record["pid"])):
                if pid != int(record["pid"]):
                    members[pid] = process_start_time(pid)
        for record in reversed(live):
            log.info("stopping %s (pid %d)", record["name"], record["pid"])
            _signal(int(record["pid"]), signal.SIGTERM)

        def leftovers() -> List[int]:
            pids = [int(r["pid"]) for r in live if self._alive(r)]
            pids += [pid for pid, start in members.items() if start and process_start_time(pid) == start]
            return pids

        deadline = time.monotonic() + timeout
        terminated_members = False
        while leftovers() and time.monotonic() < deadline:
            if not terminated_members and not any(self._alive(r) for r in live):
                for pid in leftovers():
                    _signal(pid, signal.SIGTERM)
                terminated_members = True
            time.sleep(0.2)
        for pid in leftovers():
            log.warning("pid %d did not stop within %.0f s: killing it", pid, timeout)
            _signal(pid, signal.SIGKILL)
        while leftovers() and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        for record in live:
            child = self._children.pop(int(record["pid"]), None)
            if child is not None:
                with contextlib.suppress(Exception):
                    child.wait(timeout=5)
        return {r["name"]: int(r["pid"]) for r in live}


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return "; last lines: " + " | ".join(line.strip() for line in tail) if tail else ""


def profile_conf(status: Dict[str, Any]) -> Dict[str, str]:
    """Spark settings for a box with this status: its master, S3 (s3a) and HDFS."""
    settings = status.get("settings", {})
    conf = {
        "spark.master": status["master_url"],
        "spark.executor.cores": str(settings.get("cores", 1)),
    }
    memory = str(settings.get("memory", "2g"))
    megabytes = int(memory[:-1]) * (1024 if memory[-1].lower() == "g" else 1)
    conf["spark.executor.memory"] = f"{min(megabytes, 1024)}m"
    if status.get("s3_endpoint"):
        conf.update({
            "spark.jars": ",".join(status["s3a_jars"]),
            "spark.hadoop.fs.s3a.endpoint": status["s3_endpoint"],
            "spark.hadoop.fs.s3a.endpoint.region": localstore.REGION,
            "spark.hadoop.fs.s3a.access.key": status["access_key"],
            "spark.hadoop.fs.s3a.secret.key": status["secret_key"],
            "spark.hadoop.fs.s3a.aws.credentials.provider":
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        })
    if status.get("hdfs_url"):
        conf.update({
            "spark.hadoop.fs.defaultFS": status["hdfs_url"],
            "spark.hadoop.dfs.replication": "1",
        })
    return conf
