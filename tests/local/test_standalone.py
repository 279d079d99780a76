"""Spark standalone on 127.0.0.1 and the Spark settings of the box (orchard.local.standalone)."""
from __future__ import annotations

from orchard.local.processes import free_port
from orchard.local.standalone import (
    MASTER_CLASS, WORKER_CLASS, alive_workers, master_command, master_json, profile_conf, worker_command,
)


def _status(hdfs_url="hdfs://127.0.0.1:9000"):
    return {
        "master_url": "spark://127.0.0.1:7077", "settings": {"cores": 1, "memory": "2g"},
        "s3_endpoint": "http://127.0.0.1:8333", "access_key": "AK", "secret_key": "SK",
        "s3a_jars": ["/c/hadoop-aws-3.3.4.jar", "/c/aws-java-sdk-bundle-1.12.262.jar"],
        "hdfs_url": hdfs_url,
    }


def test_profile_conf_points_spark_at_the_box():
    conf = profile_conf(_status())
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    assert conf["spark.jars"] == "/c/hadoop-aws-3.3.4.jar,/c/aws-java-sdk-bundle-1.12.262.jar"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AK"
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "SK"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert conf["spark.hadoop.fs.defaultFS"] == "hdfs://127.0.0.1:9000"
    assert conf["spark.hadoop.dfs.replication"] == "1"
    assert conf["spark.executor.memory"] == "1024m"
    assert "spark.hadoop.fs.defaultFS" not in profile_conf(_status(hdfs_url=None))


def test_master_and_worker_commands(tmp_path):
    ports = {"spark_master": 17077, "spark_master_ui": 18080, "spark_worker_ui_1": 18082}
    assert master_command("/s/spark-class", ports) == [
        "/s/spark-class", MASTER_CLASS, "--host", "127.0.0.1", "--port", "17077", "--webui-port", "18080"]
    worker = worker_command("/s/spark-class", ports, 1, 2, "1g", tmp_path)
    assert worker[:3] == ["/s/spark-class", WORKER_CLASS, "spark://127.0.0.1:17077"]
    assert worker[worker.index("--webui-port") + 1] == "18082" and worker[worker.index("--cores") + 1] == "2"
    assert worker[worker.index("--work-dir") + 1] == str(tmp_path)


def test_a_master_that_does_not_answer_has_no_workers():
    ports = {"spark_master_ui": free_port(set())}
    assert master_json(ports) is None and alive_workers(ports) == 0
