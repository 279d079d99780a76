"""Event-log parsing (orchard.analysis.eventlog): naming, finding, reading and parsing logs.

Real Spark event logs are produced here by small Spark jobs run in a subprocess (so each has its
own event-log settings: plain JSON, or rolling + compressed), which also records what Spark's
REST API says about the executors before the session stops; the parser must count the same
tasks per executor. Reading corner cases are checked on synthetic logs (tests/analysis/events.py).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import boto3
import pytest

from orchard.analysis.eventlog import (
    find_in_dir, load_event_log, locate, parse_events, read_events, resolve_run,
)
from orchard.analysis.metrics import analyse
from orchard.errors import OrchardError
from orchard.names import RUN_RECORD, STAGE_FEATURIZE
from orchard.spark import gateway
from orchard.spark.eventlog import expected_log_path, sanitize_app_name
from orchard.storage.fs import Storage
from tests.analysis.events import app_events, write_lines

JOB = r'''
import json, os, sys, time, urllib.request
from pyspark.sql import SparkSession
from orchard.names import STAGE_FEATURIZE, STAGE_PROPERTY
from orchard.spark.eventlog import event_log_of

out, master = sys.argv[1], sys.argv[2]
records = []
for conf in json.loads(sys.argv[3]):  # one application per settings, one after the other
    builder = SparkSession.builder.appName("orchard-eventlog-test").master(master)
    for key, value in {"spark.ui.showConsoleProgress": "false", "spark.driver.host": "127.0.0.1",
                       "spark.driver.bindAddress": "127.0.0.1", "spark.sql.shuffle.partitions": "2",
                       "spark.sql.adaptive.enabled": "false",  # keep the 2 shuffle partitions: 14 tasks
                       **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    sc = spark.sparkContext
    sc.setLogLevel("ERROR")

    def work(index, rows):
        time.sleep(0.05 * (index % 3))
        yield sum(1 for _ in rows)

    sc.setLocalProperty(STAGE_PROPERTY, STAGE_FEATURIZE)
    sc.parallelize(range(3000), 7).mapPartitionsWithIndex(work).collect()
    sc.setLocalProperty(STAGE_PROPERTY, None)
    spark.range(0, 20000, numPartitions=5).selectExpr("id % 7 as k").groupBy("k").count().collect()
    expected = 7 + 5 + 2
    api = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/allexecutors"
    previous, executors = None, []
    for _ in range(100):  # the status store is fed asynchronously: wait until it settles
        executors = json.load(urllib.request.urlopen(api, timeout=30))
        counts = sorted((e["id"], e["totalTasks"]) for e in executors)
        if counts == previous and sum(c for _, c in counts) >= expected:
            break
        previous = counts
        time.sleep(0.2)
    records.append({"app_id": sc.applicationId, "event_log": event_log_of(spark),
                    "executors": [{"id": e["id"], "totalTasks": e["totalTasks"]} for e in executors]})
    spark.stop()
with open(out, "w") as handle:
    json.dump(records, handle)
'''


def _spark_jobs(tmp_path: Path, master: str, confs: List[Dict[str, str]], timeout: float = 300) -> List[Dict[str, Any]]:
    """Run the job once per settings in one subprocess; what the REST API said, per application."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    out = tmp_path / "rest.json"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, str(script), str(out), master, json.dumps(confs)],
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def _rest_counts(record: Dict[str, Any]) -> Dict[str, int]:
    return {e["id"]: e["totalTasks"] for e in record["executors"] if e["totalTasks"] > 0}


# --------------------------------------------------------------------------- real event logs


@pytest.fixture(scope="module")
def both_logs(tmp_path_factory):
    """The same job logged as one plain JSON file, then as a rolling, zstd-compressed log."""
    folder = tmp_path_factory.mktemp("eventlogs")
    plain, rolling = folder / "plain", folder / "rolling"
    plain.mkdir()
    rolling.mkdir()
    records = _spark_jobs(folder, "local[2]", [
        {"spark.eventLog.enabled": "true", "spark.eventLog.dir": plain.as_uri()},
        {"spark.eventLog.enabled": "true", "spark.eventLog.dir": rolling.as_uri(),
         "spark.eventLog.rolling.enabled": "true", "spark.eventLog.compress": "true"},
    ])
    return {"plain": (records[0], plain), "rolling": (records[1], rolling)}


@pytest.fixture(scope="module")
def plain_log(both_logs):
    return both_logs["plain"]


@pytest.fixture(scope="module")
def rolling_log(both_logs):
    return both_logs["rolling"]


def test_plain_log_task_counts_match_the_rest_api(plain_log):
    record, events = plain_log
    assert record["event_log"] == expected_log_path(events.as_uri().replace("file:///", "file:/"), record["app_id"])
    app = load_event_log(record["event_log"])
    assert app.app_id == record["app_id"]
    assert not app.rolling and not app.in_progress
    assert app.tasks_per_executor() == _rest_counts(record)
    assert sum(app.tasks_per_executor().values()) >= 13


def test_rolling_compressed_log_task_counts_match_the_rest_api(rolling_log):
    record, events = rolling_log
    folder = Path(record["event_log"].replace("file:", "", 1))
    assert folder.name == f"eventlog_v2_{record['app_id']}"
    parts = [p.name for p in folder.iterdir() if p.name.startswith("events_")]
    assert parts and all(p.endswith(".zstd") for p in parts)
    app = load_event_log(record["event_log"], force_jvm=True)  # Spark's own codec, any install
    assert app.rolling
    assert app.tasks_per_executor() == _rest_counts(record)
    # and in Python when the zstandard package is there (else the JVM again)
    assert load_event_log(record["event_log"]).tasks_per_executor() == _rest_counts(record)


def test_the_same_job_parses_the_same_in_both_formats(plain_log, rolling_log):
    plain = load_event_log(plain_log[0]["event_log"])
    rolling = load_event_log(rolling_log[0]["event_log"], force_jvm=True)
    shape = lambda app: sorted((s.stage_id, s.n_tasks) for s in app.stages.values())  # noqa: E731
    assert shape(plain) == shape(rolling)
    assert len(plain.tasks) == len(rolling.tasks)


def test_found_by_app_id_in_its_folder_and_tagged_jobs(plain_log):
    record, events = plain_log
    location = find_in_dir(str(events), record["app_id"])
    app = parse_events(read_events(location), location)
    tagged = [j for j in app.jobs.values() if j.orchard_stage == STAGE_FEATURIZE]
    assert len(tagged) == 1
    span = (tagged[0].completed_ms - tagged[0].submitted_ms) / 1000  # the featurize job, as the cluster saw it
    assert span > 0 and app.jobs_span_s(STAGE_FEATURIZE) == pytest.approx(span)
    assert app.jobs_span_s("no such stage") is None
    analysis = analyse(app)
    assert analysis.jobs_s_by_stage[STAGE_FEATURIZE] == pytest.approx(span, abs=0.001)
    phases = {s.phase for s in analysis.stages}
    assert "featurize" in phases
    assert analysis.total_cores == 2
    assert {e.id for e in analysis.executors} == {"driver"}
    assert 0 < analysis.utilisation <= 1.0


@pytest.mark.slow
def test_standalone_cluster_counts_per_executor(tmp_path):
    """Two workers of one core: tasks land on executors 0 and 1, as the REST API says."""
    cluster = _Standalone(tmp_path, workers=2)
    try:
        events = tmp_path / "events"
        events.mkdir()
        record, = _spark_jobs(tmp_path, cluster.url, [{
            "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
            "spark.eventLog.compress": "true", "spark.eventLog.compression.codec": "lz4",
            "spark.cores.max": "2", "spark.executor.cores": "1", "spark.executor.memory": "512m",
        }])
    finally:
        cluster.stop()
    assert record["event_log"].endswith(".lz4")
    app = load_event_log(record["event_log"])
    counts = app.tasks_per_executor()
    assert counts == _rest_counts(record)
    assert set(counts) == {"0", "1"}
    analysis = analyse(app)
    assert sorted(e.id for e in analysis.executors) == ["0", "1"]
    assert all(e.cores == 1 for e in analysis.executors)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Standalone:
    """A Spark standalone master and workers from the installed pyspark, stopped by pid."""

    def __init__(self, folder: Path, workers: int):
        import pyspark

        spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(Path(pyspark.__file__).parent),
               "PYSPARK_PYTHON": sys.executable, "SPARK_WORKER_DIR": str(folder / "work")}
        port, ui = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{port}"
        self.processes: List[subprocess.Popen] = []
        logs = folder / "logs"
        logs.mkdir()
        self._start([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(ui)], env, logs / "master.log")
        for i in range(workers):
            self._start([str(spark_class), "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                         "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                         "--work-dir", str(folder / "work")], env, logs / f"worker{i}.log")
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2))
                if sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE") == workers:
                    return
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the standalone cluster did not start; logs in {logs}")

    def _start(self, command, env, log_file: Path) -> None:
        handle = open(log_file, "w")
        self.processes.append(subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, 15)  # its own session: spark-class's java child goes too
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)


# --------------------------------------------------------------------------- naming and finding


def test_names_follow_spark():
    assert sanitize_app_name("app-20240101 1:2/x.y") == "app-20240101-1-2-x_y"
    assert sanitize_app_name("application_1_0001", "1") == "application_1_0001_1"
    assert expected_log_path("hdfs:///var/log/spark/apps/", "application_1_0001", "1") == \
        "hdfs:///var/log/spark/apps/application_1_0001_1"
    assert expected_log_path("file:/e", "local-1", compress=True) == "file:/e/local-1.zstd"
    assert expected_log_path("file:/e", "local-1", compress=True,
                             codec="org.apache.spark.io.LZ4CompressionCodec") == "file:/e/local-1.lz4"
    assert expected_log_path("s3://b/logs", "local-1", rolling=True) == "s3://b/logs/eventlog_v2_local-1"


def test_rolling_parts_are_read_in_numeric_order(tmp_path):
    events = app_events(n_tasks=6)
    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    chunks = [events[:4], events[4:7], events[7:]]
    for index, chunk in zip((1, 2, 10), chunks):
        write_lines(folder / f"events_{index}_local-1", chunk)
    (folder / "appstatus_local-1.inprogress").write_text("")
    (folder / ".events_1_local-1.crc").write_text("x")
    location = locate(str(folder))
    assert location.rolling and location.in_progress
    assert [Path(f).name for f in location.files] == ["events_1_local-1", "events_2_local-1", "events_10_local-1"]
    assert [e["Event"] for e in read_events(location)] == [e["Event"] for e in events]


def test_in_progress_log_with_a_torn_last_line(tmp_path):
    text = "".join(json.dumps(e) + "\n" for e in app_events()[:-1]) + '{"Event": "SparkListenerTaskEnd", "Sta'
    (tmp_path / "local-1.inprogress").write_text(text)
    app = load_event_log(str(tmp_path / "local-1"))  # the finished name: found with .inprogress
    assert app.in_progress and app.end_ms is None and len(app.tasks) == 4


def test_find_in_dir_prefers_the_finished_log(tmp_path):
    write_lines(tmp_path / "local-1.inprogress", app_events()[:3])
    write_lines(tmp_path / "local-1", app_events())
    write_lines(tmp_path / "local-12", app_events("local-12"))
    assert Path(find_in_dir(str(tmp_path), "local-1").path).name == "local-1"
    with pytest.raises(OrchardError, match="no event log"):
        find_in_dir(str(tmp_path), "local-7")


def test_resolve_run_from_run_json(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "local-1", app_events())
    run = tmp_path / "run"
    run.mkdir()
    record = {"spark": {"app_id": "local-1", "event_log_dir": logs.as_uri()}, "counts": {"images": 40}}
    (run / RUN_RECORD).write_text(json.dumps(record))
    location, found = resolve_run(str(run))  # no `event_log` key: looked up by app id
    assert Path(location.path).name == "local-1" and found["counts"]["images"] == 40
    record["spark"]["event_log"] = str(logs / "local-1")
    (run / RUN_RECORD).write_text(json.dumps(record))
    assert resolve_run(str(run))[0].path == str(logs / "local-1")
    record["spark"] = {"app_id": "local-1", "event_log_dir": None}
    (run / RUN_RECORD).write_text(json.dumps(record))
    with pytest.raises(OrchardError, match="records no event log"):
        resolve_run(str(run))


def test_not_an_event_log(tmp_path):
    (tmp_path / "x.json").write_text("hello\n")
    with pytest.raises(OrchardError, match="not JSON"):
        load_event_log(str(tmp_path / "x.json"))
    with pytest.raises(OrchardError, match="not found"):
        load_event_log(str(tmp_path / "missing"))


def test_storage_lists_and_reads_s3_through_boto3(monkeypatch):
    moto = pytest.importorskip("moto")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-3")
        s3.create_bucket(Bucket="orchard-logs", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        body = "".join(json.dumps(e) + "\n" for e in app_events())
        s3.put_object(Bucket="orchard-logs", Key="logs/eventlog_v2_local-1/events_1_local-1", Body=body.encode())
        s3.put_object(Bucket="orchard-logs", Key="logs/eventlog_v2_local-1/appstatus_local-1", Body=b"")
        storage = Storage()
        assert storage.list_names("s3://orchard-logs/logs") == ["eventlog_v2_local-1"]
        app = load_event_log("s3a://orchard-logs/logs/eventlog_v2_local-1", storage)
        assert app.tasks_per_executor() == {"driver": 4}


def test_jvm_is_only_started_when_needed(monkeypatch, tmp_path):
    """Plain logs are read in Python: no JVM (gateway) for them."""
    write_lines(tmp_path / "local-1", app_events())
    monkeypatch.setattr(gateway, "jvm", lambda: (_ for _ in ()).throw(AssertionError("JVM started")))
    assert load_event_log(str(tmp_path / "local-1")).app_id == "local-1"
