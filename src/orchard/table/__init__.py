"""The output as tables: Delta Lake tables written through Spark, read by any engine."""
