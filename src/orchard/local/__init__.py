"""The local cluster: Spark standalone, SeaweedFS (S3), HDFS, their downloads, and execution profiles."""
