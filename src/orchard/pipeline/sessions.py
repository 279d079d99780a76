"""Spark SQL settings for one job only: a child session that shares the caller's SparkContext.

Spark reads settings such as `spark.sql.execution.arrow.maxRecordsPerBatch` or
`spark.sql.files.openCostInBytes` from the session that owns a DataFrame when its query is
planned (at an action). Setting them with `spark.conf.set` would change every later query of
the caller. Instead orchard clones the caller's session (same SparkContext, cache and SQL
settings, its own SQL conf), sets them there and binds the DataFrame's plan to the clone:
the caller's session is left as it was.
"""
from __future__ import annotations

import logging
from typing import Dict

log = logging.getLogger(__name__)


def child_session(spark, conf: Dict[str, str]):
    """A SparkSession sharing `spark`'s SparkContext and cache, with `spark`'s SQL settings
    (when the JVM allows the clone; else Spark's defaults) plus `conf`."""
    from pyspark.sql import SparkSession

    try:
        jchild = spark._jsparkSession.cloneSession()  # private[sql] in Scala, public in bytecode
    except Exception as error:  # py4j: not reachable in this Spark
        log.debug("cloneSession not reachable (%s); using newSession", error)
        jchild = spark._jsparkSession.newSession()
    child = SparkSession(spark.sparkContext, jchild)
    for key, value in conf.items():
        child.conf.set(key, value)
    return child


def bind(frame, session):
    """`frame`'s (analyzed) plan as a DataFrame of `session`: its actions use that session's settings."""
    from pyspark.sql import DataFrame

    plan = frame._jdf.queryExecution().analyzed()
    return DataFrame(_dataset_class(session.sparkContext._jvm).ofRows(session._jsparkSession, plan), session)


def _dataset_class(jvm):
    """The JVM's Dataset class with `ofRows`: org.apache.spark.sql.classic.Dataset in Spark 4
    (where sql.Dataset became the abstract API shared with Spark Connect), sql.Dataset before."""
    from py4j.java_gateway import JavaClass

    classic = jvm.org.apache.spark.sql.classic.Dataset
    return classic if isinstance(classic, JavaClass) else jvm.org.apache.spark.sql.Dataset


def with_settings(frame, conf: Dict[str, str]):
    """`frame` bound to a child session of its own session that has `conf` set."""
    return bind(frame, child_session(frame.sparkSession, conf))
