"""Where a run's Spark event log goes: orchard's folder locally, the cluster's own under
spark-submit (never overridden: on EMR the History Server reads only the cluster's folder)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from orchard.cloud.artifacts import ENTRY_SCRIPT
from orchard.cloud.emr import orchard_run_args, spark_submit_args
from orchard.spark.eventlog import event_log_conf, expected_log_path, launched_by_spark_submit
from tests.spark.test_entry import delta_jars_for_submit, spark_submit_binary


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("SPARK_CONF_DIR", "SPARK_HOME", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def test_under_spark_submit_the_clusters_settings_are_kept(cache, monkeypatch):
    """Cluster deploy mode: the driver's container has no SPARK_CONF_DIR; orchard sets nothing."""
    assert event_log_conf(None, on_this_machine=False, under_spark_submit=True) == {}
    assert not (cache / "spark-events").exists()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")  # what spark-submit's Python runs with
    assert launched_by_spark_submit() and event_log_conf(None, on_this_machine=False) == {}


def test_a_given_folder_wins_everywhere(cache, tmp_path):
    folder = tmp_path / "events"
    for under_spark_submit in (False, True):
        conf = event_log_conf(str(folder), on_this_machine=False, under_spark_submit=under_spark_submit)
        assert conf == {"spark.eventLog.enabled": "true", "spark.eventLog.dir": folder.resolve().as_uri()}
    assert folder.is_dir()
    assert event_log_conf("hdfs:///var/log/spark/apps", False, True)["spark.eventLog.dir"] == \
        "hdfs:///var/log/spark/apps"


def test_local_runs_log_to_the_cache(cache):
    conf = event_log_conf(None, on_this_machine=True, under_spark_submit=False)
    assert conf == {"spark.eventLog.enabled": "true",
                    "spark.eventLog.dir": (cache / "spark-events").as_uri()}
    assert (cache / "spark-events").is_dir()


def test_a_remote_master_uses_the_installations_folder(cache, tmp_path, monkeypatch):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "# EMR's\nspark.eventLog.enabled true\nspark.eventLog.dir hdfs:///var/log/spark/apps\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf_dir))
    assert event_log_conf(None, on_this_machine=False, under_spark_submit=False) == \
        {"spark.eventLog.enabled": "true"}


@pytest.mark.slow
def test_spark_submit_keeps_the_submitted_event_log_settings(tmp_path, sample_dir, model_file):
    """As in `--deploy-mode cluster` on YARN: the cluster's settings arrive as the application's
    conf, SPARK_CONF_DIR is absent; the log lands in the cluster's folder and run.json says so."""
    data = tmp_path / "data"
    for split, count in (("Training", 3), ("Test", 1)):
        for cls in sorted(p.name for p in (sample_dir / split).iterdir())[:2]:
            (data / split / cls).mkdir(parents=True)
            for image in sorted((sample_dir / split / cls).iterdir())[:count]:
                shutil.copy2(image, data / split / cls / image.name)
    cluster_events = tmp_path / "cluster-events"  # stands for hdfs:///var/log/spark/apps
    cluster_events.mkdir()
    output = tmp_path / "out"
    command = spark_submit_args(
        str(ENTRY_SCRIPT), orchard_run_args(str(data), str(output), str(model_file), ["--pca-k", "2"]),
        master="local[2]", conf={"spark.ui.enabled": "false", "spark.eventLog.enabled": "true",
                                 "spark.jars": delta_jars_for_submit(),
                                 "spark.eventLog.dir": cluster_events.as_uri()})
    command[0] = spark_submit_binary()
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", "SPARK_HOME")}
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable, "ORCHARD_CACHE_DIR": str(tmp_path / "cache")})
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    spark = json.loads((output / "run.json").read_text())["spark"]
    assert spark["event_log_dir"] == cluster_events.as_uri()
    expected = expected_log_path(str(cluster_events), spark["app_id"])
    assert urlparse(spark["event_log"]).path == expected  # Spark writes file:/..., same file
    assert [str(p) for p in cluster_events.iterdir()] == [expected]
    assert not (tmp_path / "cache" / "spark-events").exists()
