"""Spark event logs: where a run's log is, reading it (local, HDFS, S3; plain, compressed,
rolling) and parsing it into executors, jobs, stages and tasks.

Spark 3.5 writes one of two layouts under `spark.eventLog.dir`:

* a single file `<app_id>[_<attempt>][.<codec>]` (`.inprogress` appended while running);
* with `spark.eventLog.rolling.enabled=true`, a folder `eventlog_v2_<app_id>[_<attempt>]/`
  holding `events_<N>_<app_id>[.<codec>]` parts (read in order of N) and an `appstatus_` marker.

Compressed parts (`spark.eventLog.compress=true`) end in the codec's short name: `zstd`
(Spark's default), `lz4`, `lzf` or `snappy`. zstd is read in Python when the `zstandard`
package is installed; every codec can be read through Spark's own codecs in a JVM (pyspark
is a dependency anyway), which is the fallback.
"""
from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.names import STAGE_PROPERTY
from orchard.spark import gateway
from orchard.spark.eventlog import ROLLING_PART_PREFIX, ROLLING_PREFIX, sanitize_app_name
from orchard.storage.fs import Storage, join

log = logging.getLogger(__name__)

IN_PROGRESS = ".inprogress"
CODECS = ("zstd", "lz4", "lzf", "snappy")


# --------------------------------------------------------------------------- finding


@dataclass
class LogLocation:
    """One application's event log: its files, in the order Spark wrote them."""

    path: str  # the file, or the rolling folder
    files: List[str]
    rolling: bool
    in_progress: bool


def _codec_of(name: str) -> Optional[str]:
    base = name[: -len(IN_PROGRESS)] if name.endswith(IN_PROGRESS) else name
    suffix = base.rsplit(".", 1)[-1] if "." in base else ""
    return suffix if suffix in CODECS else None


def _part_index(name: str) -> int:
    match = re.match(rf"{ROLLING_PART_PREFIX}(\d+)_", name)
    return int(match.group(1)) if match else -1


def locate(uri: str, storage: Optional[Storage] = None) -> LogLocation:
    """The event log at `uri`: a single log file, or a rolling `eventlog_v2_*` folder.

    A finished log that is not there is looked for with `.inprogress` (an app that did not end).
    """
    storage = storage or Storage()
    uri = uri.rstrip("/")
    name = uri.rsplit("/", 1)[-1]
    if storage.is_dir(uri):
        names = [n for n in storage.list_names(uri) if not n.startswith(".")]
        parts = sorted((n for n in names if n.startswith(ROLLING_PART_PREFIX)), key=_part_index)
        if not parts:
            raise OrchardError(
                f"{uri} is a folder but not a rolling event log (no {ROLLING_PART_PREFIX}N_* files); "
                "give a run's output folder, an event log file or an eventlog_v2_* folder"
            )
        in_progress = any(n.startswith("appstatus_") and n.endswith(IN_PROGRESS) for n in names)
        return LogLocation(uri, [join(uri, p) for p in parts], True, in_progress)
    if storage.exists(uri):
        return LogLocation(uri, [uri], False, name.endswith(IN_PROGRESS))
    if storage.exists(uri + IN_PROGRESS):
        return LogLocation(uri + IN_PROGRESS, [uri + IN_PROGRESS], False, True)
    raise OrchardError(f"event log not found: {uri}")


def find_in_dir(log_dir: str, app_id: str, storage: Optional[Storage] = None) -> LogLocation:
    """The event log of `app_id` in Spark's event log folder, whatever its format."""
    storage = storage or Storage()
    if not storage.exists(log_dir):
        raise OrchardError(f"event log folder not found: {log_dir}")
    base = sanitize_app_name(app_id)
    candidates = [
        n for n in storage.list_names(log_dir)
        if n == base or n.startswith(base + ".") or n.startswith(base + "_")
        or n.startswith(ROLLING_PREFIX + base)
    ]
    if not candidates:
        raise OrchardError(f"no event log for application {app_id} in {log_dir}")
    # prefer a finished log, then the last attempt
    candidates.sort(key=lambda n: (n.endswith(IN_PROGRESS), n), reverse=False)
    finished = [n for n in candidates if not n.endswith(IN_PROGRESS)]
    return locate(join(log_dir, (finished or candidates)[-1]), storage)


# --------------------------------------------------------------------------- reading


def _decompress_python(codec: str, raw) -> Optional[Iterable[bytes]]:
    if codec == "zstd":
        try:
            import zstandard
        except ImportError:
            return None
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader)
    return None


def decompress_with_spark(codec: str, data: bytes) -> bytes:
    """Decompress `data` written by Spark's `codec` (zstd, lz4, lzf, snappy) with Spark itself."""
    machine = gateway.jvm()
    conf = machine.org.apache.spark.SparkConf(False)
    spark_codec = machine.org.apache.spark.io.CompressionCodec.createCodec(conf, codec)
    stream = spark_codec.compressedInputStream(machine.java.io.ByteArrayInputStream(bytearray(data)))
    try:
        return bytes(stream.readAllBytes())
    finally:
        stream.close()


def _lines_of_file(uri: str, storage: Storage, force_jvm: bool = False) -> Iterator[bytes]:
    codec = _codec_of(uri.rsplit("/", 1)[-1])
    if codec is None:
        with storage.open(uri) as raw:
            yield from raw
        return
    if not force_jvm:
        with storage.open(uri) as raw:
            reader = _decompress_python(codec, raw)
            if reader is not None:
                try:
                    yield from reader
                except Exception as error:  # e.g. a truncated .inprogress frame
                    log.warning("stopped reading %s: %s", uri, error)
                return
    text = decompress_with_spark(codec, storage.read_bytes(uri))
    yield from io.BytesIO(text)


def read_events(location: LogLocation, storage: Optional[Storage] = None,
                force_jvm: bool = False) -> Iterator[Dict[str, Any]]:
    """Every event (a dict) of the log, in order; a torn last line of a live log is skipped."""
    storage = storage or Storage()
    for uri in location.files:
        for number, line in enumerate(_lines_of_file(uri, storage, force_jvm), 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:
                if location.in_progress:
                    log.warning("%s: line %d is incomplete (the application is still running?)", uri, number)
                    continue
                raise OrchardError(f"{uri}: line {number} is not JSON; is this a Spark event log?") from None


# --------------------------------------------------------------------------- model


@dataclass
class Executor:
    id: str
    host: str
    cores: int
    added_ms: int
    removed_ms: Optional[int] = None
    removed_reason: Optional[str] = None


@dataclass
class Task:
    task_id: int
    stage_id: int
    stage_attempt: int
    index: int
    attempt: int
    executor: str
    host: str
    launch_ms: int
    finish_ms: int
    failed: bool = False
    killed: bool = False
    speculative: bool = False
    end_reason: str = "Success"
    failure: str = ""  # why it failed, e.g. "executor 1 lost: Command exited with code 137"
    run_ms: int = 0
    cpu_ms: float = 0.0
    deserialize_ms: int = 0
    gc_ms: int = 0
    result_serialize_ms: int = 0
    input_bytes: int = 0
    input_records: int = 0
    output_bytes: int = 0
    output_records: int = 0
    shuffle_read_bytes: int = 0
    shuffle_read_records: int = 0
    shuffle_write_bytes: int = 0
    shuffle_write_records: int = 0
    spilled_bytes: int = 0

    @property
    def duration_ms(self) -> int:
        return max(0, self.finish_ms - self.launch_ms)

    @property
    def records(self) -> int:
        """Records the task consumed: read from files, else from the shuffle."""
        return self.input_records or self.shuffle_read_records

    @property
    def bytes_in(self) -> int:
        return self.input_bytes or self.shuffle_read_bytes


@dataclass
class Stage:
    stage_id: int
    attempt: int
    name: str
    n_tasks: int
    submitted_ms: Optional[int] = None
    completed_ms: Optional[int] = None
    failure: Optional[str] = None
    job_id: Optional[int] = None
    scopes: List[str] = field(default_factory=list)
    properties: Dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Tuple[int, int]:
        return (self.stage_id, self.attempt)


@dataclass
class Job:
    job_id: int
    submitted_ms: int
    stage_ids: List[int]
    completed_ms: Optional[int] = None
    result: Optional[str] = None
    description: Optional[str] = None
    call_site: Optional[str] = None
    orchard_stage: Optional[str] = None


@dataclass
class EventLog:
    """An application's event log, parsed."""

    source: str
    files: List[str]
    rolling: bool = False
    in_progress: bool = False
    spark_version: Optional[str] = None
    app_id: Optional[str] = None
    app_name: Optional[str] = None
    attempt_id: Optional[str] = None
    start_ms: Optional[int] = None
    end_ms: Optional[int] = None
    spark_conf: Dict[str, str] = field(default_factory=dict)
    executors: Dict[str, Executor] = field(default_factory=dict)
    jobs: Dict[int, Job] = field(default_factory=dict)
    stages: Dict[Tuple[int, int], Stage] = field(default_factory=dict)
    tasks: List[Task] = field(default_factory=list)
    unknown_events: Dict[str, int] = field(default_factory=dict)

    @property
    def task_cpus(self) -> int:
        try:
            return max(1, int(float(self.spark_conf.get("spark.task.cpus", "1"))))
        except ValueError:
            return 1

    @property
    def last_ms(self) -> int:
        """The end of the application (or its last event seen, if it did not end)."""
        candidates = [self.end_ms or 0, self.start_ms or 0]
        candidates += [t.finish_ms for t in self.tasks]
        candidates += [s.completed_ms or 0 for s in self.stages.values()]
        return max(candidates)

    def tasks_per_executor(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for task in self.tasks:
            counts[task.executor] = counts.get(task.executor, 0) + 1
        return counts

    def jobs_span_s(self, orchard_stage: str) -> Optional[float]:
        """Seconds from the first submission to the last end of the jobs tagged `orchard_stage`
        (local property orchard.stage), or None when none ended: the stage as the cluster saw
        it, without the driver's work before its first job."""
        jobs = [job for job in self.jobs.values() if job.orchard_stage == orchard_stage and job.completed_ms]
        if not jobs:
            return None
        return (max(job.completed_ms for job in jobs) - min(job.submitted_ms for job in jobs)) / 1000.0

    def job_of_stage(self, stage_id: int) -> Optional[Job]:
        for job in self.jobs.values():
            if stage_id in job.stage_ids:
                return job
        return None


def _scopes(stage_info: Dict[str, Any]) -> List[str]:
    names = set()
    for rdd in stage_info.get("RDD Info", []) or []:
        scope = rdd.get("Scope")
        try:
            names.add(json.loads(scope)["name"].strip() if scope else rdd.get("Name", ""))
        except (ValueError, KeyError, TypeError):
            names.add(rdd.get("Name", ""))
    return sorted(n for n in names if n)


def _failure_text(end: Dict[str, Any]) -> str:
    """A task's failure in a few words from its "Task End Reason" ("" when it succeeded)."""
    reason = str(end.get("Reason", "Success"))
    if reason == "Success":
        return ""
    if reason == "ExecutorLostFailure":
        return f"executor {end.get('Executor ID', '?')} lost: {end.get('Loss Reason') or 'no reason given'}"
    detail = end.get("Description") or end.get("Kill Reason") or end.get("Class Name") or ""
    return f"{reason}: {str(detail).splitlines()[0][:200]}" if detail else reason


def _task_from(event: Dict[str, Any]) -> Task:
    info = event["Task Info"]
    metrics = event.get("Task Metrics") or {}
    inputs = metrics.get("Input Metrics") or {}
    outputs = metrics.get("Output Metrics") or {}
    shuffle_read = metrics.get("Shuffle Read Metrics") or {}
    shuffle_write = metrics.get("Shuffle Write Metrics") or {}
    end = event.get("Task End Reason") or {}
    reason = end.get("Reason", "Success")
    return Task(
        task_id=int(info["Task ID"]),
        stage_id=int(event["Stage ID"]),
        stage_attempt=int(event.get("Stage Attempt ID", 0)),
        index=int(info.get("Index", 0)),
        attempt=int(info.get("Attempt", 0)),
        executor=str(info["Executor ID"]),
        host=str(info.get("Host", "")),
        launch_ms=int(info["Launch Time"]),
        finish_ms=int(info.get("Finish Time") or info["Launch Time"]),
        failed=bool(info.get("Failed", False)),
        killed=bool(info.get("Killed", False)),
        speculative=bool(info.get("Speculative", False)),
        end_reason=str(reason),
        failure=_failure_text(end),
        run_ms=int(metrics.get("Executor Run Time", 0)),
        cpu_ms=int(metrics.get("Executor CPU Time", 0)) / 1e6,
        deserialize_ms=int(metrics.get("Executor Deserialize Time", 0)),
        gc_ms=int(metrics.get("JVM GC Time", 0)),
        result_serialize_ms=int(metrics.get("Result Serialization Time", 0)),
        input_bytes=int(inputs.get("Bytes Read", 0)),
        input_records=int(inputs.get("Records Read", 0)),
        output_bytes=int(outputs.get("Bytes Written", 0)),
        output_records=int(outputs.get("Records Written", 0)),
        shuffle_read_bytes=int(shuffle_read.get("Remote Bytes Read", 0)) + int(shuffle_read.get("Local Bytes Read", 0)),
        shuffle_read_records=int(shuffle_read.get("Total Records Read", 0)),
        shuffle_write_bytes=int(shuffle_write.get("Shuffle Bytes Written", 0)),
        shuffle_write_records=int(shuffle_write.get("Shuffle Records Written", 0)),
        spilled_bytes=int(metrics.get("Memory Bytes Spilled", 0)) + int(metrics.get("Disk Bytes Spilled", 0)),
    )


def _stage_from(info: Dict[str, Any], stage: Optional[Stage]) -> Stage:
    key = (int(info["Stage ID"]), int(info.get("Stage Attempt ID", 0)))
    if stage is None:
        stage = Stage(stage_id=key[0], attempt=key[1], name=str(info.get("Stage Name", "")),
                      n_tasks=int(info.get("Number of Tasks", 0)))
    stage.submitted_ms = info.get("Submission Time") or stage.submitted_ms
    stage.completed_ms = info.get("Completion Time") or stage.completed_ms
    stage.failure = info.get("Failure Reason") or stage.failure
    scopes = _scopes(info)
    if scopes:
        stage.scopes = scopes
    return stage


def parse_events(events: Iterable[Dict[str, Any]], location: LogLocation) -> EventLog:
    """Build an EventLog from the events of one application."""
    app = EventLog(source=location.path, files=list(location.files), rolling=location.rolling,
                   in_progress=location.in_progress)
    for event in events:
        kind = event.get("Event", "")
        if kind == "SparkListenerTaskEnd":
            app.tasks.append(_task_from(event))
        elif kind == "SparkListenerStageSubmitted":
            info = event["Stage Info"]
            key = (int(info["Stage ID"]), int(info.get("Stage Attempt ID", 0)))
            stage = _stage_from(info, app.stages.get(key))
            stage.properties = {k: v for k, v in (event.get("Properties") or {}).items()
                                if k in (STAGE_PROPERTY, "spark.job.description", "callSite.short")}
            app.stages[key] = stage
        elif kind == "SparkListenerStageCompleted":
            info = event["Stage Info"]
            key = (int(info["Stage ID"]), int(info.get("Stage Attempt ID", 0)))
            app.stages[key] = _stage_from(info, app.stages.get(key))
        elif kind == "SparkListenerJobStart":
            properties = event.get("Properties") or {}
            job = Job(
                job_id=int(event["Job ID"]),
                submitted_ms=int(event.get("Submission Time", 0)),
                stage_ids=[int(s) for s in event.get("Stage IDs", [])],
                description=properties.get("spark.job.description"),
                call_site=properties.get("callSite.short"),
                orchard_stage=properties.get(STAGE_PROPERTY),
            )
            app.jobs[job.job_id] = job
        elif kind == "SparkListenerJobEnd":
            job = app.jobs.get(int(event["Job ID"]))
            if job:
                job.completed_ms = event.get("Completion Time")
                job.result = (event.get("Job Result") or {}).get("Result")
        elif kind == "SparkListenerExecutorAdded":
            info = event.get("Executor Info") or {}
            executor_id = str(event["Executor ID"])
            app.executors[executor_id] = Executor(
                id=executor_id, host=str(info.get("Host", "")), cores=int(info.get("Total Cores", 1)),
                added_ms=int(event.get("Timestamp", 0)),
            )
        elif kind == "SparkListenerExecutorRemoved":
            executor = app.executors.get(str(event["Executor ID"]))
            if executor:
                executor.removed_ms = event.get("Timestamp")
                executor.removed_reason = event.get("Removed Reason")
        elif kind == "SparkListenerApplicationStart":
            app.app_id = event.get("App ID")
            app.app_name = event.get("App Name")
            app.attempt_id = event.get("App Attempt ID")
            app.start_ms = event.get("Timestamp")
        elif kind == "SparkListenerApplicationEnd":
            app.end_ms = event.get("Timestamp")
        elif kind == "SparkListenerEnvironmentUpdate":
            properties = event.get("Spark Properties") or {}
            pairs = properties.items() if isinstance(properties, dict) else properties
            app.spark_conf.update({str(k): str(v) for k, v in pairs})
        elif kind == "SparkListenerLogStart":
            app.spark_version = event.get("Spark Version")
        else:
            app.unknown_events[kind] = app.unknown_events.get(kind, 0) + 1
    for job in app.jobs.values():
        for stage in app.stages.values():
            if stage.stage_id in job.stage_ids and stage.job_id is None:
                stage.job_id = job.job_id
    if app.start_ms is None and not app.tasks:
        raise OrchardError(f"{location.path}: no application events; is this a Spark event log?")
    return app


def load_event_log(uri: str, storage: Optional[Storage] = None, force_jvm: bool = False) -> EventLog:
    """Parse the event log at `uri` (a file, `.inprogress` file, or rolling folder)."""
    storage = storage or Storage()
    location = locate(uri, storage)
    return parse_events(read_events(location, storage, force_jvm), location)



def resolve_run(uri: str, storage: Optional[Storage] = None) -> Tuple[LogLocation, Optional[Dict[str, Any]]]:
    """A run's output folder (with run.json) or an event log path -> (log location, run record).

    run.json names the exact log (`spark.event_log`); records written before that key existed
    give the folder and the application id, and the log is looked up there.
    """
    storage = storage or Storage()
    uri = uri.rstrip("/") or "/"
    record_uri = join(uri, "run.json")
    if storage.is_dir(uri) and storage.exists(record_uri):
        record = json.loads(storage.read_bytes(record_uri).decode("utf-8"))
        spark = record.get("spark") or {}
        exact = spark.get("event_log")
        if exact:
            try:
                return locate(exact, storage), record
            except OrchardError:
                log.warning("the event log named in run.json is not at %s; looking in its folder", exact)
        log_dir, app_id = spark.get("event_log_dir"), spark.get("app_id")
        if not log_dir:
            raise OrchardError(
                f"{record_uri} records no event log (the run had spark.eventLog.enabled=false); "
                "run again, or pass the event log path"
            )
        return find_in_dir(log_dir, app_id, storage), record
    return locate(uri, storage), None
