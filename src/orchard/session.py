"""Starting Spark for orchard: Java check, environment, configuration, one SparkSession."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from orchard.errors import OrchardError

log = logging.getLogger(__name__)

MIN_JAVA, MAX_TESTED_JAVA = 8, 17
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


def java_executable() -> Optional[str]:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def java_major_version(output: str) -> Optional[int]:
    """Major version from `java -version` output: '1.8.0_392' -> 8, '17.0.15' -> 17."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> int:
    """Return Java's major version, or raise OrchardError saying how to get a suitable one."""
    java = java_executable()
    hint = "install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
    if not java:
        raise OrchardError(f"Java not found: Spark needs Java {MIN_JAVA}-{MAX_TESTED_JAVA}; {hint}")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OrchardError(f"could not run {java} -version ({error}); {hint}") from None
    major = java_major_version(result.stderr + result.stdout)
    if major is None:
        raise OrchardError(f"could not read the Java version from `{java} -version`; {hint}")
    if major < MIN_JAVA:
        raise OrchardError(f"Java {major} at {java} is too old: Spark 3.5 needs Java {MIN_JAVA}+; {hint}")
    if major > MAX_TESTED_JAVA:
        log.warning("Java %s is newer than Spark 3.5 is tested with (%s)", major, MAX_TESTED_JAVA)
    return major


def is_local_master(master: str) -> bool:
    return master.startswith("local")


def prepare_environment(on_this_machine: bool) -> None:
    """Environment Spark needs on a laptop: loopback address and this interpreter for workers."""
    if on_this_machine:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def base_conf(batch_size: int, on_this_machine: bool) -> Dict[str, str]:
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_size),
        "spark.python.worker.reuse": "true",
        "spark.sql.adaptive.enabled": "false",  # keep the partition count orchard chose
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
    }
    if on_this_machine:
        java_options = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
        conf["spark.driver.extraJavaOptions"] = java_options
        conf["spark.executor.extraJavaOptions"] = java_options
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def create_session(
    app_name: str,
    master: Optional[str],
    batch_size: int = 64,
    extra_conf: Optional[Dict[str, str]] = None,
    on_this_machine: Optional[bool] = None,
):
    """Start (or reuse) the SparkSession; `extra_conf` wins over orchard's defaults."""
    check_java()
    if on_this_machine is None:
        on_this_machine = bool(master) and is_local_master(master)
    prepare_environment(on_this_machine)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf = base_conf(batch_size, on_this_machine)
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # py4j/Java start-up failures
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OrchardError(f"could not start Spark (master {master}): {first_line}") from None
    spark.sparkContext.setLogLevel("WARN")
    return spark


def total_cores(spark) -> int:
    """Cores available to tasks: defaultParallelism is the total executor cores in Spark."""
    return max(1, int(spark.sparkContext.defaultParallelism))


def task_cpus(spark) -> int:
    return int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


def executor_task_counts(spark) -> List[Dict[str, object]]:
    """[{id, host, tasks}] for executors that ran tasks, from Spark's status REST API."""
    url = spark.sparkContext.uiWebUrl
    if not url:
        return []
    api = f"{url}/api/v1/applications/{spark.sparkContext.applicationId}/allexecutors"
    try:
        with urllib.request.urlopen(api, timeout=10) as response:
            executors = json.load(response)
    except (OSError, ValueError) as error:
        log.warning("could not read executors from %s: %s", api, error)
        return []
    return [
        {"id": e["id"], "host": e["hostPort"].rsplit(":", 1)[0], "cores": e.get("totalCores"),
         "tasks": e["totalTasks"]}
        for e in executors
        if e.get("totalTasks", 0) > 0
    ]
