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

from orchard.spark.classarchive import ClassArchive, class_archive
from orchard.spark.delta import with_delta
from orchard.errors import OrchardError

log = logging.getLogger(__name__)

MIN_JAVA, MAX_TESTED_JAVA = 8, 17
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
# The JVM of a run on this machine lives about a minute: compiling hot code with C1 only
# (no C2) leaves more CPU to the work itself; measured 4-5 s less per run on 2 cores.
QUICK_JIT = "-XX:TieredStopAtLevel=1"
_CLASS_ARCHIVE: Optional[ClassArchive] = None  # of the JVM this process launched


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


def is_loopback_cluster(master: Optional[str]) -> bool:
    """True for a Spark standalone master on this machine's loopback address (orchard's local
    cluster, `spark://127.0.0.1:PORT` or `spark://localhost:PORT`): its executors are JVMs on
    this machine too."""
    return bool(master) and re.match(r"spark://(127\.0\.0\.1|localhost):\d+$", master) is not None


UTF8_LOCALE = "C.UTF-8"
# File names are UTF-8 whatever the locale: under LC_ALL=C the JVM would turn non-ASCII names into '?'
ENCODING_JAVA_OPTIONS = "-Dsun.jnu.encoding=UTF-8 -Dfile.encoding=UTF-8"


def locale_is_utf8() -> bool:
    """True when this process's locale encodes text (and file names) as UTF-8."""
    effective = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG") or ""
    return effective.replace("-", "").lower().endswith(".utf8")


def utf8_environment() -> Dict[str, str]:
    """LC_ALL/LANG for the JVM and the Python workers: C.UTF-8 when this process's locale is
    not UTF-8 (LC_ALL=C in containers, cron jobs, EMR steps), else nothing."""
    return {} if locale_is_utf8() else {"LC_ALL": UTF8_LOCALE, "LANG": UTF8_LOCALE}


def prepare_environment(on_this_machine: bool) -> None:
    """Environment Spark needs on a laptop: loopback address, this interpreter for workers,
    single-threaded native BLAS; and a UTF-8 locale for the JVM and its Python workers."""
    os.environ.update(utf8_environment())
    if on_this_machine:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # One BLAS thread per task, as Spark sets (OMP_NUM_THREADS) for executors it launches
        # but not for the local-mode JVM: OpenBLAS would otherwise start a thread per core in
        # every task's PCA call, and oversubscribed cores made the projection 2.5x slower.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def base_conf(arrow_batch_rows: int, on_this_machine: bool, loopback_cluster: bool = False) -> Dict[str, str]:
    """orchard's Spark settings. `on_this_machine` (a local[N] master): loopback, orchard's log4j
    settings, C1-only JIT for the one JVM. `loopback_cluster` (a standalone master on 127.0.0.1):
    C1-only JIT for the driver and the executors, whose JVMs live a run long on the same cores
    (measured with `orchard scale-test --workers 1,2` on the bench set, 2 cores: 2 x 1 runs 90.4 s
    -> 78.8 s, 1 x 1 unchanged; C2 only competes for CPU when every core is busy)."""
    conf = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(arrow_batch_rows),
        "spark.python.worker.reuse": "true",
        "spark.sql.adaptive.enabled": "false",  # keep the partition count orchard chose
        "spark.ui.showConsoleProgress": "false",  # orchard draws its own (orchard.spark.progress)
    }
    conf["spark.driver.extraJavaOptions"] = ENCODING_JAVA_OPTIONS
    conf["spark.executor.extraJavaOptions"] = ENCODING_JAVA_OPTIONS
    if on_this_machine:
        java_options = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG} {ENCODING_JAVA_OPTIONS}"
        conf["spark.driver.extraJavaOptions"] = f"{java_options} {QUICK_JIT}"
        conf["spark.executor.extraJavaOptions"] = java_options
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    elif loopback_cluster:
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            conf[key] = f"{conf[key]} {QUICK_JIT}"
    return conf


def create_session(
    app_name: str,
    master: Optional[str],
    arrow_batch_rows: int = 64,
    extra_conf: Optional[Dict[str, str]] = None,
    on_this_machine: Optional[bool] = None,
    class_archive_name: Optional[str] = None,
):
    """Start (or reuse) the SparkSession; `extra_conf` wins over orchard's defaults.

    With `class_archive_name`, a JVM this call launches uses (or records) the Java class
    archive of that name (see orchard.spark.classarchive); stop it with `stop_session`.
    """
    global _CLASS_ARCHIVE
    java_major = check_java()
    if on_this_machine is None:
        on_this_machine = bool(master) and is_local_master(master)
    forced_locale = utf8_environment()
    prepare_environment(on_this_machine)
    conf = base_conf(arrow_batch_rows, on_this_machine, loopback_cluster=is_loopback_cluster(master))
    conf.update({f"spark.executorEnv.{name}": value for name, value in forced_locale.items()})
    conf.update(extra_conf or {})
    conf = with_delta(conf, jars=launches_jvm())
    archive = _class_archive_for_new_jvm(class_archive_name, java_major, conf) if class_archive_name else None
    try:
        spark = _get_or_create(app_name, master, with_class_archive(conf, archive))
    except OrchardError:
        if archive is None or archive.recording:
            raise
        log.warning("Spark did not start with the JVM class archive %s: removed, starting without", archive.path)
        archive.discard()
        spark = _get_or_create(app_name, master, conf)
        archive = None
    if archive is not None:
        _CLASS_ARCHIVE = archive
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _get_or_create(app_name: str, master: Optional[str], conf: Dict[str, str]):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as error:  # py4j/Java start-up failures
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OrchardError(f"could not start Spark (master {master}): {first_line}") from None


def launches_jvm() -> bool:
    """True when a new session would launch its own JVM (none running, not under spark-submit)."""
    from pyspark import SparkContext

    return SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ


def _class_archive_for_new_jvm(name: str, java_major: int, conf: Dict[str, str]) -> Optional[ClassArchive]:
    """The class archive when this call launches the JVM itself (not reused, not spark-submit)."""
    if not launches_jvm():
        return None
    return class_archive(name, java_executable() or "java", java_major, conf)


def with_class_archive(conf: Dict[str, str], archive: Optional[ClassArchive]) -> Dict[str, str]:
    """`conf` with the archive's options added to the driver JVM's options."""
    if archive is None:
        return conf
    options = f"{conf.get('spark.driver.extraJavaOptions', '')} {archive.java_options()}".strip()
    return {**conf, "spark.driver.extraJavaOptions": options}


def stop_session(spark) -> None:
    """Stop Spark (which completes the event log); when orchard launched the JVM, end it too,
    and when that JVM records a class archive, wait for it and publish the archive."""
    from pyspark import SparkContext

    global _CLASS_ARCHIVE
    gateway = SparkContext._gateway
    spark.stop()
    process = getattr(gateway, "proc", None)
    if process is None:
        return
    gateway.shutdown()
    process.stdin.close()  # the JVM exits when its stdin closes
    SparkContext._gateway = SparkContext._jvm = None
    archive, _CLASS_ARCHIVE = _CLASS_ARCHIVE, None
    if archive is None or not archive.recording:
        return  # Spark has stopped (event log complete); the JVM ends on its own
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        log.warning("the Spark JVM (pid %s) did not exit in 300 s; its class archive is not kept", process.pid)
        return
    archive.finish()


def total_cores(spark) -> int:
    """Cores available to tasks: defaultParallelism is the total executor cores in Spark."""
    return max(1, int(spark.sparkContext.defaultParallelism))


def task_cpus(spark) -> int:
    return int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


def executor_task_counts(spark) -> List[Dict[str, object]]:
    """[{id, host, cores, tasks}] for executors that ran tasks, from Spark's status store
    (what the UI's REST API serves; asked in-process, which saves the UI's slow first request)."""
    try:
        executors = _status_store_executors(spark)
    except Exception as error:  # a private Spark API: fall back to the REST API
        log.debug("status store not reachable (%s); asking the REST API", error)
        executors = _rest_executors(spark)
    return [e for e in executors if (e["tasks"] or 0) > 0]


def _status_store_executors(spark) -> List[Dict[str, object]]:
    summaries = spark.sparkContext._jsc.sc().statusStore().executorList(False)  # a Scala Seq
    executors = []
    for index in range(summaries.size()):
        summary = summaries.apply(index)
        executors.append(_executor(summary.id(), summary.hostPort(), summary.totalCores(), summary.totalTasks()))
    return executors


def _rest_executors(spark) -> List[Dict[str, object]]:
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
    return [_executor(e["id"], e["hostPort"], e.get("totalCores"), e.get("totalTasks", 0)) for e in executors]


def _executor(executor_id: str, host_port: str, cores, tasks) -> Dict[str, object]:
    return {"id": executor_id, "host": host_port.rsplit(":", 1)[0], "cores": cores, "tasks": tasks}
