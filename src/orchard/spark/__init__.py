"""Spark itself: Java check, the SparkSession, the one JVM gateway, the class archive, event-log naming, the spark-submit entry."""
