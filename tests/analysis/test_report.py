"""`orchard report` (orchard.analysis.report): loading a run, the document, summary.json, the command."""
from __future__ import annotations

import json
from pathlib import Path

from orchard.analysis.report import load, summary_text, task_failures, write_report
from orchard.cli import main
from orchard.names import RUN_RECORD, STAGE_FEATURIZE, STAGE_LIST, STAGE_PCA_FIT, STAGE_SPARK_START
from tests.analysis.events import app_events, task_end, write_lines


def test_report_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_lines(tmp_path / "local-1", app_events(n_tasks=6))
    now = 1_000.0
    (run / RUN_RECORD).write_text(json.dumps({
        "output": str(run), "input": "x", "counts": {"images": 60, "featurized": 60, "errors": 0}, "partitions": 6,
        "seconds": {STAGE_SPARK_START: 1.0, STAGE_LIST: 0.2, STAGE_FEATURIZE: 3.2, STAGE_PCA_FIT: 0.1, "total": 4.5},
        "stage_started_at": {STAGE_SPARK_START: now - 1.0, STAGE_LIST: now, STAGE_FEATURIZE: now + 0.2,
                             STAGE_PCA_FIT: now + 3.4},
        "udf_seconds": {"decode": 0.5, "inference": 4.5},
        "spark": {"app_id": "local-1", "event_log": str(tmp_path / "local-1")},
    }))
    analysis, record = load(str(run))
    assert analysis.images == 60 and analysis.t0_label == "pipeline start"
    assert any(part.startswith("inference") for part, _, _ in analysis.time_split)
    for fmt in ("md", "html"):
        report = write_report(analysis, record, tmp_path / fmt, fmt)
        assert len(report.figures) == 5
        for figure in report.figures:
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        text = report.document.read_text()
        assert "Verdict" in text and "skew" in text.lower()
        if fmt == "html":
            assert text.count("data:image/png;base64,") == 5
        else:
            assert "](img/timeline.png)" in text
    summary = json.loads((tmp_path / "md" / "summary.json").read_text())
    assert summary["tasks_per_executor"] == {"driver": 6}
    printed = summary_text(analysis).splitlines()
    assert "tasks per executor: driver=6" in printed and printed[-1] == "verdict: " + analysis.verdict


def test_report_command_prints_the_summary(tmp_path, capsys):
    write_lines(tmp_path / "local-1", app_events())
    assert main(["report", str(tmp_path / "local-1"), "--out", str(tmp_path / "r"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tasks_per_executor"] == {"driver": 4}
    assert Path(printed["report"]).is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_report_shows_failed_and_retried_tasks_per_stage(tmp_path, capsys):
    events = app_events(n_tasks=4)
    lost = next(e for e in events if e.get("Event") == "SparkListenerTaskEnd" and e["Task Info"]["Task ID"] == 1)
    lost["Task End Reason"] = {"Reason": "ExecutorLostFailure", "Executor ID": "driver", "Exit Caused By App": True,
                               "Loss Reason": "Command exited with code 137"}
    lost["Task Info"]["Failed"] = True
    retry = task_end(10, lost["Task Info"]["Finish Time"] + 10, 1000)
    retry["Task Info"].update({"Index": 1, "Attempt": 1})
    unretried = task_end(11, lost["Task Info"]["Launch Time"], 5)
    unretried["Task Info"].update({"Index": 7, "Attempt": 0, "Failed": True})  # no later attempt
    unretried["Task End Reason"] = {"Reason": "ExceptionFailure", "Class Name": "java.io.IOException",
                                    "Description": "disk full\nmore lines"}
    at = next(i for i, e in enumerate(events) if e["Event"] == "SparkListenerStageCompleted")
    events[at:at] = [retry, unretried]
    write_lines(tmp_path / "local-1", events)
    analysis, _ = load(str(tmp_path / "local-1"))
    assert task_failures(analysis) == [
        "stage 0 (featurize): 2 tasks failed, 1 retried "
        "(executor driver lost: Command exited with code 137; ExceptionFailure: disk full)"]
    assert "failed tasks: stage 0 (featurize): 2 tasks failed, 1 retried" in summary_text(analysis)
    report = write_report(analysis, None, tmp_path / "md", "md")
    assert "## Failed and retried tasks" in report.document.read_text()
    assert json.loads((tmp_path / "md" / "summary.json").read_text())["task_failures"] == task_failures(analysis)
    assert not task_failures(_clean(tmp_path))


def _clean(tmp_path):
    write_lines(tmp_path / "local-2", app_events("local-2"))
    return load(str(tmp_path / "local-2"))[0]
