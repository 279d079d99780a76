"""Synthetic Spark event logs for the analysis tests: a minimal application of one executor (2
cores) and one job of one stage tagged `featurize`, tasks that end when and where asked."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from orchard.analysis.eventlog import EventLog, LogLocation, parse_events
from orchard.names import STAGE_FEATURIZE, STAGE_PROPERTY

APP_START_MS = 1_000_000


def app_events(app_id: str = "local-1", n_tasks: int = 4, stage: str = STAGE_FEATURIZE) -> List[Dict[str, Any]]:
    """A minimal application: one executor of 2 cores, one job of one stage tagged with the
    pipeline stage `stage`, `n_tasks` tasks of 1 s, two at a time."""
    start = APP_START_MS
    events: List[Dict[str, Any]] = [
        {"Event": "SparkListenerLogStart", "Spark Version": "3.5.9"},
        {"Event": "SparkListenerApplicationStart", "App Name": "t", "App ID": app_id, "Timestamp": start},
        {"Event": "SparkListenerExecutorAdded", "Timestamp": start, "Executor ID": "driver",
         "Executor Info": {"Host": "localhost", "Total Cores": 2}},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": start + 100, "Stage IDs": [0],
         "Properties": {STAGE_PROPERTY: stage}},
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {
            "Stage ID": 0, "Stage Attempt ID": 0, "Stage Name": "s", "Number of Tasks": n_tasks,
            "Submission Time": start + 100, "RDD Info": [{"Name": "x", "Scope": '{"id":"1","name":"MapInPandas"}'}]}},
    ]
    for i in range(n_tasks):
        events.append(task_end(i, start + 100 + 1000 * (i // 2), 1000, executor="driver", records=10))
    end = start + 100 + 1000 * ((n_tasks + 1) // 2)
    events += [
        {"Event": "SparkListenerStageCompleted", "Stage Info": {
            "Stage ID": 0, "Stage Attempt ID": 0, "Stage Name": "s", "Number of Tasks": n_tasks,
            "Submission Time": start + 100, "Completion Time": end}},
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": end, "Job Result": {"Result": "JobSucceeded"}},
        {"Event": "SparkListenerApplicationEnd", "Timestamp": end + 500},
    ]
    return events


def task_end(task_id: int, launch: int, duration: int, executor: str = "driver", stage: int = 0,
              records: int = 0) -> Dict[str, Any]:
    return {
        "Event": "SparkListenerTaskEnd", "Stage ID": stage, "Stage Attempt ID": 0, "Task Type": "ShuffleMapTask",
        "Task End Reason": {"Reason": "Success"},
        "Task Info": {"Task ID": task_id, "Index": task_id, "Attempt": 0, "Launch Time": launch,
                      "Executor ID": executor, "Host": "localhost", "Finish Time": launch + duration,
                      "Failed": False, "Killed": False, "Speculative": False},
        "Task Metrics": {"Executor Run Time": duration, "Executor CPU Time": duration * 10 ** 6,
                         "Shuffle Read Metrics": {"Total Records Read": records, "Local Bytes Read": records * 100},
                         "Input Metrics": {"Bytes Read": 0, "Records Read": 0},
                         "Output Metrics": {"Bytes Written": 0, "Records Written": 0}},
    }


def write_lines(path: Path, events: List[Dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def app_of(events: List[Dict[str, Any]]) -> EventLog:
    """The parsed application of these events (as if read from a file named "mem")."""
    return parse_events(events, LogLocation("mem", ["mem"], False, False))
