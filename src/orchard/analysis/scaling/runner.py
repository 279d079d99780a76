"""Running a scale test: each configuration's `orchard run`s in fresh processes, timed by the
wall clock, on orchard's local cluster (started and stopped here), an existing master, or
local[N]; then the fit, the projection and the files."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchard.analysis.eventlog import load_event_log
from orchard.analysis.metrics import Analysis, analyse
from orchard.analysis.report import load
from orchard.analysis.scaling.fit import (
    DEFAULT_IMAGES, DEFAULT_INSTANCE, DEFAULT_NODES, Fit, Projection, fit, fit_from_task_time, project, summarise,
)
from orchard.analysis.scaling.records import Config, Measurement
from orchard.analysis.scaling.render import (
    FIT_JSON, MEASUREMENTS_CSV, PROJECTION_CSV, REPORT_MD, SPEEDUP_PNG, SUMMARY_CSV, markdown, speedup_plot,
    write_csv,
)
from orchard.errors import OrchardError
from orchard.local.cluster import LocalCluster
from orchard.names import RUN_RECORD, STAGE_FEATURIZE
from orchard.progress import Display, is_quiet

log = logging.getLogger(__name__)


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
    record_file = output / RUN_RECORD
    if row.ok and record_file.is_file():
        _fill_from_record(row, json.loads(record_file.read_text(encoding="utf-8")), output)
    elif row.ok:
        row.ok, row.error = False, f"no {RUN_RECORD} in {output}"
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
        analysis, _ = load(str(output))
        main = analysis.main_stage
        row.utilisation = round(analysis.utilisation, 4)
        _fill_from_event_log(row, analysis)
        if main is not None:
            row.skew, row.tail_idle_core_s = round(main.skew, 3), round(main.tail_idle_core_s, 2)
    except Exception as error:  # the timing stands without the event-log measures
        log.warning("could not analyse the event log of %s: %s", row.app_id, error)


def _fill_from_event_log(row: Measurement, analysis: Analysis) -> None:
    """The measures a re-analysis can also take from an event log alone: task time, the featurize jobs' span."""
    row.busy_core_s = round(analysis.busy_core_s, 2)
    row.featurize_jobs_s = analysis.jobs_s_by_stage.get(STAGE_FEATURIZE)


def fill_from_event_logs(rows: Sequence[Measurement]) -> None:
    """Task time and the featurize jobs' span of runs measured before they were recorded
    (re-analysis of older results)."""
    for row in rows:
        if row.ok and (row.busy_core_s is None or row.featurize_jobs_s is None) and row.event_log:
            try:
                _fill_from_event_log(row, analysis=analyse(load_event_log(row.event_log)))
            except Exception as error:
                log.warning("could not read the event log %s: %s", row.event_log, error)



@dataclass
class ScaleTest:
    """A scale test: `run()` measures every configuration `repeat` times on each input (after
    `warmup` uncounted runs) and writes the files into `out`; `finish(rows, context)` fits,
    projects and writes them from measurements already made. Both return {"rows", "summaries",
    "fit", "fit_task_time", "projections", "notes", "out"}."""

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
        context = self._context()
        cluster = None
        try:
            master = self.master
            if master is None:
                cluster, master = self._start_cluster()
                context["cluster"] = (f"orchard local cluster: {max(c.executors for c in self.configs)} workers x "
                                      f"{max(c.cores for c in self.configs)} cores, {master}")
            else:
                context["cluster"] = f"existing master {master}"
            self._measure_all(master, rows)
        finally:
            if cluster is not None:
                log.info("stopping the local cluster")
                cluster.down()
        context["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        context["load average at end"] = _load_average()
        return self.finish(rows, context)

    def _context(self) -> Dict[str, Any]:
        """What the report says about the test and the machine before it starts."""
        context: Dict[str, Any] = {
            "inputs": ", ".join(self.inputs), "configurations": ", ".join(c.label for c in self.configs),
            "repetitions": self.repeat, "warm-up runs (not counted)": self.warmup,
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load average at start": _load_average(),
        }
        commit = _git_commit()
        if commit:
            context["orchard commit"] = commit
        return context

    def _measure_all(self, master: str, rows: List[Measurement]) -> None:
        """The warm-up runs, then every configuration and input `repeat` times, appended to `rows`
        (and measurements.csv rewritten after each run)."""
        order = list(self.configs)
        runs = self.warmup + self.repeat * len(order) * len(self.inputs)
        display = None if is_quiet() else Display(runs, "scale-test", unit="run")
        for i in range(self.warmup):
            rows.append(measure(order[-1], self.inputs[0], master, self.out, i, True, self.extra_args,
                                self.timeout_s, self.keep_outputs, self.executor_memory))
            _show_runs(display, rows, runs)
        for repetition in range(self.repeat):
            # alternate the order, so a drift in the machine's load does not favour one side
            for config in (order if repetition % 2 == 0 else order[::-1]):
                for input_uri in self.inputs:
                    rows.append(measure(config, input_uri, master, self.out, repetition, False,
                                        self.extra_args, self.timeout_s, self.keep_outputs,
                                        self.executor_memory))
                    write_csv(self.out / MEASUREMENTS_CSV, rows)
                    _show_runs(display, rows, runs)
        if display is not None:
            display.close()

    def _start_cluster(self) -> Tuple[LocalCluster, str]:
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
        """Fit, summarise, project and write every file from `rows`; the result (see the class)."""
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
        projections = self._projections((model, by_task_time), notes)
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

    def _projections(self, fits: Sequence[Optional[Fit]], notes: List[str]) -> List[Projection]:
        """Projections from each fit with a positive parallel cost (projection.csv); what
        prevented one goes to `notes`."""
        projections: List[Projection] = []
        for candidate in fits:
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
        return projections


def _show_runs(display: Optional[Display], rows: List[Measurement], runs: int) -> None:
    """Runs done / `runs`, failed runs as errors (nothing when `display` is None)."""
    if display is not None:
        display.update(len(rows), sum(1 for row in rows if not row.ok), final=len(rows) == runs)
