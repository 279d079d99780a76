"""Per-job Spark settings: a child session takes them, the caller's session never sees them."""
from __future__ import annotations

from orchard.pipeline.sessions import bind, child_session, with_settings

ARROW = "spark.sql.execution.arrow.maxRecordsPerBatch"


def batch_sizes(frame, tag: str):
    """Rows in each Arrow batch the Python worker receives (`tag` keeps plans apart in the cache)."""

    def sizes(batches):
        import pandas as pd

        for batch in batches:
            yield pd.DataFrame({"rows": [len(batch)], "tag": [tag]})

    return sorted(row.rows for row in frame.mapInPandas(sizes, "rows long, tag string").collect())


def expected_batches(rows: int, batch_rows: int):
    return sorted([batch_rows] * (rows // batch_rows) + ([rows % batch_rows] if rows % batch_rows else []))


def test_a_child_takes_the_setting_and_the_caller_keeps_its_own(spark):
    caller = spark.conf.get(ARROW)
    spark.conf.set("spark.sql.shuffle.partitions", "3")  # a caller's setting, inherited by the child
    try:
        frame = spark.range(100).repartition(1)
        scoped = with_settings(frame, {ARROW: "16"})
        assert batch_sizes(scoped, "child") == expected_batches(100, 16)
        assert scoped.sparkSession.conf.get("spark.sql.shuffle.partitions") == "3"
        assert spark.conf.get(ARROW) == caller
        assert batch_sizes(frame, "caller") == expected_batches(100, int(caller)) != expected_batches(100, 16)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "4")


def test_bind_moves_a_plan_to_another_session(spark):
    child = child_session(spark, {"spark.sql.shuffle.partitions": "5"})
    frame = spark.createDataFrame([(1, "a"), (2, "b")], "n int, s string")
    bound = bind(frame, child)
    assert bound.sparkSession is child and bound.collect() == frame.collect()
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
