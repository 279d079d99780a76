"""The JVM gateway: Spark's JVM when a SparkContext runs, else one bare JVM per process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from orchard.spark import gateway
from orchard.spark.session import LOG4J_CONFIG

REPO = Path(__file__).resolve().parents[2]

BARE = r'''
import json, sys
from orchard.spark import gateway

first = gateway.jvm()
second = gateway.jvm()
args = list(first.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
conf = gateway.hadoop_configuration({"spark.hadoop.fs.defaultFS": "hdfs://nn:9000", "dfs.replication": "1"})
print(json.dumps({
    "same": first is second or first._gateway_client is second._gateway_client,
    "pid": int(first.java.lang.ProcessHandle.current().pid()),
    "launched": gateway.has_bare_jvm(),
    "args": args,
    "default_fs": conf.get("fs.defaultFS"),
    "replication": conf.get("dfs.replication"),
    "spark_context": gateway.active_context() is not None,
}))
sys.stdout.flush()
if sys.argv[1] == "shutdown":
    gateway.shutdown()
    print(json.dumps({"launched_after": gateway.has_bare_jvm()}))
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _wait_gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _alive(pid)


def _bare(mode: str):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-c", BARE, mode], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_bare_jvm_is_launched_once_quiet_and_ends_with_the_process():
    (report,) = _bare("exit")
    assert report["same"] and report["launched"] and not report["spark_context"]
    assert f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}" in report["args"]
    assert report["default_fs"] == "hdfs://nn:9000" and report["replication"] == "1"
    assert report["pid"] != os.getpid()
    assert _wait_gone(report["pid"]), "the bare JVM outlived its Python process"


def test_shutdown_stops_the_bare_jvm():
    report, after = _bare("shutdown")
    assert after == {"launched_after": False}
    assert _wait_gone(report["pid"])


def test_the_running_spark_context_is_used(spark):
    assert gateway.active_context() is spark.sparkContext
    assert gateway.jvm() is spark.sparkContext._jvm
    spark_conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf = gateway.hadoop_configuration({"orchard.test.key": "x"})
    assert conf.get("orchard.test.key") == "x"
    assert spark_conf.get("orchard.test.key") is None  # a copy: Spark's own is left alone
    assert conf.get("fs.defaultFS") == spark_conf.get("fs.defaultFS")


def test_java_doubles_arrive_exactly_in_the_running_jvm(spark):
    import struct

    values = [0.1, -2.5e-300, 1.0 / 3.0, 6.02e23]
    array = gateway.java_doubles(struct.pack("<4d", *values))
    assert len(array) == 4 and [array[i] for i in range(4)] == values  # bit for bit
