"""One storage door (local, HDFS, S3) and one sync engine for the push/pull commands."""
