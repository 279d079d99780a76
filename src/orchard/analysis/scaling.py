"""`orchard scale-test`: time whole `orchard run`s on 1, 2, ... executors, fit a fixed cost
plus a per-image cost, and project time and cost on N EMR core nodes.

Each measurement is one `orchard run` in a fresh process (`python -m orchard run ...`), timed
by the wall clock around it: Spark start, listing, featurizing, PCA and writing all count.
Configurations are executors x cores per executor, set with `spark.cores.max` and
`spark.executor.cores` on a standalone master: orchard's local cluster (started here, with as
many workers as the largest configuration needs, and stopped at the end), an existing master
(`--master spark://...`), or `--master local` (one JVM, `local[N]`: cores only).

The model fitted to the wall times T of every configuration (C cores in all, n images):

    T = F + p * n / C

F (seconds) is what does not shrink with more cores (Spark start, listing, driver-side work,
scheduling); p (core-seconds per image) is the parallel work. With runs on inputs of several
sizes a serial per-image term s is fitted too (T = F + s*n + p*n/C); with one size it cannot be
told apart from F and is taken as 0.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchard.errors import OrchardError

log = logging.getLogger(__name__)

SEEDS_CLUSTER_NODES = 3  # the seeds' EMR cluster: 1 primary + 3 core m5.xlarge
DEFAULT_NODES = (3, 10, 50)
DEFAULT_IMAGES = (90_000, 10_000_000)
DEFAULT_INSTANCE = "m5.xlarge"
INSTANCE_VCPUS = {"m5.large": 2, "m5.xlarge": 4, "m5.2xlarge": 8, "m5.4xlarge": 16, "m6i.xlarge": 4,
                  "m6i.2xlarge": 8, "c5.xlarge": 4, "c5.2xlarge": 8, "r5.xlarge": 4, "r5.2xlarge": 8}
MEASUREMENTS_CSV, SUMMARY_CSV, PROJECTION_CSV = "measurements.csv", "summary.csv", "projection.csv"
FIT_JSON, SPEEDUP_PNG, REPORT_MD = "fit.json", "speedup.png", "scale_test.md"
DRIVER_SERIAL_STAGES = ("list", "reconcile")


@dataclass(frozen=True)
class Config:
    executors: int
    cores: int  # per executor

    @property
    def total_cores(self) -> int:
        return self.executors * self.cores

    @property
    def label(self) -> str:
        return f"{self.executors}x{self.cores}"


def parse_counts(text: str, option: str) -> List[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise OrchardError(f"{option} takes a comma-separated list of positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise OrchardError(f"{option} takes a comma-separated list of positive integers, got {text!r}")
    return sorted(set(values))


def configurations(workers: Sequence[int], cores: Sequence[int], grid: bool) -> List[Config]:
    """1..N workers of `cores` cores each; with `grid`, every executors x cores pair."""
    if grid:
        return [Config(w, c) for w in workers for c in cores]
    if len(cores) > 1:
        raise OrchardError("--cores-per-worker takes one value without --grid (give --grid to sweep it)")
    return [Config(w, cores[0]) for w in workers]


# --------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    config: str
    executors: int
    cores_per_executor: int
    total_cores: int
    input: str
    repetition: int
    warmup: bool
    wall_s: float
    ok: bool
    images: Optional[int] = None
    images_per_s: Optional[float] = None
    partitions: Optional[int] = None
    executors_used: Optional[int] = None
    app_id: Optional[str] = None
    event_log: Optional[str] = None
    stage_s: Dict[str, float] = field(default_factory=dict)
    skew: Optional[float] = None
    tail_idle_core_s: Optional[float] = None
    utilisation: Optional[float] = None
    busy_core_s: Optional[float] = None  # task time of the whole run (event log), core-seconds
    load_before: Optional[float] = None
    load_after: Optional[float] = None
    error: Optional[str] = None


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _git_commit() -> Optional[str]:
    """The commit of the orchard source tree, when it is a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def run_conf(config: Config, master: str) -> Tuple[str, Dict[str, str]]:
    """(master, Spark settings) that give `config`."""
    if master.startswith("local"):
        return f"local[{config.total_cores}]", {}
    return master, {"spark.cores.max": str(config.total_cores), "spark.executor.cores": str(config.cores)}


def measure(config: Config, input_uri: str, master: str, work: Path, repetition: int, warmup: bool,
            extra_args: Sequence[str] = (), timeout_s: float = 3600, keep_output: bool = False,
            executor_memory: Optional[str] = None) -> Measurement:
    """One `orchard run` in a fresh process, timed by the wall clock around it."""
    run_master, conf = run_conf(config, master)
    if executor_memory and not run_master.startswith("local"):
        conf["spark.executor.memory"] = executor_memory
    tag = f"{config.label}-{'warmup' if warmup else f'r{repetition}'}-{Path(input_uri.rstrip('/')).name}"
    output = work / "outputs" / tag
    events = work / "events"
    events.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "orchard", "run", "--input", input_uri, "--output", str(output),
               "--overwrite", "--master", run_master, "--event-log-dir", str(events)]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += list(extra_args)
    log_file = work / "logs" / f"{tag}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    row = Measurement(config=config.label, executors=config.executors, cores_per_executor=config.cores,
                      total_cores=config.total_cores, input=input_uri, repetition=repetition, warmup=warmup,
                      wall_s=0.0, ok=False, load_before=_load_average())
    log.info("%s: %s", tag, " ".join(command[1:]))
    started = time.perf_counter()
    try:
        with open(log_file, "w", encoding="utf-8") as handle:
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s,
                                    stdin=subprocess.DEVNULL)
        row.wall_s = round(time.perf_counter() - started, 3)
        row.ok = result.returncode == 0
        if not row.ok:
            row.error = f"exit {result.returncode}; see {log_file}"
    except subprocess.TimeoutExpired:
        row.wall_s = round(time.perf_counter() - started, 3)
        row.error = f"timed out after {timeout_s:.0f} s; see {log_file}"
    row.load_after = _load_average()
    record_file = output / "run.json"
    if row.ok and record_file.is_file():
        _fill_from_record(row, json.loads(record_file.read_text(encoding="utf-8")), output)
    elif row.ok:
        row.ok, row.error = False, f"no run.json in {output}"
    if not keep_output:
        shutil.rmtree(output, ignore_errors=True)
    log.info("%s: %s in %.1f s%s", tag, "ok" if row.ok else "FAILED", row.wall_s,
             f" ({row.images_per_s:.1f} images/s)" if row.images_per_s else f": {row.error}")
    return row


def _fill_from_record(row: Measurement, record: Dict[str, Any], output: Path) -> None:
    row.images = int((record.get("counts") or {}).get("images") or 0)
    row.images_per_s = round(row.images / row.wall_s, 3) if row.wall_s else None
    row.partitions = record.get("partitions")
    row.executors_used = len(record.get("executors") or []) or None
    spark = record.get("spark") or {}
    row.app_id, row.event_log = spark.get("app_id"), spark.get("event_log")
    row.stage_s = {k: float(v) for k, v in (record.get("seconds") or {}).items()}
    try:
        from orchard.analysis.report import load

        analysis, _ = load(str(output))
        main = analysis.main_stage
        row.utilisation = round(analysis.utilisation, 4)
        row.busy_core_s = round(analysis.busy_core_s, 2)
        if main is not None:
            row.skew, row.tail_idle_core_s = round(main.skew, 3), round(main.tail_idle_core_s, 2)
    except Exception as error:  # the timing stands without the event-log measures
        log.warning("could not analyse the event log of %s: %s", row.app_id, error)


# --------------------------------------------------------------------------- fitting


@dataclass
class Fit:
    fixed_s: float  # F
    parallel_core_s_per_image: float  # p
    serial_s_per_image: float  # s (driver-side, not divided by the cores)
    serial_fitted: bool  # s fitted (inputs of several sizes) or measured from run.json stages
    r2: float
    points: int
    residuals: List[float] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    method: str = "regression of the median wall times on n/C"

    def predict(self, images: float, cores: float) -> float:
        return self.fixed_s + self.serial_s_per_image * images + self.parallel_core_s_per_image * images / cores


def fit(rows: Sequence[Measurement]) -> Fit:
    """Least squares of the median wall time of each configuration (and input) on n/C, and on n
    with several input sizes: F, p (and s), none negative.

    Medians, not every run: on a shared machine one run now and then is slowed by someone
    else's work, and the fit should not follow it.
    """
    import numpy as np

    good = [r for r in rows if r.ok and not r.warmup and r.images]
    if len({r.total_cores for r in good}) < 2:
        raise OrchardError("the fit needs successful runs on at least two core counts")
    groups: Dict[Tuple[str, int, str], List[Measurement]] = {}
    for row in good:
        groups.setdefault((row.input, row.total_cores, row.config), []).append(row)
    n = np.array([g[0].images for g in groups.values()], dtype=float)
    cores = np.array([g[0].total_cores for g in groups.values()], dtype=float)
    wall = np.array([statistics.median(r.wall_s for r in g) for g in groups.values()], dtype=float)
    notes: List[str] = []
    several_sizes = len(set(n.tolist())) >= 2
    fixed = serial = parallel = 0.0
    if several_sizes:
        design = np.column_stack([np.ones_like(n), n, n / cores])
        (fixed, serial, parallel), *_ = np.linalg.lstsq(design, wall, rcond=None)
        if serial < 0 or parallel < 0:
            notes.append(f"the three-term fit gave s = {serial * 1000:.2f} ms, p = {parallel * 1000:.2f} core-ms "
                         "(a negative cost): s is dropped")
            several_sizes = False
    if not several_sizes:
        design = np.column_stack([np.ones_like(n), n / cores])
        (fixed, parallel), *_ = np.linalg.lstsq(design, wall, rcond=None)
        serial = 0.0
        if len(set(n.tolist())) == 1:
            driver = float(np.median([sum(r.stage_s.get(stage, 0.0) for stage in DRIVER_SERIAL_STAGES)
                                      for r in good]))
            notes.append(
                f"one input size ({int(n[0])} images): a serial per-image cost (work on the driver that grows with "
                f"the images, e.g. listing and reconciling: {driver:.1f} s here, mostly fixed) cannot be told apart "
                "from F; the projection takes it as 0, which is optimistic for millions of files. Give --input "
                "twice (two sizes) to fit it")
    everything = np.array([r.wall_s for r in good])
    predicted = np.array([fixed + serial * r.images + parallel * r.images / r.total_cores for r in good])
    residuals = everything - predicted
    total = float(((everything - everything.mean()) ** 2).sum())
    r2 = 1 - float((residuals ** 2).sum()) / total if total > 0 else 1.0
    if parallel <= 0:
        notes.append("the parallel cost came out <= 0: more cores did not help in these runs")
    return Fit(fixed_s=float(fixed), parallel_core_s_per_image=float(parallel), serial_s_per_image=float(serial),
               serial_fitted=several_sizes, r2=r2, points=len(good),
               residuals=[round(float(x), 2) for x in residuals], notes=notes)


def driver_serial_cost(rows: Sequence[Measurement]) -> Optional[float]:
    """Seconds per image of the driver-side stages (list, reconcile) that grow with the input,
    from runs on inputs of several sizes (slope of their medians); None with one size."""
    import numpy as np

    by_size: Dict[int, List[float]] = {}
    for row in rows:
        if row.ok and not row.warmup and row.images:
            by_size.setdefault(row.images, []).append(sum(row.stage_s.get(k, 0.0) for k in DRIVER_SERIAL_STAGES))
    if len(by_size) < 2:
        return None
    sizes = sorted(by_size)
    slope = float(np.polyfit(sizes, [statistics.median(by_size[n]) for n in sizes], 1)[0])
    return max(0.0, slope)


def fit_from_task_time(rows: Sequence[Measurement], serial: Optional[float] = None) -> Optional[Fit]:
    """A second estimate, from the event logs: p = task core-seconds per image of the runs with
    the most cores (all of them busy, as on a cluster's loaded nodes), s = the driver's serial
    cost per image (`serial`, else measured from two input sizes, else 0), F = wall - s*n - p*n/C
    of those runs. On a small machine a run with fewer executors than CPUs gets spare CPU for its
    JVM and driver work, which makes the regression's slope (p) too flat and its F too high."""
    good = [r for r in rows if r.ok and not r.warmup and r.images and r.busy_core_s]
    if not good:
        return None
    notes = []
    if serial is None:
        serial = driver_serial_cost(rows)
        if serial is not None:
            notes.append(f"s = {serial * 1000:.3f} ms per image: growth of the driver's list + reconcile "
                         "stages between the input sizes")
    else:
        notes.append(f"s = {serial * 1000:.3f} ms per image, as given")
    serial = serial or 0.0
    most = max(r.total_cores for r in good)
    loaded = [r for r in good if r.total_cores == most]
    parallel = statistics.median(r.busy_core_s / r.images for r in loaded)
    fixed = statistics.median(r.wall_s - serial * r.images - parallel * r.images / r.total_cores for r in loaded)
    residuals = [round(r.wall_s - (fixed + serial * r.images + parallel * r.images / r.total_cores), 2)
                 for r in good]
    notes.insert(0, f"from the task time in the event logs of the {len(loaded)} runs on {most} cores")
    return Fit(fixed_s=float(fixed), parallel_core_s_per_image=float(parallel), serial_s_per_image=float(serial),
               serial_fitted=False, r2=float("nan"), points=len(loaded), residuals=residuals, notes=notes,
               method=f"task time per image in the event logs ({most} cores busy)")


def fill_from_event_logs(rows: Sequence[Measurement]) -> None:
    """Task time of runs measured before it was recorded (re-analysis of older results)."""
    for row in rows:
        if row.ok and row.busy_core_s is None and row.event_log:
            try:
                from orchard.analysis.eventlog import load_event_log
                from orchard.analysis.metrics import analyse

                row.busy_core_s = round(analyse(load_event_log(row.event_log)).busy_core_s, 2)
            except Exception as error:
                log.warning("could not read the event log %s: %s", row.event_log, error)


# --------------------------------------------------------------------------- summarising


@dataclass
class ConfigSummary:
    config: str
    executors: int
    cores_per_executor: int
    total_cores: int
    input: str
    images: int
    runs: int
    failed: int
    wall_median_s: float
    wall_min_s: float
    wall_max_s: float
    images_per_s: float
    speedup: float
    ideal_speedup: float
    efficiency: float
    predicted_s: Optional[float] = None
    skew_median: Optional[float] = None
    utilisation_median: Optional[float] = None
    featurize_median_s: Optional[float] = None
    featurize_speedup: Optional[float] = None  # of the featurize stage alone (the parallel part)
    startup_median_s: Optional[float] = None


def summarise(rows: Sequence[Measurement], model: Optional[Fit] = None) -> List[ConfigSummary]:
    """Per configuration and input: median wall time, images/s, speed-up and efficiency
    against the configuration with the fewest cores (one worker)."""
    groups: Dict[Tuple[str, str], List[Measurement]] = {}
    for row in rows:
        if not row.warmup:
            groups.setdefault((row.input, row.config), []).append(row)
    summaries: List[ConfigSummary] = []
    by_input: Dict[str, List[ConfigSummary]] = {}
    for (input_uri, label), members in groups.items():
        good = [r for r in members if r.ok]
        if not good:
            continue
        walls = [r.wall_s for r in good]
        median = statistics.median(walls)
        images = good[0].images or 0

        def med(values: List[Optional[float]]) -> Optional[float]:
            present = [v for v in values if v is not None]
            return round(statistics.median(present), 3) if present else None

        summary = ConfigSummary(
            config=label, executors=good[0].executors, cores_per_executor=good[0].cores_per_executor,
            total_cores=good[0].total_cores, input=input_uri, images=images, runs=len(good),
            failed=len(members) - len(good), wall_median_s=round(median, 2), wall_min_s=round(min(walls), 2),
            wall_max_s=round(max(walls), 2), images_per_s=round(images / median, 2) if median else 0.0,
            speedup=1.0, ideal_speedup=1.0, efficiency=1.0,
            predicted_s=round(model.predict(images, good[0].total_cores), 2) if model else None,
            skew_median=med([r.skew for r in good]), utilisation_median=med([r.utilisation for r in good]),
            featurize_median_s=med([r.stage_s.get("featurize") for r in good]),
            startup_median_s=med([r.stage_s.get("spark_start") for r in good]),
        )
        summaries.append(summary)
        by_input.setdefault(input_uri, []).append(summary)
    for members in by_input.values():
        base = min(members, key=lambda s: (s.total_cores, s.executors))
        for summary in members:
            summary.speedup = round(base.wall_median_s / summary.wall_median_s, 3)
            summary.ideal_speedup = round(summary.total_cores / base.total_cores, 3)
            summary.efficiency = round(summary.speedup / summary.ideal_speedup, 3)
            if base.featurize_median_s and summary.featurize_median_s:
                summary.featurize_speedup = round(base.featurize_median_s / summary.featurize_median_s, 3)
    summaries.sort(key=lambda s: (s.input, s.total_cores, s.executors))
    return summaries


# --------------------------------------------------------------------------- projecting


@dataclass
class Projection:
    model: str
    instance_type: str
    core_nodes: int
    worker_vcpus: int
    images: int
    run_s: float
    images_per_s: float
    speedup_vs_one_node: float
    efficiency_vs_one_node: float
    hourly_usd: Optional[float]
    run_cost_usd: Optional[float]
    startup_hours: Optional[float]
    with_startup_cost_usd: Optional[float]
    spot_run_cost_usd: Optional[float]


def pricing_module():
    """orchard.cloud.pricing when it is installed (the AWS price table), else None."""
    try:
        from orchard.cloud import pricing
    except ImportError:
        return None
    return pricing if hasattr(pricing, "hourly_cost") else None


def project(model: Fit, nodes: Sequence[int], images: Sequence[int], instance_type: str = DEFAULT_INSTANCE,
            vcpus_per_node: Optional[int] = None, vcpu_speed: float = 1.0, spot: bool = False,
            region: str = "eu-west-3") -> Tuple[List[Projection], List[str]]:
    """Time (and cost, with the price table) of a run on N core nodes: T = F + s*n + p*n/(N*vcpus*speed).

    `vcpu_speed`: work one EMR vCPU does per second relative to one core of the machine the fit
    was measured on (1.0: the same).
    """
    notes: List[str] = []
    pricing = pricing_module()
    if vcpus_per_node is None:
        vcpus_per_node = INSTANCE_VCPUS.get(instance_type)
        if pricing is not None:
            try:
                vcpus_per_node = pricing.instance_price(instance_type, region).vcpu
            except Exception:
                pass
    if not vcpus_per_node:
        raise OrchardError(f"vCPUs of {instance_type} unknown: pass --vcpus-per-node")
    if pricing is None:
        notes.append("no price table (orchard.cloud.pricing is not installed): projections have no cost")
    startup_hours = getattr(pricing, "DEFAULT_STARTUP_HOURS", None) if pricing else None
    rows: List[Projection] = []
    for n in images:
        one_node = model.predict(n, vcpus_per_node * vcpu_speed)
        for count in nodes:
            seconds = model.predict(n, count * vcpus_per_node * vcpu_speed)
            hourly = cost = with_startup = spot_cost = None
            if pricing is not None:
                try:
                    hourly = pricing.cluster_hourly_cost(instance_type, count, spot=spot, region=region)["total"] \
                        if hasattr(pricing, "cluster_hourly_cost") else pricing.hourly_cost(instance_type, count + 1, spot, region)
                    billed = max(seconds, 60.0) / 3600.0  # per second, one minute at least
                    cost = round(hourly * billed, 2)
                    if startup_hours is not None:
                        with_startup = round(hourly * (billed + startup_hours), 2)
                    if not spot and hasattr(pricing, "cluster_hourly_cost"):
                        spot_hourly = pricing.cluster_hourly_cost(instance_type, count, spot=True, region=region)["total"]
                        spot_cost = round(spot_hourly * billed, 2)
                except OrchardError as error:
                    if str(error) not in notes:
                        notes.append(str(error))
            rows.append(Projection(
                model=model.method, instance_type=instance_type, core_nodes=count, worker_vcpus=count * vcpus_per_node, images=n,
                run_s=round(seconds, 1), images_per_s=round(n / seconds, 1),
                speedup_vs_one_node=round(one_node / seconds, 2),
                efficiency_vs_one_node=round(one_node / seconds / count, 3),
                hourly_usd=hourly, run_cost_usd=cost, startup_hours=startup_hours,
                with_startup_cost_usd=with_startup, spot_run_cost_usd=spot_cost,
            ))
    return rows, notes


# --------------------------------------------------------------------------- writing


def write_csv(path: Path, rows: Sequence[Any]) -> Path:
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
    lines = ["# Scale test", ""]
    for key, value in context.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| config (executors x cores) | cores | images | runs | wall median (min-max) s | images/s | "
              "speed-up | ideal | efficiency | fitted s | featurize stage s (speed-up) | skew (median) | utilisation |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(
            f"| {s.config} | {s.total_cores} | {s.images} | {s.runs}{f' ({s.failed} failed)' if s.failed else ''} | "
            f"{s.wall_median_s:.1f} ({s.wall_min_s:.1f}-{s.wall_max_s:.1f}) | {s.images_per_s:.1f} | "
            f"{s.speedup:.2f} | {s.ideal_speedup:.0f} | {s.efficiency:.0%} | "
            f"{s.predicted_s if s.predicted_s is not None else '–'} | "
            f"{f'{s.featurize_median_s:.1f} ({s.featurize_speedup:.2f}x)' if s.featurize_speedup else '–'} | "
            f"{s.skew_median if s.skew_median is not None else '–'} | "
            f"{f'{s.utilisation_median:.0%}' if s.utilisation_median is not None else '–'} |")
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


# --------------------------------------------------------------------------- the whole test


@dataclass
class ScaleTest:
    inputs: List[str]
    configs: List[Config]
    out: Path
    master: Optional[str] = None  # None: start orchard's local cluster
    repeat: int = 3
    warmup: int = 1
    memory: str = "2g"  # per worker of the local cluster
    executor_memory: Optional[str] = None
    extra_args: List[str] = field(default_factory=list)
    timeout_s: float = 3600
    keep_outputs: bool = False
    nodes: Sequence[int] = DEFAULT_NODES
    images: Sequence[int] = DEFAULT_IMAGES
    instance_type: str = DEFAULT_INSTANCE
    vcpus_per_node: Optional[int] = None
    vcpu_speed: float = 1.0
    spot: bool = False
    serial_s_per_image: Optional[float] = None  # the driver's serial cost, when known from elsewhere

    def run(self) -> Dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        rows: List[Measurement] = []
        cluster = None
        master = self.master
        context: Dict[str, Any] = {
            "inputs": ", ".join(self.inputs), "configurations": ", ".join(c.label for c in self.configs),
            "repetitions": self.repeat, "warm-up runs (not counted)": self.warmup,
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load average at start": _load_average(),
        }
        commit = _git_commit()
        if commit:
            context["orchard commit"] = commit
        try:
            if master is None:
                cluster, master = self._start_cluster()
                context["cluster"] = (f"orchard local cluster: {max(c.executors for c in self.configs)} workers x "
                                      f"{max(c.cores for c in self.configs)} cores, {master}")
            else:
                context["cluster"] = f"existing master {master}"
            order = list(self.configs)
            for i in range(self.warmup):
                rows.append(measure(order[-1], self.inputs[0], master, self.out, i, True, self.extra_args,
                                    self.timeout_s, self.keep_outputs, self.executor_memory))
            for repetition in range(self.repeat):
                # alternate the order, so a drift in the machine's load does not favour one side
                for config in (order if repetition % 2 == 0 else order[::-1]):
                    for input_uri in self.inputs:
                        rows.append(measure(config, input_uri, master, self.out, repetition, False,
                                            self.extra_args, self.timeout_s, self.keep_outputs,
                                            self.executor_memory))
                        write_csv(self.out / MEASUREMENTS_CSV, rows)
        finally:
            if cluster is not None:
                log.info("stopping the local cluster")
                cluster.down()
        context["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        context["load average at end"] = _load_average()
        return self.finish(rows, context)

    def _start_cluster(self):
        try:
            from orchard.local.cluster import LocalCluster
        except ImportError:
            raise OrchardError("orchard's local cluster (orchard.local.cluster) is not available: "
                               "pass --master spark://HOST:PORT of a running master, or --master local") from None
        workers = max(c.executors for c in self.configs)
        cores = max(c.cores for c in self.configs)
        # its own state and free ports, not the usual ones: a worker of another cluster on this
        # machine that lost its master keeps knocking at 7077 and would join this one
        box = LocalCluster(state_dir=self.out / "cluster", default_ports=False)
        log.info("starting a local cluster: %d workers x %d cores (%s each)", workers, cores, self.memory)
        status = box.up(workers=workers, cores=cores, memory=self.memory, hdfs=False, s3=False)
        if status.get("already_running") and status.get("settings", {}).get("workers") != workers:
            raise OrchardError(f"a local cluster already runs in {self.out / 'cluster'} with other settings")
        return box, status["master_url"]

    def finish(self, rows: List[Measurement], context: Dict[str, Any]) -> Dict[str, Any]:
        fill_from_event_logs(rows)
        write_csv(self.out / MEASUREMENTS_CSV, rows)
        model: Optional[Fit] = None
        notes: List[str] = []
        try:
            model = fit(rows)
        except OrchardError as error:
            notes.append(f"no fit: {error}")
        by_task_time = fit_from_task_time(rows, self.serial_s_per_image)
        summaries = summarise(rows, model)
        write_csv(self.out / SUMMARY_CSV, summaries)
        projections: List[Projection] = []
        for candidate in (model, by_task_time):
            if candidate is None:
                continue
            if candidate.parallel_core_s_per_image <= 0:
                notes.append(f"no projection from the {candidate.method}: the parallel cost is not positive")
                continue
            more_rows, more = project(candidate, self.nodes, self.images, self.instance_type, self.vcpus_per_node,
                                      self.vcpu_speed, self.spot)
            projections += more_rows
            notes += [n for n in more if n not in notes]
        if projections:
            notes.append(f"projection: T = F + s*n + p*n/(nodes x vCPUs x {self.vcpu_speed}); one EMR vCPU "
                         f"taken as {self.vcpu_speed} core of this machine; F measured here (S3 listing, YARN "
                         "executor start and the cluster's own start are not in it)")
            write_csv(self.out / PROJECTION_CSV, projections)
        fits = {"regression": asdict(model) if model else None,
                "task_time": asdict(by_task_time) if by_task_time else None}
        (self.out / FIT_JSON).write_text(json.dumps(fits, indent=2) + "\n", encoding="utf-8")
        if summaries:
            speedup_plot(rows, summaries, model, self.out / SPEEDUP_PNG,
                         f"orchard scale-test: {', '.join(Path(i.rstrip('/')).name for i in self.inputs)}",
                         by_task_time)
        (self.out / REPORT_MD).write_text(markdown(summaries, model, projections, notes, context, by_task_time),
                                          encoding="utf-8")
        return {"rows": rows, "summaries": summaries, "fit": model, "fit_task_time": by_task_time,
                "projections": projections, "notes": notes, "out": self.out}


def read_measurements(path: Path) -> List[Measurement]:
    """Measurements back from a measurements.csv (to re-fit and re-plot without running)."""
    names = {f for f in Measurement.__dataclass_fields__}
    ints = {"executors", "cores_per_executor", "total_cores", "repetition", "images", "partitions", "executors_used"}
    floats = {"wall_s", "images_per_s", "skew", "tail_idle_core_s", "utilisation", "busy_core_s", "load_before",
              "load_after"}
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
