"""Spark standalone on 127.0.0.1 from the installed pyspark: the master's and workers' commands
and environment, what the master says about its workers, and the Spark settings that send an
application to the local cluster (its master, SeaweedFS S3 through s3a, HDFS)."""
from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.local import store as localstore
from orchard.local.processes import HOST

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_env(state_dir: Path) -> Dict[str, str]:
    """The environment of the master and workers: this pyspark's home, a conf folder of their
    own under `state_dir`, loopback, small daemons, cleanup of stopped applications' folders."""
    import pyspark

    env = dict(os.environ)
    conf_dir = state_dir / "spark-conf"
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


def spark_class() -> str:
    """pyspark's bin/spark-class; OrchardError when the installed pyspark lacks it."""
    import pyspark

    script = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not script.is_file():
        raise OrchardError(f"{script} not found: the installed pyspark lacks its launcher")
    return str(script)


def master_url(ports: Dict[str, int]) -> str:
    return f"spark://{HOST}:{ports['spark_master']}"


def master_command(launcher: str, ports: Dict[str, int]) -> List[str]:
    return [launcher, MASTER_CLASS, "--host", HOST, "--port", str(ports["spark_master"]),
            "--webui-port", str(ports["spark_master_ui"])]


def worker_command(launcher: str, ports: Dict[str, int], index: int, cores: int, memory: str,
                   work_dir: Path) -> List[str]:
    """Worker `index` (its UI port is ports["spark_worker_ui_<index>"])."""
    return [launcher, WORKER_CLASS, master_url(ports), "--host", HOST,
            "--webui-port", str(ports[f"spark_worker_ui_{index}"]),
            "--cores", str(cores), "--memory", memory, "--work-dir", str(work_dir)]


def master_json(ports: Dict[str, int]) -> Optional[Dict[str, Any]]:
    """The master's /json/ status page, or None when it does not answer."""
    url = f"http://{HOST}:{ports['spark_master_ui']}/json/"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def alive_workers(ports: Dict[str, int]) -> int:
    """Workers the master lists as ALIVE (0 when it does not answer)."""
    master = master_json(ports)
    if not master:
        return 0
    return sum(1 for w in master.get("workers", []) if w.get("state") == "ALIVE")


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
