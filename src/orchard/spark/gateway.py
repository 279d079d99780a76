"""The one door from Python to a JVM with Spark's and Hadoop's classes (py4j).

`jvm()` is the running SparkContext's JVM when there is one; otherwise a bare JVM (pyspark's
own launcher, no SparkContext, orchard's quiet log4j settings, on 127.0.0.1) started once for
this process and shut down when the process exits. orchard uses it for Hadoop filesystems
(HDFS, s3a, ...) outside a Spark job and for Spark's compression codecs.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional

from orchard.errors import OrchardError
from orchard.spark.session import LOG4J_CONFIG, check_java

_LOCK = threading.Lock()
_GATEWAY: Any = None  # the bare JVM's py4j JavaGateway, once launched


def active_context():
    """The running SparkContext, or None (pyspark is imported only when it is loaded)."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def jvm():
    """The py4j JVM view: the running SparkContext's, else this process's bare JVM.

    Raises OrchardError when no suitable Java is installed.
    """
    context = active_context()
    if context is not None:
        return context._jvm
    return _bare_gateway().jvm


def java_doubles(little_endian_f8: bytes):
    """A Java double[] of the running SparkContext's JVM holding these float64 values (8 bytes
    each, little-endian), sent as one byte array: a py4j list of doubles goes value by value
    (seconds for a million). Raises OrchardError when no SparkContext is running."""
    context = active_context()
    if context is None:
        raise OrchardError("no running SparkContext to hand the values to")
    jvm = context._jvm
    array = context._gateway.new_array(jvm.double, len(little_endian_f8) // 8)
    buffer = jvm.java.nio.ByteBuffer.wrap(bytearray(little_endian_f8))
    buffer.order(jvm.java.nio.ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().get(array)
    return array


def has_bare_jvm() -> bool:
    """True when this process launched its bare JVM (and has not shut it down)."""
    return _GATEWAY is not None


def _bare_gateway():
    global _GATEWAY
    with _LOCK:
        if _GATEWAY is None:
            check_java()
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            from pyspark import SparkConf
            from pyspark.java_gateway import launch_gateway

            conf = SparkConf(loadDefaults=False)
            conf.set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}")
            _GATEWAY = launch_gateway(conf)
            atexit.register(shutdown)
        return _GATEWAY


def shutdown() -> None:
    """Stop the bare JVM, if this process launched one (a SparkContext's JVM is left alone)."""
    global _GATEWAY
    with _LOCK:
        gateway, _GATEWAY = _GATEWAY, None
    if gateway is None:
        return
    process: Optional[subprocess.Popen] = getattr(gateway, "proc", None)
    with contextlib.suppress(Exception):
        gateway.shutdown()
    if process is None:  # a gateway pyspark was handed (spark-submit): not ours to stop
        return
    with contextlib.suppress(Exception):
        process.stdin.close()  # the JVM exits when its stdin closes
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def hadoop_configuration(settings: Optional[Dict[str, str]] = None):
    """A new Hadoop Configuration: the running SparkContext's (a copy), else Hadoop's defaults,
    with `settings` (Hadoop keys, e.g. fs.defaultFS; a `spark.hadoop.` prefix is dropped) set."""
    machine = jvm()
    context = active_context()
    Configuration = machine.org.apache.hadoop.conf.Configuration
    conf = Configuration(context._jsc.hadoopConfiguration()) if context is not None else Configuration()
    for key, value in hadoop_settings(settings).items():
        conf.set(key, value)
    return conf


def hadoop_settings(settings: Optional[Dict[str, str]]) -> Dict[str, str]:
    """`settings` with the `spark.hadoop.` prefix dropped from its keys (others kept as given)."""
    prefix = "spark.hadoop."
    return {key[len(prefix):] if key.startswith(prefix) else key: str(value)
            for key, value in (settings or {}).items()}


def java_error_messages(error: BaseException) -> List[str]:
    """The messages of a Py4JJavaError's Java exception and of its causes (outermost first);
    [] for other errors or when the JVM cannot be asked."""
    messages: List[str] = []
    java = getattr(error, "java_exception", None)
    try:
        while java is not None and len(messages) < 50:
            messages.append(str(java.toString()))
            java = java.getCause()
    except Exception:  # the JVM is gone: what was read so far
        pass
    return messages

