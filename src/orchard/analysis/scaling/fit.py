"""The scale test's model: T = F + s*n + p*n/C fitted to the measured wall times (or taken from
the task time in the event logs), speed-up and efficiency per configuration, and the projection
of time and cost on N EMR core nodes."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple


from orchard.analysis.scaling.records import Measurement
from orchard.cloud import pricing
from orchard.errors import OrchardError
from orchard.names import STAGE_FEATURIZE, STAGE_LIST, STAGE_RECONCILE, STAGE_SPARK_START

DEFAULT_NODES = (3, 10, 50)
DEFAULT_IMAGES = (90_000, 10_000_000)
DEFAULT_INSTANCE = "m5.xlarge"
DRIVER_SERIAL_STAGES = (STAGE_LIST, STAGE_RECONCILE)


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
    import numpy as np  # deferred: a quarter of a second on every `orchard` start

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
    import numpy as np  # deferred: a quarter of a second on every `orchard` start

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
    featurize_median_s: Optional[float] = None  # see featurize_source
    featurize_source: str = ""  # FEATURIZE_FROM_EVENT_LOG or FEATURIZE_FROM_RUN_JSON
    featurize_speedup: Optional[float] = None  # of the featurize stage alone (the parallel part)
    featurize_efficiency: Optional[float] = None  # featurize_speedup / ideal_speedup
    startup_median_s: Optional[float] = None


FEATURIZE_FROM_EVENT_LOG = "event log"  # its Spark jobs: first submitted to last ended
FEATURIZE_FROM_RUN_JSON = "run.json"  # the driver's stage: also its planning before the first job


def featurize_seconds(rows: Sequence[Measurement]) -> Tuple[str, Callable[[Measurement], Optional[float]]]:
    """(source, seconds of a run's featurize stage): from the event logs when every counted
    run has them (the featurize jobs' span, as issue 15 measures the stage), else run.json's
    `seconds.featurize` (which also counts the driver's planning before the first job)."""
    counted = [row for row in rows if row.ok and not row.warmup]
    if counted and all(row.featurize_jobs_s is not None for row in counted):
        return FEATURIZE_FROM_EVENT_LOG, lambda row: row.featurize_jobs_s
    return FEATURIZE_FROM_RUN_JSON, lambda row: row.stage_s.get(STAGE_FEATURIZE)


def summarise(rows: Sequence[Measurement], model: Optional[Fit] = None) -> List[ConfigSummary]:
    """Per configuration and input: median wall time, images/s, speed-up and efficiency
    against the configuration with the fewest cores (one worker), of the whole run and of the
    featurize stage alone (the part that parallelises; see featurize_seconds)."""
    source, featurize_s = featurize_seconds(rows)
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
            featurize_median_s=med([featurize_s(r) for r in good]), featurize_source=source,
            startup_median_s=med([r.stage_s.get(STAGE_SPARK_START) for r in good]),
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
                summary.featurize_efficiency = round(summary.featurize_speedup / summary.ideal_speedup, 3)
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


def _vcpus(instance_type: str) -> int:
    """vCPUs of `instance_type` from the price table (the same in every region); OrchardError
    when the table does not know the type."""
    try:
        return pricing.instance_price(instance_type, pricing.PRICE_TABLE_REGION).vcpu
    except OrchardError:
        raise OrchardError(f"vCPUs of {instance_type} unknown: pass --vcpus-per-node") from None


def _costs(instance_type: str, count: int, seconds: float, spot: bool, region: str
           ) -> Tuple[float, float, Optional[float]]:
    """USD per hour of the cluster, USD for a run of `seconds` (billed per second, one minute at
    least) and, without `spot`, USD of that run with Spot core nodes. OrchardError when the price
    table does not cover the instance type or region."""
    hourly = pricing.cluster_hourly_cost(instance_type, count, spot=spot, region=region)["total"]
    billed = max(seconds, 60.0) / 3600.0
    spot_cost = None
    if not spot:
        spot_cost = round(pricing.cluster_hourly_cost(instance_type, count, spot=True, region=region)["total"]
                          * billed, 2)
    return hourly, round(hourly * billed, 2), spot_cost


def project(model: Fit, nodes: Sequence[int], images: Sequence[int], instance_type: str = DEFAULT_INSTANCE,
            vcpus_per_node: Optional[int] = None, vcpu_speed: float = 1.0, spot: bool = False,
            region: str = pricing.DEFAULT_REGION) -> Tuple[List[Projection], List[str]]:
    """Time and cost (from orchard's price table) of a run on N core nodes:
    T = F + s*n + p*n/(N*vcpus*speed); the notes say why a cost is missing.

    `vcpu_speed`: work one EMR vCPU does per second relative to one core of the machine the fit
    was measured on (1.0: the same). OrchardError when the vCPUs of `instance_type` are unknown.
    """
    notes: List[str] = []
    vcpus_per_node = vcpus_per_node or _vcpus(instance_type)
    startup_hours = pricing.DEFAULT_STARTUP_HOURS
    rows: List[Projection] = []
    for n in images:
        one_node = model.predict(n, vcpus_per_node * vcpu_speed)
        for count in nodes:
            seconds = model.predict(n, count * vcpus_per_node * vcpu_speed)
            hourly = cost = with_startup = spot_cost = None
            try:
                hourly, cost, spot_cost = _costs(instance_type, count, seconds, spot, region)
                with_startup = round(hourly * (max(seconds, 60.0) / 3600.0 + startup_hours), 2)
            except OrchardError as error:
                if str(error) not in notes:
                    notes.append(str(error))
            rows.append(Projection(
                model=model.method, instance_type=instance_type, core_nodes=count,
                worker_vcpus=count * vcpus_per_node, images=n,
                run_s=round(seconds, 1), images_per_s=round(n / seconds, 1),
                speedup_vs_one_node=round(one_node / seconds, 2),
                efficiency_vs_one_node=round(one_node / seconds / count, 3),
                hourly_usd=hourly, run_cost_usd=cost, startup_hours=startup_hours,
                with_startup_cost_usd=with_startup, spot_run_cost_usd=spot_cost,
            ))
    return rows, notes
