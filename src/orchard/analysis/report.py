"""`orchard report`: a run's event log -> a Markdown or HTML report with PNG figures, a JSON
summary, and a few lines printed for the terminal."""
from __future__ import annotations

import base64
import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from orchard.analysis.eventlog import Task, parse_events, read_events, resolve_run
from orchard.analysis.figures import FIGURES, render_all
from orchard.analysis.metrics import Analysis, analyse
from orchard.names import RUN_RECORD
from orchard.storage.fs import Storage, is_local, local_path

REPORT_MD, REPORT_HTML, SUMMARY_JSON, IMAGE_DIR = "report.md", "report.html", "summary.json", "img"


@dataclass
class Report:
    analysis: Analysis
    record: Optional[Dict[str, Any]]
    folder: Path
    document: Path
    figures: List[Path]


def load(run: str, storage: Optional[Storage] = None, force_jvm: bool = False) -> Tuple[Analysis, Optional[Dict[str, Any]]]:
    """Analyse a run (its output folder or URI) or an event log (file, .inprogress, rolling folder)."""
    storage = storage or Storage()
    location, record = resolve_run(run, storage)
    app = parse_events(read_events(location, storage, force_jvm), location)
    return analyse(app, record), record


def default_folder(run: str, analysis: Analysis) -> Path:
    """<run>/report for a local run folder, else ./orchard-report-<app id>."""
    if is_local(run) and (local_path(run) / RUN_RECORD).is_file():
        return local_path(run) / "report"
    return Path.cwd() / f"orchard-report-{analysis.app_id or 'unknown'}"


# --------------------------------------------------------------------------- content

Block = Tuple[str, Any]  # ("h1"|"h2"|"p"|"ul"|"table"|"img", payload)


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f}"


def _s(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def blocks(a: Analysis, record: Optional[Dict[str, Any]], figures: Sequence[Tuple[str, str]]) -> List[Block]:
    out: List[Block] = [("h1", f"Run report: {a.app_id}")]
    facts = [
        f"event log: `{a.source}` ({a.log_format}), Spark {a.spark_version}, master `{a.master}`",
        f"{a.n_tasks} tasks ({a.n_failed_tasks} failed) on {len(a.executors)} executor(s), "
        f"{a.total_cores} cores, spark.task.cpus={a.task_cpus}",
    ]
    if record:
        counts = record.get("counts") or {}
        facts.insert(0, f"run: `{record.get('output')}` of `{record.get('input')}`: {counts.get('images')} images, "
                        f"{counts.get('featurized')} featurized, {counts.get('errors')} errors; "
                        f"{record.get('partitions')} partitions; started {record.get('started_at')}")
    else:
        facts.append("no run.json: orchard's wall times per stage, image counts and UDF timings are not known")
    out.append(("ul", facts))

    failures = task_failures(a)
    if failures:
        out.append(("h2", "Failed and retried tasks"))
        out.append(("ul", failures))

    out.append(("h2", "Verdict"))
    out.append(("p", a.verdict))
    out.append(("ul", [f"**{f.key}** ({f.seconds:.1f} s): {f.text}" for f in a.findings]))

    main = a.main_stage
    rows = [
        ("wall time", f"{a.wall_s:.1f} s" + (f" ({a.images / a.wall_s:.1f} images/s)" if a.images else "")),
        ("utilisation (busy / available core-s, executor lifetimes)",
         f"{a.utilisation:.0%} ({a.busy_core_s:.1f} / {a.available_core_s:.1f})"),
        ("utilisation over the whole application (all cores x app time)", f"{a.utilisation_app:.0%}"),
        ("start-up: model + Spark start on the driver", _s(a.startup.get("driver_start_s")) + " s"),
        ("first executor registered / all registered (s since " + a.t0_label + ")",
         f"{_s(a.startup.get('first_executor_s'))} / {_s(a.startup.get('executors_ready_s'))}"),
        ("first task / first task on images (s since " + a.t0_label + ")",
         f"{_s(a.startup.get('first_task_s'))} / {_s(a.startup.get('first_image_task_s'))}"),
        ("executors idle between first and last task (driver-side work)",
         f"{sum(g.seconds for g in a.gaps):.1f} s in {len(a.gaps)} gap(s)"),
    ]
    if main is not None:
        rows.append((f"main stage {main.stage_id} ({main.phase}): tasks, median / max task, skew",
                     f"{main.n_tasks} tasks, {main.median_task_s:.2f} / {main.max_task_s:.2f} s, "
                     f"skew {main.skew:.2f}"))
    out.append(("table", (["measure", "value"], rows)))

    captions = dict(figures)
    def figure(name: str, caption: str) -> None:
        if name in captions:
            out.append(("img", (name, caption)))

    out.append(("h2", "Task timeline per executor"))
    figure("timeline.png", "Gantt chart of the tasks per executor core, with the busy cores below")
    out.append(("h2", "Executors"))
    out.append(("table", (
        ["executor", "host", "cores", "tasks", "busy core-s", "available core-s", "utilisation",
         "registered at (s)", "wait for first task (s)", "idle gaps >= 0.5 s"],
        [(e.id, e.host, e.cores, e.tasks, f"{e.busy_core_s:.1f}", f"{e.available_core_s:.1f}",
          f"{e.utilisation:.0%}", f"{e.start_s:.1f}", _s(e.wait_for_first_task_s, 2),
          f"{len(e.idle_gaps)} ({sum(h - l for l, h in e.idle_gaps):.1f} s)") for e in a.executors],
    )))
    if a.gaps:
        out.append(("h2", "Idle gaps: no task running on any executor"))
        out.append(("table", (["from (s)", "to (s)", "seconds", "during"],
                              [(f"{g.start_s:.1f}", f"{g.end_s:.1f}", f"{g.seconds:.1f}", g.during)
                               for g in sorted(a.gaps, key=lambda g: -g.seconds)[:15]])))

    out.append(("h2", "Stages"))
    figure("stages.png", "Spark stages from submission to completion")
    out.append(("table", (
        ["stage", "phase", "orchard stage", "tasks", "duration (s)", "median task (s)", "max task (s)",
         "skew", "records", "records/s", "MB in", "MB out", "idle core-s"],
        [(f"{s.stage_id}" + (f".{s.attempt}" if s.attempt else ""), s.phase, s.orchard_stage or "–", s.n_tasks,
          f"{s.duration_s:.2f}", f"{s.median_task_s:.2f}", f"{s.max_task_s:.2f}", f"{s.skew:.2f}",
          f"{s.records:,}" if s.records else "–", f"{s.records_per_s:,.0f}" if s.records else "–", _mb(s.bytes_in), _mb(s.output_bytes + s.shuffle_write_bytes),
          f"{s.idle_core_s:.1f}") for s in a.stages],
    )))
    out.append(("p", "records: rows read from image files or from the shuffle (– where Spark reads cached "
                     "data and counts batches); MB in: file or shuffle bytes read; MB out: Parquet and shuffle "
                     "bytes written; idle core-s: cores x stage time minus task time."))
    out.append(("h2", "Task times and skew"))
    figure("task_durations.png", "Task time distribution per stage")
    out.append(("h2", "Records and bytes per task"))
    figure("task_records.png", "Records and bytes per task")
    out.append(("h2", "Time split"))
    figure("time_split.png", "Time split and images/s")
    out.append(("table", (["part", "seconds", "measured as"],
                          [(p, f"{v:.1f}", how) for p, v, how in a.time_split])))
    if a.images_per_s:
        out.append(("table", (["stage", "images/s"], [(k, f"{v:,.1f}") for k, v in a.images_per_s.items()])))
    return out


# --------------------------------------------------------------------------- rendering


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(content: List[Block]) -> str:
    lines: List[str] = []
    for kind, payload in content:
        if kind == "h1":
            lines += [f"# {payload}", ""]
        elif kind == "h2":
            lines += [f"## {payload}", ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "table":
            header, rows = payload
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            name, caption = payload
            lines += [f"![{caption}]({IMAGE_DIR}/{name})", ""]
    return "\n".join(lines)


def _inline_md(text: str) -> str:
    """`code` and **bold** of the Markdown blocks, for HTML."""
    import re

    escaped = html.escape(str(text))
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def to_html(content: List[Block], image_folder: Path, title: str) -> str:
    body: List[str] = []
    for kind, payload in content:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_inline_md(payload)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline_md(payload)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline_md(i)}</li>" for i in payload) + "</ul>")
        elif kind == "table":
            header, rows = payload
            body.append("<table><tr>" + "".join(f"<th>{_inline_md(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{_inline_md(c)}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
        elif kind == "img":
            name, caption = payload
            data = base64.b64encode((image_folder / name).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
             "img{max-width:100%}figcaption{color:#666;font-size:12px}code{background:#f3f3f3}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(analysis: Analysis, record: Optional[Dict[str, Any]], folder: Union[str, Path],
                 fmt: str = "md") -> Report:
    """Render the figures and the document (report.md or report.html) and summary.json."""
    folder = Path(folder)
    image_folder = folder / IMAGE_DIR
    figures = render_all(analysis, image_folder)
    captions = [(name, caption) for name, _, caption in FIGURES]
    content = blocks(analysis, record, captions)
    if fmt == "html":
        document = folder / REPORT_HTML
        document.write_text(to_html(content, image_folder, f"orchard report {analysis.app_id}"), encoding="utf-8")
    else:
        document = folder / REPORT_MD
        document.write_text(to_markdown(content), encoding="utf-8")
    summary = {**analysis.summary(), "task_failures": task_failures(analysis)}
    (folder / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return Report(analysis, record, folder, document, figures)


def task_failures(a: Analysis) -> List[str]:
    """One line per stage that had failed tasks: "stage 3 (featurize): 2 tasks failed, 2 retried
    (executor 1 lost: Command exited with code 137)"; [] when no task failed.

    Failed: an attempt that ended otherwise than Success and was not killed on purpose
    (speculation, job cancelled). Retried: a failed attempt followed by another attempt of the
    same task (same stage and index) or by a new attempt of its stage.
    """
    failed = [t for t in a.tasks if not t.killed and (t.failed or t.end_reason != "Success")]
    if not failed:
        return []
    names = {s.stage_id: s.orchard_stage or s.phase for s in a.stages}
    lines = []
    for stage_id in sorted({t.stage_id for t in failed}):
        mine = [t for t in failed if t.stage_id == stage_id]
        retried = sum(1 for t in mine if _retried(a.tasks, t))
        reasons = Counter(t.failure or t.end_reason for t in mine)
        why = "; ".join(f"{reason}" + (f" x{n}" if n > 1 else "") for reason, n in reasons.most_common())
        name = f" ({names[stage_id]})" if names.get(stage_id) else ""
        lines.append(f"stage {stage_id}{name}: {len(mine)} task{'s' if len(mine) != 1 else ''} failed, "
                     f"{retried} retried ({why})")
    return lines


def _retried(tasks: Sequence[Task], failed: Task) -> bool:
    return any(t.stage_id == failed.stage_id and t.launch_ms >= failed.launch_ms and t.task_id != failed.task_id
               and (t.stage_attempt > failed.stage_attempt or (t.stage_attempt == failed.stage_attempt
                                                                and t.index == failed.index))
               for t in tasks)


def summary_text(a: Analysis) -> str:
    """The lines `orchard report` prints."""
    main = a.main_stage
    lines = [
        f"run {a.app_id}: {a.wall_s:.1f} s, {a.images if a.images is not None else '?'} images, "
        f"{a.n_tasks} tasks on {len(a.executors)} executor(s) / {a.total_cores} cores",
        "tasks per executor: " + ", ".join(f"{e.id}={e.tasks}" for e in a.executors),
        f"utilisation: {a.utilisation:.0%} of available core-seconds ({a.busy_core_s:.1f} / {a.available_core_s:.1f})",
        f"first task on images at {_s(a.startup.get('first_image_task_s'))} s since {a.t0_label}; "
        f"executors idle {sum(g.seconds for g in a.gaps):.1f} s between tasks",
    ]
    if main is not None:
        lines.append(f"main stage {main.stage_id} ({main.phase}): {main.n_tasks} tasks, median {main.median_task_s:.2f} s, "
                     f"max {main.max_task_s:.2f} s, skew (max/median) {main.skew:.2f}")
    lines += ["failed tasks: " + line for line in task_failures(a)]
    lines.append("verdict: " + a.verdict)
    return "\n".join(lines)
