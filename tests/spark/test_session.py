"""Executor task counts (read in-process from Spark's status store, as the REST API serves them); JVM options."""
from __future__ import annotations

import os

from orchard.spark.session import (
    QUICK_JIT,
    _rest_executors,
    _status_store_executors,
    base_conf,
    executor_task_counts,
    is_loopback_cluster,
)


def test_status_store_matches_the_rest_api(spark):
    spark.range(1000, numPartitions=5).selectExpr("sum(id)").collect()
    in_process = _status_store_executors(spark)
    over_http = _rest_executors(spark)
    assert in_process == over_http
    assert sum(e["tasks"] for e in in_process) >= 5
    assert executor_task_counts(spark) == [e for e in in_process if e["tasks"] > 0]


def test_a_local_jvm_runs_with_the_quick_jit(spark):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert QUICK_JIT in list(runtime.getInputArguments())


def test_a_local_jvm_runs_one_blas_thread_per_task(spark):
    expected = os.environ.get("OPENBLAS_NUM_THREADS", "1")  # "1" unless the user chose otherwise
    assert spark.sparkContext._jvm.java.lang.System.getenv("OPENBLAS_NUM_THREADS") == expected


def test_a_cluster_on_loopback_runs_its_driver_and_executors_with_the_quick_jit():
    assert is_loopback_cluster("spark://127.0.0.1:7077") and is_loopback_cluster("spark://localhost:41234")
    for other in ("spark://10.0.0.5:7077", "yarn", "local[2]", None, "spark://127.0.0.1:7077,127.0.0.2:7077"):
        assert not is_loopback_cluster(other)
    cluster = base_conf(64, on_this_machine=False, loopback_cluster=True)
    assert QUICK_JIT in cluster["spark.driver.extraJavaOptions"].split()
    assert QUICK_JIT in cluster["spark.executor.extraJavaOptions"].split()
    assert "-Dfile.encoding=UTF-8" in cluster["spark.executor.extraJavaOptions"].split()
    emr = base_conf(64, on_this_machine=False)  # yarn, or a cluster elsewhere: Spark's own JIT
    assert QUICK_JIT not in emr["spark.driver.extraJavaOptions"] + emr["spark.executor.extraJavaOptions"]
