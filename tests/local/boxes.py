"""Helpers for the local-cluster tests: a state.json that records stand-in processes (ports
17077, 18080, ... that nothing listens on; the `sleepers` fixture (tests/conftest.py) starts
them), the tests' download cache, the `orchard` command run as a user would, and the real local
cluster the cluster tests share (started once a session: tests/local/conftest.py)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

from orchard.local.cluster import LocalCluster
from orchard.local.processes import group_members, process_start_time
from orchard.local.state import STATE_FILE
from tests.fixtures.processes import run_captured


def write_state(state_dir: Path, processes, settings=None) -> None:
    """A state.json of a box with S3 and HDFS (unless `settings` say otherwise) and these processes."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "version": 1, "started_at": "2026-01-01T00:00:00+00:00",
        "settings": settings or {"workers": 1, "cores": 1, "memory": "1g", "hdfs": True, "s3": True},
        "ports": {"spark_master": 17077, "spark_master_ui": 18080, "spark_worker_ui_0": 18081,
                  "s3": 18333, "s3_filer": 18888, "s3_master": 19333, "namenode": 19000,
                  "namenode_ui": 19870},
        "s3a_jars": ["/cache/hadoop-aws-3.3.4.jar", "/cache/aws-java-sdk-bundle-1.12.262.jar"],
        "processes": processes,
    }
    (state_dir / STATE_FILE).write_text(json.dumps(state))


def record(name, pid, start_time="auto"):
    """The state file's record of process `pid` (its real start time unless given)."""
    return {"name": name, "pid": pid, "log": f"/logs/{name}.log",
            "start_time": process_start_time(pid) if start_time == "auto" else start_time}


REPO = Path(__file__).resolve().parents[2]


def download_cache() -> Path:
    """Where the cluster tests keep their downloads (Spark's S3 jars, SeaweedFS, Hadoop's HDFS
    jars): $ORCHARD_TEST_CACHE_DIR, default ~/.cache/orchard-tests (kept between runs)."""
    return Path(os.environ.get("ORCHARD_TEST_CACHE_DIR") or Path.home() / ".cache" / "orchard-tests")


def orchard(env: Dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the `orchard` command line as a user would, in its own process; assert it succeeds."""
    result = run_captured([sys.executable, "-m", "orchard", *args], env=env, cwd=REPO, timeout=timeout)
    assert result.returncode == 0, f"orchard {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


# The one local cluster of a test session (tests/local/conftest.py's `local_box`), shared by the
# cluster modules: each keeps to its own S3 bucket and HDFS folder.
BOX_SETTINGS: Dict[str, Any] = {"workers": 2, "cores": 1, "memory": "1g", "hdfs": True, "s3": True}


@contextmanager
def box_environment(box: Dict[str, Any]) -> Iterator[None]:
    """The box's ORCHARD_CACHE_DIR and ORCHARD_STATE_DIR in this process's environment while the
    block runs (what `--profile local` in-process, e.g. `profile_spark_conf("local")`, reads)."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHARD_CACHE_DIR", box["env"]["ORCHARD_CACHE_DIR"])
        patch.setenv("ORCHARD_STATE_DIR", str(box["state_dir"]))
        yield


@contextmanager
def running_box(state_dir: Path, model_file: Path, **up: Any) -> Iterator[Dict[str, Any]]:
    """A local cluster in `state_dir`, started with `LocalCluster.up(**up)` (own ports, the
    tests' download cache, the shared model), stopped when the block ends, even when a test
    fails. Yields {"cluster", "status", "env" (for `orchard`), "state_dir"}. The process's own
    environment points at the box only while it starts and stops (`box_environment` for more)."""
    env = {**os.environ, "ORCHARD_STATE_DIR": str(state_dir), "ORCHARD_CACHE_DIR": str(download_cache()),
           "ORCHARD_MODEL_DIR": str(model_file.parent)}
    cluster = LocalCluster(state_dir, default_ports=False)
    box: Dict[str, Any] = {"cluster": cluster, "env": env, "state_dir": state_dir}
    try:
        with box_environment(box):
            box["status"] = cluster.up(**up)
        yield box
    finally:
        with box_environment(box):
            cluster.down()


@contextmanager
def using_box(box: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """A test module's view of the shared box: its own copies of `env` and `status` (a module may
    change them), and this process's environment pointing at the box while the module runs."""
    if not box["cluster"].status()["running"]:
        raise RuntimeError(f"the shared local cluster in {box['state_dir']} is not running (stopped or "
                           "crashed before this module: see tests/local/conftest.py)")
    with box_environment(box):
        yield {**box, "env": dict(box["env"]), "status": copy.deepcopy(box["status"])}


def processes_using(folder: Path) -> List[str]:
    """Live processes whose working directory or command line is inside `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if process_start_time(int(entry.name)) and (cwd.startswith(str(folder)) or str(folder) in cmdline):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def down_stops_everything_it_started(box: Dict[str, Any]) -> None:
    """`down` on the box: it stops every process `up` recorded, their children (executors, ...)
    are gone too, no process is left in the state dir, and the box reports itself stopped, in
    the library and to `orchard local status`. Run by the last cluster test and again by the
    session's teardown of `local_box` (then on a box already stopped, if that test ran)."""
    cluster, state_dir = box["cluster"], box["state_dir"]
    pids = dict(cluster.status()["pids"])
    children = [pid for leader in pids.values() for pid in group_members(leader)]
    result = cluster.down()
    assert result["stopped"] == pids
    assert all(process_start_time(pid) is None for pid in [*pids.values(), *children])
    if Path("/proc/self/cwd").exists():
        assert processes_using(state_dir) == []
    assert cluster.status()["pids"] == {}
    assert json.loads(orchard(box["env"], "local", "status", "--json").stdout)["running"] is False
