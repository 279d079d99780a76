"""The scale test's files: measurements.csv (and reading it back), summary.csv, projection.csv,
the speed-up plot and the Markdown report."""
from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from orchard.analysis.scaling.fit import (
    FEATURIZE_FROM_EVENT_LOG, FEATURIZE_FROM_RUN_JSON, ConfigSummary, Fit, Projection,
)
from orchard.analysis.scaling.records import Measurement

MEASUREMENTS_CSV, SUMMARY_CSV, PROJECTION_CSV = "measurements.csv", "summary.csv", "projection.csv"
FIT_JSON, SPEEDUP_PNG, REPORT_MD = "fit.json", "speedup.png", "scale_test.md"


FEATURIZE_NOTES = {
    FEATURIZE_FROM_EVENT_LOG: "the featurize jobs of each run's event log, from the first one's submission to the "
                              "last one's end (the driver's planning before the first job is not in it)",
    FEATURIZE_FROM_RUN_JSON: "run.json's seconds.featurize, the driver's stage (with its planning before the first "
                             "job): some event logs could not be read",
}


def write_csv(path: Path, rows: Sequence[Any]) -> Path:
    """Dataclasses or dicts as CSV rows at `path`; a dict field `f` becomes columns `f.key`."""
    dicts = [asdict(r) if hasattr(r, "__dataclass_fields__") else dict(r) for r in rows]
    for row in dicts:
        for key, value in list(row.items()):
            if isinstance(value, dict):
                row.pop(key)
                row.update({f"{key}.{k}": v for k, v in value.items()})
    keys: List[str] = []
    for row in dicts:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(dicts)
    return path


def speedup_plot(rows: Sequence[Measurement], summaries: Sequence[ConfigSummary], model: Optional[Fit],
                 path: Path, title: str = "", alternative: Optional[Fit] = None) -> Path:
    """Speed-up against the cores (each run, the medians, the ideal line, the fitted model) and
    the wall times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    inputs = sorted({s.input for s in summaries})
    markers = {1: "o", 2: "s", 4: "D", 8: "^"}
    colours = plt.get_cmap("tab10")
    top = 1.0
    for i, input_uri in enumerate(inputs):
        mine = sorted((s for s in summaries if s.input == input_uri), key=lambda s: (s.total_cores, s.executors))
        base = min(mine, key=lambda s: (s.total_cores, s.executors))
        name = Path(input_uri.rstrip("/")).name
        colour = colours(i)
        runs = [r for r in rows if r.input == input_uri and r.ok and not r.warmup]
        for cores_per in sorted({s.cores_per_executor for s in mine}):
            group = [s for s in mine if s.cores_per_executor == cores_per]
            label = f"{name}: median" + (f", {cores_per} core(s)/executor" if len({s.cores_per_executor for s in mine}) > 1 else "")
            left.plot([s.total_cores for s in group], [s.speedup for s in group], marker=markers.get(cores_per, "o"),
                      color=colour, lw=1.6, ms=7, label=label)
            right.plot([s.total_cores for s in group], [s.wall_median_s for s in group],
                       marker=markers.get(cores_per, "o"), color=colour, lw=1.6, ms=7, label=label)
        jitter = np.linspace(-0.04, 0.04, max(len(runs), 1))
        left.scatter([r.total_cores + jitter[k] for k, r in enumerate(runs)],
                     [base.wall_median_s / r.wall_s for r in runs], s=14, color=colour, alpha=0.5,
                     label=f"{name}: each run")
        right.scatter([r.total_cores + jitter[k] for k, r in enumerate(runs)], [r.wall_s for r in runs], s=14,
                      color=colour, alpha=0.5)
        for s in mine:
            below = s.cores_per_executor == 1  # configurations sharing a core count: one label below, one above
            left.annotate(f"{s.config}\n{s.speedup:.2f}x, eff {s.efficiency:.0%}", (s.total_cores, s.speedup),
                          xytext=(8, -24 if below else 8), textcoords="offset points", fontsize=8)
            right.annotate(f"{s.config}: {s.wall_median_s:.0f} s\n{s.images_per_s:.0f} img/s",
                           (s.total_cores, s.wall_median_s), xytext=(8, 2) if below else (-8, 2),
                           ha="left" if below else "right", textcoords="offset points", fontsize=8)
        if model is not None:
            grid = np.linspace(base.total_cores, max(s.total_cores for s in mine) * 1.5, 60)
            base_time = model.predict(base.images, base.total_cores)
            left.plot(grid, [base_time / model.predict(base.images, c) for c in grid], color=colour, ls=":",
                      lw=1.2, label=f"{name}: fitted F + p·n/C")
            right.plot(grid, [model.predict(base.images, c) for c in grid], color=colour, ls=":", lw=1.2,
                       label=f"fitted: F = {model.fixed_s + model.serial_s_per_image * base.images:.0f} s, "
                             f"p = {model.parallel_core_s_per_image * 1000:.1f} core-ms/image")
            right.axhline(model.fixed_s + model.serial_s_per_image * base.images, color=colour, ls="--", lw=0.8,
                          alpha=0.6)
        if alternative is not None and alternative.parallel_core_s_per_image > 0:
            grid = np.linspace(base.total_cores, max(s.total_cores for s in mine) * 1.5, 60)
            base_time = alternative.predict(base.images, base.total_cores)
            left.plot(grid, [base_time / alternative.predict(base.images, c) for c in grid], color=colour,
                      ls="-.", lw=1.0, alpha=0.7, label=f"{name}: model from task time, all cores busy")
        top = max(top, max(s.total_cores for s in mine) / base.total_cores * 1.5)
    cores_max = max(s.total_cores for s in summaries)
    cores_min = min(s.total_cores for s in summaries)
    ideal = np.linspace(cores_min, cores_max * 1.5, 10)
    left.plot(ideal, ideal / cores_min, color="black", lw=1, ls="--", label="ideal (linear)")
    left.set_xlabel("cores in all (executors x cores per executor)")
    left.set_ylabel("speed-up against the fewest cores")
    left.set_title("Speed-up (wall clock of whole runs)", fontsize=10, loc="left")
    left.set_xlim(cores_min - 0.3, cores_max * 1.5)
    left.set_ylim(0, max(top, 1.2))
    left.legend(fontsize=7.5, loc="upper left")
    left.grid(alpha=0.3)
    right.set_xlabel("cores in all")
    right.set_ylabel("wall time (s)")
    right.set_ylim(0, max(r.wall_s for r in rows if r.ok and not r.warmup) * 1.18)
    right.set_xlim(cores_min - 0.3, cores_max * 1.5)
    right.set_title("Wall time per run (dashed: fitted fixed cost)", fontsize=10, loc="left")
    right.legend(fontsize=7.5, loc="lower left")
    right.grid(alpha=0.3)
    for axis in (left, right):
        axis.set_xticks(sorted({s.total_cores for s in summaries}))
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def markdown(summaries: Sequence[ConfigSummary], model: Optional[Fit], projections: Sequence[Projection],
             notes: Sequence[str], context: Dict[str, Any], by_task_time: Optional[Fit] = None) -> str:
    """The scale test's report (Markdown): context, one row per configuration, the fits, the projections."""
    lines = ["# Scale test", ""]
    for key, value in context.items():
        lines.append(f"- {key}: {value}")
    source = summaries[0].featurize_source if summaries else ""
    lines += ["", "| config (executors x cores) | cores | images | runs | wall median (min-max) s | images/s | "
              f"speed-up | ideal | efficiency | fitted s | featurize stage s ({source}; speed-up) | featurize efficiency | "
              "skew (median) | utilisation |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(
            f"| {s.config} | {s.total_cores} | {s.images} | {s.runs}{f' ({s.failed} failed)' if s.failed else ''} | "
            f"{s.wall_median_s:.1f} ({s.wall_min_s:.1f}-{s.wall_max_s:.1f}) | {s.images_per_s:.1f} | "
            f"{s.speedup:.2f} | {s.ideal_speedup:.0f} | {s.efficiency:.0%} | "
            f"{s.predicted_s if s.predicted_s is not None else '–'} | "
            f"{f'{s.featurize_median_s:.1f} ({s.featurize_speedup:.2f}x)' if s.featurize_speedup else '–'} | "
            f"{f'{s.featurize_efficiency:.0%}' if s.featurize_efficiency else '–'} | "
            f"{s.skew_median if s.skew_median is not None else '–'} | "
            f"{f'{s.utilisation_median:.0%}' if s.utilisation_median is not None else '–'} |")
    if summaries:
        lines += ["", f"- featurize stage: {FEATURIZE_NOTES.get(source, source)}"]
    if model is not None:
        lines += ["", f"Fit to the median of each configuration ({model.points} runs, R² over the runs "
                      f"{model.r2:.3f}): fixed cost F = {model.fixed_s:.1f} s, "
                      f"parallel cost p = {model.parallel_core_s_per_image * 1000:.2f} core-ms per image, "
                      f"serial (driver) cost s = {model.serial_s_per_image * 1000:.3f} ms per image "
                      f"({'fitted' if model.serial_fitted else 'not separable with one input size: 0'})."]
        lines += [f"- {note}" for note in model.notes]
    if by_task_time is not None:
        lines += ["", f"From the event logs ({by_task_time.method}): F = {by_task_time.fixed_s:.1f} s, "
                      f"p = {by_task_time.parallel_core_s_per_image * 1000:.2f} core-ms per image, "
                      f"s = {by_task_time.serial_s_per_image * 1000:.3f} ms per image."]
        lines += [f"- {note}" for note in by_task_time.notes]
    for method in dict.fromkeys(p.model for p in projections):
        lines += ["", f"Projection from the {method}:", "",
                  "| core nodes | worker vCPUs | images | run time | images/s | speed-up vs 1 node | "
                  "efficiency | USD/h (cluster) | USD per run | USD with cluster start | USD, Spot core nodes |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in (p for p in projections if p.model == method):
            lines.append(
                f"| {p.core_nodes} x {p.instance_type} | {p.worker_vcpus} | {p.images:,} | {_duration(p.run_s)} | "
                f"{p.images_per_s:,.0f} | {p.speedup_vs_one_node:.1f} | {p.efficiency_vs_one_node:.0%} | "
                f"{_money(p.hourly_usd)} | {_money(p.run_cost_usd)} | {_money(p.with_startup_cost_usd)} | "
                f"{_money(p.spot_run_cost_usd)} |")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _money(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:,.2f}"



def read_context(path: Path) -> Dict[str, str]:
    """The context lines (`- key: value`) at the top of a scale_test.md, {} without the file."""
    context: Dict[str, str] = {}
    if not path.is_file():
        return context
    for line in path.read_text(encoding="utf-8").splitlines()[2:]:
        if not line.startswith("- "):
            break
        key, _, value = line[2:].partition(": ")
        context[key] = value
    return context


def read_measurements(path: Path) -> List[Measurement]:
    """Measurements back from a measurements.csv (to re-fit and re-plot without running)."""
    names = {f for f in Measurement.__dataclass_fields__}
    ints = {"executors", "cores_per_executor", "total_cores", "repetition", "images", "partitions", "executors_used"}
    floats = {"wall_s", "images_per_s", "skew", "tail_idle_core_s", "utilisation", "busy_core_s", "load_before",
              "load_after", "featurize_jobs_s"}
    rows: List[Measurement] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            values: Dict[str, Any] = {"stage_s": {}}
            for key, text in raw.items():
                if key.startswith("stage_s."):
                    if text not in ("", None):
                        values["stage_s"][key[len("stage_s."):]] = float(text)
                elif key in names:
                    if text in ("", None):
                        values[key] = None
                    elif key in ints:
                        values[key] = int(float(text))
                    elif key in floats:
                        values[key] = float(text)
                    elif key in ("ok", "warmup"):
                        values[key] = text == "True"
                    else:
                        values[key] = text
            rows.append(Measurement(**values))
    return rows
