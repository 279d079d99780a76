"""Helpers for the local-cluster tests: a state.json that records stand-in processes (ports
17077, 18080, ... that nothing listens on; the `sleepers` fixture (tests/conftest.py) starts
them), the tests' download cache and the `orchard` command run as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

from orchard.local.cluster import LocalCluster
from orchard.local.processes import process_start_time
from orchard.local.state import STATE_FILE


def write_state(state_dir: Path, processes, settings=None) -> None:
    """A state.json of a box with S3 and HDFS (unless `settings` say otherwise) and these processes."""
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


def orchard(env: Dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the `orchard` command line as a user would, in its own process; assert it succeeds."""
    result = subprocess.run([sys.executable, "-m", "orchard", *args], env=env, cwd=str(REPO),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"orchard {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


@contextmanager
def running_box(state_dir: Path, model_file: Path, **up: Any) -> Iterator[Dict[str, Any]]:
    """A local cluster in `state_dir`, started with `LocalCluster.up(**up)` (own ports, the
    tests' download cache, the shared model), stopped (and checked for leftovers) when the block
    ends, even when a test fails. Yields {"cluster", "status", "env" (for `orchard`), "state_dir"}."""
    import pytest

    env = {**os.environ, "ORCHARD_STATE_DIR": str(state_dir), "ORCHARD_CACHE_DIR": str(download_cache()),
           "ORCHARD_MODEL_DIR": str(model_file.parent)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHARD_CACHE_DIR", env["ORCHARD_CACHE_DIR"])
        patch.setenv("ORCHARD_STATE_DIR", str(state_dir))
        cluster = LocalCluster(state_dir, default_ports=False)
        try:
            status = cluster.up(**up)
            yield {"cluster": cluster, "status": status, "env": env, "state_dir": state_dir}
        finally:
            cluster.down()
