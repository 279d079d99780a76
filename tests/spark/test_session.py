"""Executor task counts (read in-process from Spark's status store, as the REST API serves them); JVM options."""
from __future__ import annotations

import os

from orchard.spark.session import QUICK_JIT, _rest_executors, _status_store_executors, executor_task_counts


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
