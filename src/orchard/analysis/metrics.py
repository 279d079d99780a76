"""What a run's event log says: stage and task statistics, skew, executor utilisation, idle
gaps, start-up, the time split by phase, and a verdict on what limited the run.

Times are seconds from `t0`: the start of the pipeline when run.json gives it (so Spark's own
start-up shows), else the application's start in the event log.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from orchard.analysis.eventlog import EventLog, Stage, Task
from orchard.names import (
    STAGE_FEATURIZE, STAGE_LIST, STAGE_MODEL, STAGE_PCA_FIT, STAGE_PROPERTY, STAGE_QUANTIZE, STAGE_RECONCILE,
    STAGE_SPARK_START,
    STAGE_WRITE_ERRORS, STAGE_WRITE_FEATURES, STAGE_WRITE_MODEL,
)

# Parts of a run the analysis reports; every Spark stage falls in one.
PHASES = ("startup", "list", "read", "featurize", "reconcile", "pca", "write", "other")
# The phase of each stage of `orchard run` (orchard.names.STAGES), by the tag on its Spark jobs.
PHASE_OF_ORCHARD_STAGE = {
    STAGE_MODEL: "startup", STAGE_SPARK_START: "startup", STAGE_LIST: "list", STAGE_QUANTIZE: "startup",
    STAGE_FEATURIZE: "featurize",
    STAGE_RECONCILE: "reconcile", STAGE_PCA_FIT: "pca", STAGE_WRITE_FEATURES: "write",
    STAGE_WRITE_ERRORS: "write", STAGE_WRITE_MODEL: "write",
}
# Stages of `orchard run` that handle every image: their images/s is reported.
PER_IMAGE_STAGES = (STAGE_LIST, STAGE_FEATURIZE, STAGE_PCA_FIT, STAGE_WRITE_FEATURES)
MIN_GAP_S = 0.5  # idle gaps shorter than this are scheduling noise
SKEW_MIN_TASK_S = 1.0  # skew of stages whose longest task is shorter is not worth a verdict


def _median(values: List[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _spread(values: List[float]) -> Dict[str, float]:
    return {"min": min(values) if values else 0, "median": _median(values),
            "max": max(values) if values else 0}


@dataclass
class StageStats:
    stage_id: int
    attempt: int
    name: str
    phase: str
    job_id: Optional[int]
    orchard_stage: Optional[str]
    n_tasks: int
    failed_tasks: int
    start_s: float
    end_s: float
    duration_s: float
    busy_core_s: float
    task_s: List[float] = field(repr=False)
    median_task_s: float = 0.0
    p90_task_s: float = 0.0
    max_task_s: float = 0.0
    skew: float = 1.0  # max / median task time
    records: int = 0
    records_per_task: Dict[str, float] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_per_task: Dict[str, float] = field(default_factory=dict)
    input_bytes: int = 0
    output_bytes: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_bytes: int = 0
    spilled_bytes: int = 0
    records_per_s: float = 0.0
    cores: int = 0  # cores available during the stage
    idle_core_s: float = 0.0  # cores x duration - busy: cores without a task of this stage
    waves: float = 0.0  # tasks / cores
    tail_idle_core_s: float = 0.0  # cores that finished their last task before the stage's last task
    first_wave_median_s: float = 0.0  # the first task on each core (Python worker start, model load)
    later_median_s: float = 0.0  # the other tasks

    @property
    def label(self) -> str:
        attempt = f".{self.attempt}" if self.attempt else ""
        return f"{self.stage_id}{attempt} {self.phase}"


@dataclass
class ExecutorStats:
    id: str
    host: str
    cores: int
    start_s: float
    end_s: float
    tasks: int
    failed_tasks: int
    busy_core_s: float
    available_core_s: float
    utilisation: float
    first_task_s: Optional[float]
    wait_for_first_task_s: Optional[float]  # from registering to its first task
    idle_gaps: List[Tuple[float, float]] = field(default_factory=list)  # no task at all, >= MIN_GAP_S


@dataclass
class Gap:
    start_s: float
    end_s: float
    during: str

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Finding:
    """One thing that limited the run, with the seconds it cost (for ranking)."""

    key: str
    seconds: float
    text: str


@dataclass
class Analysis:
    app_id: Optional[str]
    app_name: Optional[str]
    spark_version: Optional[str]
    master: Optional[str]
    source: str
    log_format: str
    t0_label: str
    app_start_s: float
    app_end_s: float
    wall_s: float
    images: Optional[int]
    partitions: Optional[int]
    total_cores: int
    task_cpus: int
    n_tasks: int
    n_failed_tasks: int
    stages: List[StageStats]
    executors: List[ExecutorStats]
    busy_core_s: float
    available_core_s: float
    utilisation: float
    utilisation_app: float  # busy / (peak cores x app duration): counts executor start-up too
    gaps: List[Gap]
    startup: Dict[str, Optional[float]]
    stage_windows: List[Tuple[str, float, float]]  # orchard stages: (name, start_s, end_s)
    wall_by_stage: Dict[str, float]
    jobs_s_by_stage: Dict[str, float]  # orchard stage -> its Spark jobs' span (EventLog.jobs_span_s)
    core_s_by_phase: Dict[str, float]
    time_split: List[Tuple[str, float, str]]  # (part, seconds, unit/how measured)
    images_per_s: Dict[str, float]
    main_stage: Optional[StageStats]
    findings: List[Finding]
    verdict: str
    tasks: List[Task] = field(repr=False, default_factory=list)
    slots: Dict[int, Tuple[str, int]] = field(repr=False, default_factory=dict)  # task id -> (executor, lane)
    t0_ms: int = 0

    def summary(self) -> Dict[str, Any]:
        """Plain-JSON digest (what `orchard report --json` prints)."""
        main = self.main_stage
        return {
            "app_id": self.app_id,
            "source": self.source,
            "log_format": self.log_format,
            "master": self.master,
            "wall_s": round(self.wall_s, 2),
            "images": self.images,
            "partitions": self.partitions,
            "total_cores": self.total_cores,
            "tasks": self.n_tasks,
            "failed_tasks": self.n_failed_tasks,
            "tasks_per_executor": {e.id: e.tasks for e in self.executors},
            "utilisation": round(self.utilisation, 4),
            "utilisation_app": round(self.utilisation_app, 4),
            "busy_core_s": round(self.busy_core_s, 2),
            "available_core_s": round(self.available_core_s, 2),
            "startup": {k: (round(v, 2) if v is not None else None) for k, v in self.startup.items()},
            "idle_gaps": [{"start_s": round(g.start_s, 2), "seconds": round(g.seconds, 2), "during": g.during}
                          for g in self.gaps],
            "main_stage": None if main is None else {
                "stage_id": main.stage_id, "phase": main.phase, "tasks": main.n_tasks,
                "duration_s": round(main.duration_s, 2), "median_task_s": round(main.median_task_s, 3),
                "max_task_s": round(main.max_task_s, 3), "skew": round(main.skew, 3),
                "tail_idle_core_s": round(main.tail_idle_core_s, 2),
                "first_wave_median_s": round(main.first_wave_median_s, 3),
                "later_median_s": round(main.later_median_s, 3),
                "records_per_task": main.records_per_task,
            },
            "stages": [{"stage_id": s.stage_id, "attempt": s.attempt, "phase": s.phase, "name": s.name,
                        "tasks": s.n_tasks, "duration_s": round(s.duration_s, 3),
                        "median_task_s": round(s.median_task_s, 3), "max_task_s": round(s.max_task_s, 3),
                        "skew": round(s.skew, 3), "records": s.records,
                        "records_per_s": round(s.records_per_s, 1)} for s in self.stages],
            "wall_by_stage": self.wall_by_stage,
            "jobs_s_by_stage": self.jobs_s_by_stage,
            "time_split": [{"part": p, "seconds": round(v, 2), "measured": how} for p, v, how in self.time_split],
            "images_per_s": {k: round(v, 1) for k, v in self.images_per_s.items()},
            "verdict": self.verdict,
            "findings": [asdict(f) for f in self.findings],
        }


# --------------------------------------------------------------------------- phases


def reads_files(tasks: List[Task]) -> bool:
    return any(t.input_bytes > 0 for t in tasks)


def stage_phase(stage: Stage, tag: Optional[str], tasks: List[Task], featurize_seen: bool) -> str:
    """Which part of the pipeline a Spark stage belongs to.

    orchard tags its jobs with the pipeline stage (local property `orchard.stage`); within
    `featurize`, the stage that scans the image files is `read`. Untagged logs (older runs,
    other apps) are classified from Spark's operator names.
    """
    scan = any(s.startswith("Scan") or s == "FileScanRDD" for s in stage.scopes) and reads_files(tasks)
    if tag:
        phase = PHASE_OF_ORCHARD_STAGE.get(tag, "other")
        return "read" if phase == "featurize" and scan else phase
    if scan:
        return "read"
    if any(s in ("WriteFiles", "saveAsTextFile", "Execute InsertIntoHadoopFsRelationCommand")
           for s in stage.scopes) or any(t.output_bytes > 0 for t in tasks):
        return "write"
    if re.search(r"PCA|RowMatrix|Statistics", stage.name):
        return "pca"
    if "MapInPandas" in stage.scopes and not featurize_seen:
        return "featurize"
    return "other"


# --------------------------------------------------------------------------- helpers


def assign_slots(tasks: List[Task], cores: Optional[Dict[str, int]] = None) -> Dict[int, Tuple[str, int]]:
    """Lane (core) of every task on its executor, for the Gantt chart: the first free lane at
    launch, else (the driver logs a finish a few ms after the core is free again) the lane
    that frees first, so an executor never shows more lanes than it has cores."""
    lanes: Dict[int, Tuple[str, int]] = {}
    free_at: Dict[str, List[int]] = {}
    for task in sorted(tasks, key=lambda t: (t.launch_ms, t.task_id)):
        ends = free_at.setdefault(task.executor, [])
        limit = (cores or {}).get(task.executor)
        free = [lane for lane, end in enumerate(ends) if end <= task.launch_ms]
        if free:
            lane = free[0]
        elif limit is not None and len(ends) >= limit:
            lane = min(range(len(ends)), key=lambda i: ends[i])
        else:
            ends.append(0)
            lane = len(ends) - 1
        ends[lane] = max(ends[lane], task.finish_ms)
        lanes[task.task_id] = (task.executor, lane)
    return lanes


def merge_intervals(intervals: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    merged: List[Tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps_between(busy: List[Tuple[float, float]], start: float, end: float,
                 minimum: float = MIN_GAP_S) -> List[Tuple[float, float]]:
    """Intervals within [start, end] not covered by `busy`, at least `minimum` long."""
    gaps, cursor = [], start
    for low, high in merge_intervals(busy):
        if low - cursor >= minimum:
            gaps.append((cursor, low))
        cursor = max(cursor, high)
    if end - cursor >= minimum:
        gaps.append((cursor, end))
    return gaps


def concurrency(tasks: List[Task], t0_ms: int, task_cpus: int = 1,
                cores: Optional[Dict[str, int]] = None) -> List[Tuple[float, int]]:
    """Step function (time s, busy cores from then on) over all executors, each executor's
    count capped at its cores (a finish is logged a few ms after the core frees)."""
    deltas: Dict[str, Dict[float, int]] = {}
    for task in tasks:
        mine = deltas.setdefault(task.executor, {})
        start, end = (task.launch_ms - t0_ms) / 1000, (task.finish_ms - t0_ms) / 1000
        mine[start] = mine.get(start, 0) + task_cpus
        mine[end] = mine.get(end, 0) - task_cpus
    times = sorted({time for mine in deltas.values() for time in mine})
    levels = {executor: 0 for executor in deltas}
    steps = []
    for time in times:
        for executor, mine in deltas.items():
            levels[executor] += mine.get(time, 0)
        steps.append((time, sum(min(level, (cores or {}).get(executor, level)) for executor, level in levels.items())))
    return steps


def available_cores(executors: List[ExecutorStats]) -> List[Tuple[float, int]]:
    """Step function (time s, cores of the executors alive from then on)."""
    deltas: Dict[float, int] = {}
    for executor in executors:
        deltas[executor.start_s] = deltas.get(executor.start_s, 0) + executor.cores
        deltas[executor.end_s] = deltas.get(executor.end_s, 0) - executor.cores
    steps, level = [], 0
    for time in sorted(deltas):
        level += deltas[time]
        steps.append((time, level))
    return steps


def _cores_at(steps: List[Tuple[float, int]], time: float) -> int:
    level = 0
    for when, cores in steps:
        if when > time:
            break
        level = cores
    return level


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class _Clock:
    """Seconds from `t0_ms` (the run's origin) of a time in epoch milliseconds; None is t0."""

    t0_ms: int

    def s(self, ms: Optional[float]) -> float:
        return ((ms if ms is not None else self.t0_ms) - self.t0_ms) / 1000.0


def time_origin(app: EventLog, record: Dict[str, Any]) -> Tuple[int, str]:
    """(t0 in epoch ms, what it is): the pipeline's start when run.json gives it, else the
    application's start."""
    started_at = record.get("stage_started_at") or {}
    if started_at:
        return int(min(started_at.values()) * 1000), "pipeline start"
    return _app_start_ms(app), "application start"


def _app_start_ms(app: EventLog) -> int:
    return app.start_ms or min((t.launch_ms for t in app.tasks), default=0)


def executor_stats(app: EventLog, tasks: List[Task], clock: _Clock) -> List[ExecutorStats]:
    """One row per executor, driver first; the driver counts only in local mode, where it runs
    the tasks. Times in seconds from t0, busy/available in core-seconds."""
    rows: List[ExecutorStats] = []
    runs_tasks = {t.executor for t in tasks}
    app_start_ms, end_ms = _app_start_ms(app), app.last_ms
    for executor in app.executors.values():
        if executor.id == "driver" and "driver" not in runs_tasks and len(app.executors) > 1:
            continue
        mine = [t for t in tasks if t.executor == executor.id]
        start = max(executor.added_ms, app_start_ms)
        end = min(executor.removed_ms or end_ms, end_ms)
        available = executor.cores * max(0.0, (end - start) / 1000)
        busy = sum(t.duration_ms for t in mine) / 1000 * app.task_cpus
        first = min((t.launch_ms for t in mine), default=None)
        intervals = [(clock.s(t.launch_ms), clock.s(t.finish_ms)) for t in mine]
        rows.append(ExecutorStats(
            id=executor.id, host=executor.host, cores=executor.cores,
            start_s=clock.s(start), end_s=clock.s(end), tasks=len(mine),
            failed_tasks=sum(1 for t in mine if t.failed), busy_core_s=busy,
            available_core_s=available, utilisation=busy / available if available else 0.0,
            first_task_s=clock.s(first) if first is not None else None,
            wait_for_first_task_s=(first - start) / 1000 if first is not None else None,
            idle_gaps=gaps_between(intervals, clock.s(start), clock.s(end)),
        ))
    rows.sort(key=lambda e: (e.id != "driver", int(e.id) if e.id.isdigit() else 0, e.id))
    return rows


def _lane_waits(tasks: List[Task], slots: Dict[int, Tuple[str, int]], task_cpus: int
                ) -> Tuple[float, List[float], List[float]]:
    """(core-seconds the lanes waited for the stage's last task, durations of the first task on
    each lane, durations of the later ones), for the tasks of one stage."""
    last_on_lane: Dict[Tuple[str, int], int] = {}
    first_on_lane: Dict[Tuple[str, int], Task] = {}
    for task in tasks:
        lane = slots[task.task_id]
        last_on_lane[lane] = max(last_on_lane.get(lane, 0), task.finish_ms)
        if lane not in first_on_lane or task.launch_ms < first_on_lane[lane].launch_ms:
            first_on_lane[lane] = task
    stage_end = max(t.finish_ms for t in tasks)
    tail = sum(stage_end - end for end in last_on_lane.values()) / 1000 * task_cpus
    first_ids = {t.task_id for t in first_on_lane.values()}
    first_wave = [t.duration_ms / 1000 for t in tasks if t.task_id in first_ids]
    later = [t.duration_ms / 1000 for t in tasks if t.task_id not in first_ids]
    return tail, first_wave, later


def _one_stage(app: EventLog, stage: Stage, mine: List[Task], phase: str, tag: Optional[str],
               slots: Dict[int, Tuple[str, int]], cores_steps: List[Tuple[float, int]], total_cores: int,
               clock: _Clock) -> StageStats:
    task_cpus = app.task_cpus
    start_ms = stage.submitted_ms or min(t.launch_ms for t in mine)
    finish_ms = stage.completed_ms or max(t.finish_ms for t in mine)
    durations = [t.duration_ms / 1000 for t in mine]
    # rows read from files or the shuffle; for cached data Spark counts cached batches: unknown
    counted = any(s.startswith("Scan") for s in stage.scopes) or any(t.shuffle_read_records for t in mine)
    records = [t.records if counted else 0 for t in mine]
    bytes_in = [t.bytes_in for t in mine]
    duration = max(1e-3, (finish_ms - start_ms) / 1000)
    busy = sum(durations) * task_cpus
    cores = _cores_at(cores_steps, clock.s(start_ms + 1)) or total_cores
    median = _median(durations)
    tail, first_wave, later = _lane_waits(mine, slots, task_cpus)
    return StageStats(
        stage_id=stage.stage_id, attempt=stage.attempt, name=stage.name, phase=phase,
        job_id=stage.job_id, orchard_stage=tag, n_tasks=len(mine),
        failed_tasks=sum(1 for t in mine if t.failed),
        start_s=clock.s(start_ms), end_s=clock.s(finish_ms), duration_s=duration, busy_core_s=busy,
        task_s=durations, median_task_s=median, p90_task_s=_percentile(durations, 0.9),
        max_task_s=max(durations), skew=max(durations) / median if median > 0 else 1.0,
        records=sum(records), records_per_task=_spread(records),
        bytes_in=sum(bytes_in), bytes_per_task=_spread(bytes_in),
        input_bytes=sum(t.input_bytes for t in mine), output_bytes=sum(t.output_bytes for t in mine),
        shuffle_read_bytes=sum(t.shuffle_read_bytes for t in mine),
        shuffle_write_bytes=sum(t.shuffle_write_bytes for t in mine),
        spilled_bytes=sum(t.spilled_bytes for t in mine),
        records_per_s=sum(records) / duration, cores=cores,
        idle_core_s=max(0.0, cores * duration - busy), waves=len(mine) * task_cpus / max(cores, 1),
        tail_idle_core_s=tail, first_wave_median_s=_median(first_wave), later_median_s=_median(later),
    )


def stage_stats(app: EventLog, tasks: List[Task], slots: Dict[int, Tuple[str, int]],
                cores_steps: List[Tuple[float, int]], total_cores: int, clock: _Clock) -> List[StageStats]:
    """One row per Spark stage that ran tasks, in submission order, with its pipeline phase."""
    by_stage: Dict[Tuple[int, int], List[Task]] = {}
    for task in tasks:
        by_stage.setdefault((task.stage_id, task.stage_attempt), []).append(task)
    rows: List[StageStats] = []
    featurize_seen = False
    for stage in sorted(app.stages.values(), key=lambda s: (s.submitted_ms or 0, s.stage_id, s.attempt)):
        mine = by_stage.get(stage.key, [])
        if not mine:
            continue
        job = app.jobs.get(stage.job_id) if stage.job_id is not None else None
        tag = stage.properties.get(STAGE_PROPERTY) or (job.orchard_stage if job else None)
        phase = stage_phase(stage, tag, mine, featurize_seen)
        featurize_seen = featurize_seen or phase == "featurize"
        rows.append(_one_stage(app, stage, mine, phase, tag, slots, cores_steps, total_cores, clock))
    return rows


def stage_windows(record: Dict[str, Any], clock: _Clock) -> List[Tuple[str, float, float]]:
    """(orchard stage, start s, end s) from run.json's stage_started_at and seconds."""
    started_at = record.get("stage_started_at") or {}
    seconds = record.get("seconds") or {}
    t0 = clock.t0_ms / 1000
    return [(name, started_at[name] - t0, started_at[name] - t0 + seconds.get(name, 0.0)) for name in started_at]


def _gap_context(app: EventLog, windows: List[Tuple[str, float, float]], clock: _Clock,
                 start: float, end: float) -> str:
    """What the driver was doing during an idle gap [start, end] (seconds from t0)."""
    middle = (start + end) / 2
    for name, low, high in windows:
        if low <= middle <= high:
            return name
    jobs_before = [j for j in app.jobs.values() if j.completed_ms and clock.s(j.completed_ms) <= start + 0.05]
    jobs_after = [j for j in app.jobs.values() if clock.s(j.submitted_ms) >= end - 0.05]
    if not jobs_before:
        return "before the first Spark job"
    if not jobs_after:
        return "after the last Spark job"
    return "between Spark jobs (driver-side work outside orchard's timed stages)"


def idle_gaps(app: EventLog, tasks: List[Task], windows: List[Tuple[str, float, float]],
              clock: _Clock) -> List[Gap]:
    """Times between the first and the last task when no executor ran any task."""
    busy = [(clock.s(t.launch_ms), clock.s(t.finish_ms)) for t in tasks]
    first = min((b[0] for b in busy), default=clock.s(app.last_ms))
    last = max((b[1] for b in busy), default=clock.s(app.last_ms))
    return [Gap(low, high, _gap_context(app, windows, clock, low, high))
            for low, high in gaps_between(busy, first, last)]


def startup_times(app: EventLog, tasks: List[Task], stages: List[StageStats], seconds: Dict[str, float],
                  clock: _Clock) -> Dict[str, Optional[float]]:
    """Seconds from t0 to each start-up milestone (driver, application, executors, first task,
    first task on images) and the driver's start and listing durations; None when unknown."""
    workers = [e for e in app.executors.values() if e.id != "driver"] or list(app.executors.values())
    first_executor_ms = min((e.added_ms for e in workers), default=None)
    image_stages = {(s.stage_id, s.attempt) for s in stages if s.phase in ("read", "featurize")}
    first_image_task = min((clock.s(t.launch_ms) for t in tasks if (t.stage_id, t.stage_attempt) in image_stages),
                           default=None)
    return {
        "driver_start_s": (seconds.get(STAGE_MODEL, 0.0) + seconds.get(STAGE_SPARK_START, 0.0)) if seconds else None,
        "app_start_s": clock.s(_app_start_ms(app)),
        "first_executor_s": clock.s(first_executor_ms) if first_executor_ms else None,
        "executors_ready_s": clock.s(max(e.added_ms for e in workers)) if workers else None,
        "first_task_s": min((clock.s(t.launch_ms) for t in tasks), default=clock.s(app.last_ms)),
        "first_image_task_s": first_image_task,
        "list_s": seconds.get(STAGE_LIST) if seconds else None,
    }


def core_seconds_by_phase(stages: List[StageStats]) -> Dict[str, float]:
    """Task core-seconds of each pipeline phase."""
    by_phase: Dict[str, float] = {}
    for stage in stages:
        by_phase[stage.phase] = by_phase.get(stage.phase, 0.0) + stage.busy_core_s
    return by_phase


def time_split_rows(wall_by_stage: Dict[str, float], core_s_by_phase: Dict[str, float], stages: List[StageStats],
               startup: Dict[str, Optional[float]], udf: Dict[str, float]) -> List[Tuple[str, float, str]]:
    """Where the time went: (part, seconds, unit and how it was measured), wall seconds for the
    driver's parts, task core-seconds for the executors' (split by the UDF's own timing)."""
    split: List[Tuple[str, float, str]] = []
    if wall_by_stage:
        split.append(("start-up (model + Spark)", startup["driver_start_s"] or 0.0, "wall s"))
        split.append(("list files (driver)", wall_by_stage.get(STAGE_LIST, 0.0), "wall s"))
    split.append(("read image files", core_s_by_phase.get("read", 0.0), "task core-s"))
    if udf:
        decode, inference = float(udf.get("decode", 0.0)), float(udf.get("inference", 0.0))
        split.append(("decode + resize (UDF)", decode, "task core-s, timed in the UDF"))
        split.append(("inference (UDF)", inference, "task core-s, timed in the UDF"))
        split.append(("featurize overhead (Arrow, Python workers, shuffle)",
                      max(0.0, core_s_by_phase.get("featurize", 0.0) - decode - inference), "task core-s"))
    else:
        split.append(("featurize (decode + inference)", core_s_by_phase.get("featurize", 0.0), "task core-s"))
    split.append(("reconcile (error rows)", core_s_by_phase.get("reconcile", 0.0), "task core-s"))
    split.append(("PCA", core_s_by_phase.get("pca", 0.0), "task core-s"))
    split.append(("write", core_s_by_phase.get("write", 0.0), "task core-s"))
    split.append(("other Spark jobs", core_s_by_phase.get("other", 0.0), "task core-s"))
    if wall_by_stage:
        split.append(("PCA on the driver (wall minus tasks)", max(
            0.0, wall_by_stage.get(STAGE_PCA_FIT, 0.0) - sum(s.duration_s for s in stages if s.phase == "pca")),
            "wall s"))
    return split


def images_per_second(images: Optional[int], seconds: Dict[str, float], stages: List[StageStats]
                      ) -> Dict[str, float]:
    """Images per second of the pipeline stages that handle every image, of the whole run and of
    the Spark stages that read or featurize them."""
    rates: Dict[str, float] = {}
    if images:
        for name in PER_IMAGE_STAGES:
            if seconds.get(name, 0.0) > 0:
                rates[name] = images / seconds[name]
        if seconds.get("total"):
            rates["whole run"] = images / seconds["total"]
    for stage in stages:
        if stage.phase in ("read", "featurize") and stage.records:
            rates[f"Spark stage {stage.stage_id} ({stage.phase})"] = stage.records_per_s
    return rates


def main_stage(stages: List[StageStats]) -> Optional[StageStats]:
    """The featurize stage with the most task time, else the stage with the most task time."""
    main = max((s for s in stages if s.phase == "featurize"), key=lambda s: s.busy_core_s, default=None)
    return main or max(stages, key=lambda s: s.busy_core_s, default=None)


def log_format(app: EventLog) -> str:
    """'rolling' or 'single file', compressed or not, in progress or not."""
    compressed = any(f.rsplit(".", 1)[-1] in ("zstd", "lz4", "lzf", "snappy") for f in app.files)
    return (("rolling" if app.rolling else "single file") + (", compressed" if compressed else "")
            + (", in progress" if app.in_progress else ""))


def jobs_s_by_stage(app: EventLog) -> Dict[str, float]:
    """{orchard stage: seconds from its first job's submission to its last job's end}."""
    spans = {name: app.jobs_span_s(name) for name in {job.orchard_stage for job in app.jobs.values()} if name}
    return {name: round(span, 3) for name, span in spans.items() if span is not None}


def analyse(app: EventLog, record: Optional[Dict[str, Any]] = None) -> Analysis:
    """Metrics and verdict for one application (`record`: its run.json, when known)."""
    record = record or {}
    t0_ms, t0_label = time_origin(app, record)
    clock = _Clock(t0_ms)
    app_start_ms, end_ms = _app_start_ms(app), app.last_ms
    task_cpus = app.task_cpus
    tasks = sorted(app.tasks, key=lambda t: (t.launch_ms, t.task_id))

    executors = executor_stats(app, tasks, clock)
    cores_steps = available_cores(executors)
    total_cores = max((level for _, level in cores_steps), default=0) or sum(e.cores for e in executors)
    slots = assign_slots(tasks, {e.id: max(1, e.cores // task_cpus) for e in executors})
    stages = stage_stats(app, tasks, slots, cores_steps, total_cores, clock)

    busy_total = sum(t.duration_ms for t in tasks) / 1000 * task_cpus
    available_total = sum(e.available_core_s for e in executors)
    app_seconds = max(1e-3, (end_ms - app_start_ms) / 1000)
    seconds = record.get("seconds") or {}
    windows = stage_windows(record, clock)
    startup = startup_times(app, tasks, stages, seconds, clock)
    wall_by_stage = {k: float(v) for k, v in seconds.items() if k != "total"}
    core_s_by_phase = core_seconds_by_phase(stages)
    images = (record.get("counts") or {}).get("images")

    analysis = Analysis(
        app_id=app.app_id, app_name=app.app_name, spark_version=app.spark_version,
        master=app.spark_conf.get("spark.master"), source=app.source, log_format=log_format(app),
        t0_label=t0_label, app_start_s=clock.s(app_start_ms), app_end_s=clock.s(end_ms),
        wall_s=float(seconds.get("total") or 0.0) or clock.s(end_ms) - min(0.0, clock.s(app_start_ms)),
        images=images, partitions=record.get("partitions"), total_cores=total_cores, task_cpus=task_cpus,
        n_tasks=len(tasks), n_failed_tasks=sum(1 for t in tasks if t.failed),
        stages=stages, executors=executors, busy_core_s=busy_total,
        available_core_s=available_total,
        utilisation=busy_total / available_total if available_total else 0.0,
        utilisation_app=busy_total / (max(total_cores, 1) * app_seconds),
        gaps=idle_gaps(app, tasks, windows, clock), startup=startup, stage_windows=windows,
        wall_by_stage=wall_by_stage, core_s_by_phase=core_s_by_phase,
        jobs_s_by_stage=jobs_s_by_stage(app),
        time_split=time_split_rows(wall_by_stage, core_s_by_phase, stages, startup, record.get("udf_seconds") or {}),
        images_per_s=images_per_second(images, seconds, stages),
        main_stage=main_stage(stages), findings=[], verdict="", tasks=tasks, slots=slots, t0_ms=t0_ms,
    )
    analysis.findings = diagnose(analysis, record)
    analysis.verdict = verdict_text(analysis)
    return analysis


# --------------------------------------------------------------------------- verdict


def diagnose(a: Analysis, record: Dict[str, Any]) -> List[Finding]:
    """What limited the run, each with the seconds of wall time it accounts for, largest first."""
    findings: List[Finding] = []
    wall = max(a.wall_s, 1e-3)
    main = a.main_stage

    # start-up: everything before the first task that touches images
    if a.startup.get("first_image_task_s") is not None:
        before = a.startup["first_image_task_s"] - min(0.0, a.app_start_s)
        parts = []
        if a.startup.get("driver_start_s"):
            parts.append(f"model + Spark start {a.startup['driver_start_s']:.1f} s")
        if a.startup.get("first_executor_s") is not None and a.startup["first_executor_s"] - a.app_start_s > 0.5:
            parts.append(f"executors registered {a.startup['first_executor_s'] - a.app_start_s:.1f} s "
                         "after the application started")
        if a.startup.get("list_s"):
            parts.append(f"listing {a.startup['list_s']:.1f} s")
        findings.append(Finding(
            "startup", before,
            f"start-up: {before:.1f} s ({before / wall:.0%} of the run) passed before the first image "
            f"was read ({'; '.join(parts) or 'Spark start and scheduling'}). This is a fixed cost: "
            "more workers do not shorten it, so small runs scale poorly."))

    # driver-side gaps while executors idle (between the first and last task)
    gap_total = sum(g.seconds for g in a.gaps)
    if gap_total > 0:
        biggest = max(a.gaps, key=lambda g: g.seconds)
        findings.append(Finding(
            "driver", gap_total,
            f"driver-side work: executors ran no task for {gap_total:.1f} s between the first and "
            f"last task ({len(a.gaps)} gaps; the longest {biggest.seconds:.1f} s during {biggest.during})."))

    if main is not None:
        cores = max(main.cores, 1)
        # too few partitions for the cores
        slots = main.n_tasks * a.task_cpus
        full_waves = math.ceil(slots / cores)
        fill = slots / (full_waves * cores) if full_waves else 1.0
        if slots < cores or fill < 0.75:
            lost = main.duration_s * (1 - fill) if slots >= cores else main.duration_s * (1 - slots / cores)
            findings.append(Finding(
                "partitions", lost,
                f"too few partitions: {main.phase} ran {main.n_tasks} tasks on {cores} cores "
                f"({main.waves:.2f} waves); the last wave leaves {(1 - fill):.0%} of the cores idle."))
        # a straggler: one long task at the end while the other cores wait for it
        warm_up = main.later_median_s > 0 and main.first_wave_median_s >= 1.5 * main.later_median_s
        tail_share = main.tail_idle_core_s / max(cores * main.duration_s, 1e-3)
        if main.skew >= 2.0 and main.max_task_s >= SKEW_MIN_TASK_S and tail_share >= 0.1:
            findings.append(Finding(
                "straggler", main.tail_idle_core_s / cores,
                f"a straggler partition: in stage {main.stage_id} ({main.phase}) the longest task took "
                f"{main.max_task_s:.1f} s against a median of {main.median_task_s:.1f} s "
                f"(skew {main.skew:.1f}); the other cores waited {main.tail_idle_core_s:.1f} core-s for the last task."))
        elif tail_share >= 0.15 and main.duration_s > 2:
            findings.append(Finding(
                "imbalance", main.tail_idle_core_s / cores,
                f"a long tail in stage {main.stage_id} ({main.phase}): cores finished early and waited "
                f"{main.tail_idle_core_s:.1f} core-s for the last tasks ({tail_share:.0%} of the stage's core-s; "
                f"skew {main.skew:.2f})."))
        if warm_up:
            extra = main.first_wave_median_s - main.later_median_s
            findings.append(Finding(
                "warmup", extra,
                f"warm-up: the first task on each core took {main.first_wave_median_s:.1f} s (median) against "
                f"{main.later_median_s:.1f} s for the later ones: a fresh Python worker imports its libraries, "
                f"loads the model and runs it once ({extra:.1f} s per core). Every core pays it in the same "
                f"first wave, so it inflates the skew (max/median {main.skew:.2f}) without unbalancing the cores "
                f"(tail {main.tail_idle_core_s:.1f} core-s); fewer, larger partitions amortise it."))

    # I/O and the model, measured by task time
    core_s = a.core_s_by_phase
    busy = max(a.busy_core_s, 1e-3)
    io = core_s.get("read", 0.0) + core_s.get("write", 0.0)
    cores = max(a.total_cores, 1)
    if io / busy > 0.25:
        findings.append(Finding(
            "io", io / cores,
            f"I/O: reading the images ({core_s.get('read', 0.0):.1f} core-s) and writing Parquet "
            f"({core_s.get('write', 0.0):.1f} core-s, which includes the PCA projection) took "
            f"{io / busy:.0%} of all task time."))
    udf = record.get("udf_seconds") or {}
    featurize_core_s = core_s.get("featurize", 0.0)
    if featurize_core_s:
        inference = float(udf.get("inference", 0.0))
        decode = float(udf.get("decode", 0.0))
        share = f"; inference is {inference / featurize_core_s:.0%} of it, decoding {decode / featurize_core_s:.0%}" \
            if udf else ""
        busy_pct = ""
        if main is not None and main.phase == "featurize":
            stage_util = main.busy_core_s / max(main.cores * main.duration_s, 1e-3)
            busy_pct = f" with the cores {stage_util:.0%} busy"
        findings.append(Finding(
            "model", featurize_core_s / cores,
            f"the model: featurizing took {featurize_core_s:.1f} core-s ({featurize_core_s / busy:.0%} of task "
            f"time){busy_pct}{share}. This part divides by the cores: more executors (or a lighter model) "
            "shorten it."))
    pca_wall = a.wall_by_stage.get(STAGE_PCA_FIT)
    if pca_wall and pca_wall / wall > 0.15:
        findings.append(Finding(
            "pca", pca_wall,
            f"PCA: {pca_wall:.1f} s ({pca_wall / wall:.0%} of the run), of which "
            f"{core_s.get('pca', 0.0):.1f} core-s in tasks; the rest is the driver's eigendecomposition "
            "and job scheduling (two fits: all components, then k)."))
    findings.sort(key=lambda f: -f.seconds)
    return findings


def verdict_text(a: Analysis) -> str:
    if not a.findings:
        return "No tasks ran: nothing to analyse."
    top = a.findings[0]
    names = {
        "startup": "start-up (a fixed cost)", "driver": "driver-side work while the executors waited",
        "partitions": "too few partitions for the cores", "straggler": "one straggler partition",
        "imbalance": "a long tail of tasks", "warmup": "per-worker warm-up (first wave)", "io": "I/O", "model": "the model (inference on the CPU)",
        "pca": "the PCA fit",
    }
    detail = top.text.split(": ", 1)[1] if ": " in top.text else top.text
    text = (f"This run ({a.wall_s:.1f} s, {a.images or 'unknown number of'} images, {a.total_cores} cores, "
            f"utilisation {a.utilisation:.0%}) was limited most by {names.get(top.key, top.key)}: {detail}")
    others = [names.get(f.key, f.key) for f in a.findings[1:3] if f.seconds > 0.05 * a.wall_s]
    if others:
        text += f" Next: {', '.join(others)}."
    main = a.main_stage
    if main is not None:
        text += (f" Skew (max/median task time) of the {main.phase} stage: {main.skew:.2f}; cores waiting "
                 f"on the last task: {main.tail_idle_core_s:.1f} core-s.")
    return text
