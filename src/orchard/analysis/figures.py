"""The report's figures (matplotlib, Agg): timeline, stages, task times, records and bytes per
task, time split. Each function writes one PNG and returns its path."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from orchard.analysis.metrics import PER_IMAGE_STAGES, Analysis, StageStats, available_cores, concurrency
from orchard.names import (
    STAGE_FEATURIZE, STAGE_LIST, STAGE_MODEL, STAGE_PCA_FIT, STAGE_QUANTIZE, STAGE_RECONCILE, STAGE_SPARK_START,
    STAGE_WRITE_ERRORS, STAGE_WRITE_FEATURES, STAGE_WRITE_MODEL,
)

PHASE_COLOURS = {  # every phase of orchard.analysis.metrics.PHASES
    "startup": "#b0b0b0", "list": "#d9b26f", "read": "#4c72b0", "featurize": "#55a868", "reconcile": "#dd8452",
    "pca": "#c44e52", "write": "#8172b2", "other": "#8c8c8c",
}
STAGE_COLOURS = {  # every stage of orchard.names.STAGES (driver-side windows)
    STAGE_MODEL: "#b0b0b0", STAGE_SPARK_START: "#b0b0b0", STAGE_LIST: "#d9b26f", STAGE_QUANTIZE: "#b0b0b0",
    STAGE_FEATURIZE: "#55a868",
    STAGE_RECONCILE: "#dd8452", STAGE_PCA_FIT: "#c44e52", STAGE_WRITE_FEATURES: "#8172b2",
    STAGE_WRITE_ERRORS: "#a99bd0", STAGE_WRITE_MODEL: "#a99bd0",
}
DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_handles(phases: List[str]):
    from matplotlib.patches import Patch

    return [Patch(color=PHASE_COLOURS[p], label=p) for p in phases]


def stage_rows(windows: List[Tuple[str, float, float]]) -> List[int]:
    """The row (0, 1, ...) of each (stage, start s, end s) window in the timeline's stage band:
    the first row whose last window has ended when it starts, so that overlapping stages (the
    small writes beside write_features) are drawn one under the other. `windows` in start order."""
    row_ends: List[float] = []
    rows = []
    for _, start, end in windows:
        row = next((row for row, row_end in enumerate(row_ends) if start >= row_end - 1e-3), len(row_ends))
        row_ends[row:row + 1] = [end]  # a new row when row == len(row_ends)
        rows.append(row)
    return rows


def timeline(a: Analysis, path: Path) -> Path:
    """Gantt chart of every task on every executor core, the pipeline stages above it and the
    busy cores below it."""
    plt = _plt()
    lanes = sorted({slot for slot in a.slots.values()},
                   key=lambda s: (s[0] != "driver", int(s[0]) if s[0].isdigit() else 0, s[0], s[1]))
    lane_y = {lane: i for i, lane in enumerate(lanes)}
    n = max(len(lanes), 1)
    height = 3.2 + 0.32 * n + (0.6 if a.stage_windows else 0)
    ratios = ([0.9] if a.stage_windows else []) + [max(1.6, 0.32 * n), 1.6]
    figure, axes = plt.subplots(len(ratios), 1, figsize=(11, height), dpi=DPI, sharex=True,
                                gridspec_kw={"height_ratios": ratios})
    axes = list(axes)
    top = axes.pop(0) if a.stage_windows else None
    gantt, load = axes
    phase_of = {(s.stage_id, s.attempt): s.phase for s in a.stages}
    bars: Dict[int, Dict[str, list]] = {}
    for task in a.tasks:
        lane = lane_y[a.slots[task.task_id]]
        phase = phase_of.get((task.stage_id, task.stage_attempt), "other")
        start = (task.launch_ms - a.t0_ms) / 1000
        bars.setdefault(lane, {}).setdefault(phase, []).append((start, max(task.duration_ms / 1000, 0.02)))
    span = max((a.app_end_s - min(0.0, a.app_start_s)), 1.0)
    for lane, by_phase in bars.items():
        for phase, spans in by_phase.items():
            colour = PHASE_COLOURS.get(phase, "#888")
            long_ones = [s for s in spans if s[1] >= 0.004 * span]  # outlined, to tell tasks apart
            short_ones = [s for s in spans if s[1] < 0.004 * span]
            if long_ones:
                gantt.broken_barh(long_ones, (lane - 0.4, 0.8), facecolors=colour, edgecolors="white", linewidth=0.6)
            if short_ones:
                gantt.broken_barh(short_ones, (lane - 0.4, 0.8), facecolors=colour, linewidth=0)
    for executor in a.executors:  # when each executor registered
        ys = [lane_y[lane] for lane in lanes if lane[0] == executor.id]
        if ys:
            gantt.plot([executor.start_s] * 2, [min(ys) - 0.45, max(ys) + 0.45], color="black", lw=1.2)
    failed = [t for t in a.tasks if t.failed]
    if failed:
        gantt.scatter([(t.finish_ms - a.t0_ms) / 1000 for t in failed],
                      [lane_y[a.slots[t.task_id]] for t in failed], marker="x", color="black",
                      zorder=3, label="failed task")
    gantt.set_yticks(range(n))
    gantt.set_yticklabels([f"executor {e} · core {lane + 1}" if e != "driver" else f"driver · core {lane + 1}"
                           for e, lane in lanes], fontsize=8)
    gantt.set_ylim(n - 0.5, -0.5)
    gantt.set_title("Tasks per executor core (black tick: executor registered)", fontsize=10, loc="left")
    phases = [p for p in PHASE_COLOURS if any(s.phase == p for s in a.stages)]
    gantt.legend(handles=_legend_handles(phases), loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                 ncol=len(phases), frameon=False, borderaxespad=0.2)
    gantt.grid(axis="x", alpha=0.3)

    steps = concurrency(a.tasks, a.t0_ms, a.task_cpus, {e.id: e.cores for e in a.executors})
    cores = available_cores(a.executors)
    if steps:
        xs, ys = zip(*steps)
        load.fill_between(xs, ys, step="post", color="#55a868", alpha=0.45, label="busy cores")
    if cores:
        xs, ys = zip(*cores)
        load.step(xs, ys, where="post", color="black", lw=1.2, label="cores available")
    for gap in a.gaps:
        load.axvspan(gap.start_s, gap.end_s, color="#c44e52", alpha=0.12, lw=0)
    load.set_ylim(0, max(a.total_cores, 1) * 1.25 + 0.2)
    load.set_ylabel("cores")
    load.set_xlabel(f"seconds since {a.t0_label}")
    load.set_title(f"Busy cores: {a.utilisation:.0%} of available core-seconds (red: no task anywhere)",
                   fontsize=10, loc="left")
    load.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=2, frameon=False,
                borderaxespad=0.2)
    load.grid(alpha=0.3)

    if top is not None:
        rows = stage_rows(a.stage_windows)
        n_rows = max(rows, default=0) + 1
        for (name, start, end), row in zip(a.stage_windows, rows):
            bottom = (n_rows - 1 - row) / n_rows  # the first row on top
            top.broken_barh([(start, max(end - start, 0.05))], (bottom, 1 / n_rows),
                            facecolors=STAGE_COLOURS.get(name, "#999"), edgecolors="white")
            if end - start > 0.04 * max(a.wall_s, 1):
                top.text((start + end) / 2, bottom + 0.5 / n_rows, name, ha="center", va="center", fontsize=8)
        top.set_yticks([])
        top.set_ylim(0, 1)
        top.set_title(f"Pipeline stages on the driver (run {a.app_id}, wall {a.wall_s:.1f} s)",
                      fontsize=10, loc="left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _shown_stages(a: Analysis, limit: int = 40) -> List[StageStats]:
    if len(a.stages) <= limit:
        return list(a.stages)
    keep = sorted(a.stages, key=lambda s: -s.duration_s)[:limit]
    return sorted(keep, key=lambda s: (s.start_s, s.stage_id))


def stages(a: Analysis, path: Path) -> Path:
    """Each Spark stage from submission to completion (a waterfall), with tasks and seconds."""
    plt = _plt()
    shown = _shown_stages(a)
    figure, axis = plt.subplots(figsize=(11, 1.4 + 0.3 * max(len(shown), 1)), dpi=DPI)
    end = max((s.end_s for s in shown), default=1.0)
    for i, stage in enumerate(shown):
        axis.barh(i, max(stage.duration_s, end * 0.002), left=stage.start_s,
                  color=PHASE_COLOURS.get(stage.phase, "#888"), height=0.7)
        axis.text(stage.end_s + end * 0.005, i,
                  f"{stage.duration_s:.1f} s · {stage.n_tasks} task{'s' if stage.n_tasks != 1 else ''}"
                  + (f" · skew {stage.skew:.1f}" if stage.n_tasks > 1 else ""),
                  va="center", fontsize=7.5)
    axis.set_yticks(range(len(shown)))
    axis.set_yticklabels([f"stage {s.stage_id}{'.' + str(s.attempt) if s.attempt else ''} · {s.phase}"
                          for s in shown], fontsize=8)
    axis.set_ylim(len(shown) - 0.5, -0.7)
    axis.set_xlim(min(0, min((s.start_s for s in shown), default=0)), end * 1.18)
    axis.set_xlabel(f"seconds since {a.t0_label}")
    title = "Spark stages: submission to completion"
    if len(shown) < len(a.stages):
        title += f" (the {len(shown)} longest of {len(a.stages)})"
    axis.set_title(title, fontsize=10, loc="left")
    phases = [p for p in PHASE_COLOURS if any(s.phase == p for s in shown)]
    axis.legend(handles=_legend_handles(phases), loc="upper right", fontsize=8)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _busiest(a: Analysis, limit: int, min_tasks: int = 2) -> List[StageStats]:
    chosen = sorted((s for s in a.stages if s.n_tasks >= min_tasks), key=lambda s: -s.busy_core_s)[:limit]
    return sorted(chosen, key=lambda s: (s.start_s, s.stage_id))


def task_durations(a: Analysis, path: Path) -> Path:
    """Task time distribution of the busiest stages: box, every task as a dot, max/median."""
    import numpy as np

    plt = _plt()
    chosen = _busiest(a, 10)
    figure, axis = plt.subplots(figsize=(11, 4.6), dpi=DPI)
    if not chosen:
        axis.text(0.5, 0.5, "no stage with 2 or more tasks", ha="center", transform=axis.transAxes)
    else:
        data = [s.task_s for s in chosen]
        box = axis.boxplot(data, vert=True, patch_artist=True, widths=0.55, showfliers=False)
        for patch, stage in zip(box["boxes"], chosen):
            patch.set_facecolor(PHASE_COLOURS.get(stage.phase, "#888"))
            patch.set_alpha(0.45)
        rng = np.random.default_rng(0)
        for i, stage in enumerate(chosen, 1):
            xs = i + rng.uniform(-0.18, 0.18, len(stage.task_s))
            axis.scatter(xs, stage.task_s, s=9, color=PHASE_COLOURS.get(stage.phase, "#888"),
                         edgecolors="black", linewidths=0.3, zorder=3)
            axis.annotate(f"max/median\n{stage.skew:.2f}", (i, stage.max_task_s), xytext=(0, 6),
                          textcoords="offset points", ha="center", fontsize=7.5,
                          color="#c44e52" if stage.skew >= 2 and stage.max_task_s >= 1 else "black")
        axis.set_xticks(range(1, len(chosen) + 1))
        axis.set_xticklabels([f"stage {s.stage_id}\n{s.phase}\n{s.n_tasks} tasks" for s in chosen], fontsize=8)
        top = max(max(s.task_s) for s in chosen)
        axis.set_ylim(0, top * 1.25 + 0.05)
    axis.set_ylabel("task time (s)")
    axis.set_title("Task times of the busiest stages (skew = max / median; red when >= 2 on tasks of 1 s or more)",
                   fontsize=10, loc="left")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def task_records(a: Analysis, path: Path) -> Path:
    """Records and bytes each task consumed, and task time against records, for the image
    stages (read, featurize) and the busiest others."""
    plt = _plt()
    chosen = [s for s in _busiest(a, 6) if s.records]  # rows from files or the shuffle (not the cache)
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.3), dpi=DPI)
    records_axis, bytes_axis, scatter_axis = axes
    if chosen:
        by_stage = {}
        for task in a.tasks:
            by_stage.setdefault((task.stage_id, task.stage_attempt), []).append(task)
        labels = [f"{s.stage_id}\n{s.phase}" for s in chosen]
        records = [[t.records for t in by_stage[(s.stage_id, s.attempt)]] for s in chosen]
        megabytes = [[t.bytes_in / 1e6 for t in by_stage[(s.stage_id, s.attempt)]] for s in chosen]
        for axis, data, unit, title in ((records_axis, records, "records per task", "Records per task"),
                                        (bytes_axis, megabytes, "MB read per task", "MB read per task")):
            box = axis.boxplot(data, patch_artist=True, showfliers=True, widths=0.55)
            for patch, stage in zip(box["boxes"], chosen):
                patch.set_facecolor(PHASE_COLOURS.get(stage.phase, "#888"))
                patch.set_alpha(0.6)
            axis.set_xticks(range(1, len(chosen) + 1))
            axis.set_xticklabels(labels, fontsize=8)
            axis.set_ylabel(unit)
            axis.set_xlabel("Spark stage")
            axis.set_title(title + " (image files or shuffle)", fontsize=10, loc="left")
            axis.grid(axis="y", alpha=0.3)
            axis.set_ylim(bottom=0)
        main = a.main_stage
        if main is not None:
            tasks = by_stage.get((main.stage_id, main.attempt), [])
            executors = sorted({t.executor for t in tasks})
            cmap = plt.get_cmap("tab10")
            first_on_lane = {}
            for task in sorted(tasks, key=lambda t: t.launch_ms):
                first_on_lane.setdefault(a.slots[task.task_id], task.task_id)
            firsts = set(first_on_lane.values())
            for i, executor in enumerate(executors):
                for first, marker, note in ((True, "^", " (first task on a core)"), (False, "o", "")):
                    mine = [t for t in tasks if t.executor == executor and (t.task_id in firsts) == first]
                    if mine:
                        scatter_axis.scatter([t.records for t in mine], [t.duration_ms / 1000 for t in mine], s=26,
                                             marker=marker, color=cmap(i % 10), edgecolors="black",
                                             linewidths=0.3, label=f"executor {executor}{note}")
            scatter_axis.set_xlabel("records in the task")
            scatter_axis.set_ylabel("task time (s)")
            scatter_axis.set_title(f"Stage {main.stage_id} ({main.phase}): time vs records", fontsize=10, loc="left")
            scatter_axis.legend(fontsize=8)
            scatter_axis.grid(alpha=0.3)
            scatter_axis.set_xlim(left=0)
            scatter_axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def time_split(a: Analysis, path: Path) -> Path:
    """Where the time went: the split by part (task core-seconds or wall seconds), and the
    wall seconds of each pipeline stage with its images/s."""
    plt = _plt()
    has_wall = bool(a.wall_by_stage)
    figure, axes = plt.subplots(1, 2 if has_wall else 1, figsize=(13 if has_wall else 8, 4.2), dpi=DPI)
    axes = list(axes) if has_wall else [axes]
    split_axis = axes[0]
    parts = [(name, value, how) for name, value, how in a.time_split]
    colours = ["#b0b0b0" if how.startswith("wall") else "#55a868" if "UDF" in how else "#4c72b0"
               for _, _, how in parts]
    ys = range(len(parts))
    split_axis.barh(list(ys), [v for _, v, _ in parts], color=colours)
    top = max((v for _, v, _ in parts), default=1) or 1
    for y, (_, value, how) in zip(ys, parts):
        split_axis.text(value + top * 0.01, y, f"{value:.1f} {'s' if how.startswith('wall') else 'core-s'}",
                        va="center", fontsize=8)
    split_axis.set_yticks(list(ys))
    split_axis.set_yticklabels([name for name, _, _ in parts], fontsize=8)
    split_axis.set_ylim(len(parts) - 0.5, -0.5)
    split_axis.set_xlim(0, top * 1.25)
    split_axis.set_xlabel("seconds (grey: driver wall time; blue: Spark task time; green: timed in the UDF)")
    split_axis.set_title("Time split by part", fontsize=10, loc="left")
    split_axis.grid(axis="x", alpha=0.3)
    if has_wall:
        wall_axis = axes[1]
        names = list(a.wall_by_stage)
        values = [a.wall_by_stage[n] for n in names]
        wall_axis.barh(range(len(names)), values, color=[STAGE_COLOURS.get(n, "#999") for n in names])
        top = max(values) or 1
        for y, name in enumerate(names):
            rate = a.images_per_s.get(name)
            text = f"{a.wall_by_stage[name]:.1f} s" + (f" · {rate:,.0f} images/s" if rate and name in PER_IMAGE_STAGES else "")
            wall_axis.text(a.wall_by_stage[name] + top * 0.01, y, text, va="center", fontsize=8)
        wall_axis.set_yticks(range(len(names)))
        wall_axis.set_yticklabels(names, fontsize=8)
        wall_axis.set_ylim(len(names) - 0.5, -0.5)
        wall_axis.set_xlim(0, top * 1.4)
        wall_axis.set_xlabel("wall seconds on the driver")
        rate = a.images_per_s.get("whole run")
        wall_axis.set_title(f"Pipeline stages ({a.wall_s:.1f} s in all"
                            + (f", {rate:.0f} images/s overall)" if rate else ")"), fontsize=10, loc="left")
        wall_axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


FIGURES = (
    ("timeline.png", timeline, "Task timeline per executor (Gantt) and busy cores"),
    ("stages.png", stages, "Stage durations"),
    ("task_durations.png", task_durations, "Task-time distribution and skew"),
    ("task_records.png", task_records, "Records and bytes per task"),
    ("time_split.png", time_split, "Time split and images/s"),
)


def render_all(a: Analysis, folder: Path) -> List[Path]:
    """Every figure of FIGURES as a PNG in `folder` (created); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [make(a, folder / name) for name, make, _ in FIGURES]
