"""orchard scale-test: configurations, the fit, speed-up and efficiency, projection, files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchard.analysis.scaling.fit import (
    FEATURIZE_FROM_EVENT_LOG, FEATURIZE_FROM_RUN_JSON, driver_serial_cost, fit, fit_from_task_time, project, summarise,
)
from orchard.analysis.scaling.records import Config, Measurement
from orchard.analysis.scaling.render import markdown, read_context, read_measurements, write_csv
from orchard.analysis.scaling.runner import ScaleTest, configurations, parse_counts, run_conf
from orchard.cli import main
from orchard.cloud import pricing
from orchard.errors import OrchardError
from orchard.names import RUN_RECORD, STAGE_FEATURIZE, STAGE_LIST, STAGE_RECONCILE
from orchard.pipeline.load import choose_partitions, planned_cores

F, P = 30.0, 0.02  # seconds; core-seconds per image


def _rows(sizes=(6480,), cores=(1, 2), repeat=3, serial=0.0):
    rows = []
    for n in sizes:
        for c in cores:
            for r in range(repeat):
                noise = (-0.5, 0.0, 0.5)[r % 3]
                rows.append(Measurement(
                    config=f"{c}x1", executors=c, cores_per_executor=1, total_cores=c, input=f"data{n}",
                    repetition=r, warmup=False, wall_s=F + serial * n + P * n / c + noise, ok=True, images=n,
                    stage_s={STAGE_LIST: 2.0, STAGE_FEATURIZE: P * n / c}))
    return rows


def test_configurations():
    assert configurations([1, 2], [1], grid=False) == [Config(1, 1), Config(2, 1)]
    assert [c.label for c in configurations([1, 2], [1, 2], grid=True)] == ["1x1", "1x2", "2x1", "2x2"]
    with pytest.raises(OrchardError, match="--grid"):
        configurations([1, 2], [1, 2], grid=False)
    assert parse_counts("2,1,2", "--workers") == [1, 2]
    for bad in ("0", "a", ""):
        with pytest.raises(OrchardError):
            parse_counts(bad, "--workers")
    assert run_conf(Config(2, 1), "spark://h:7077") == (
        "spark://h:7077", {"spark.cores.max": "2", "spark.executor.cores": "1"})
    assert run_conf(Config(2, 2), "local") == ("local[4]", {})


def test_fit_recovers_fixed_and_per_image_costs():
    model = fit(_rows())
    assert model.fixed_s == pytest.approx(F, abs=0.5)
    assert model.parallel_core_s_per_image == pytest.approx(P, rel=0.01)
    assert model.serial_s_per_image == 0 and not model.serial_fitted
    assert model.r2 > 0.99 and model.points == 6
    assert model.predict(90_000, 12) == pytest.approx(F + P * 90_000 / 12, rel=0.01)


def test_fit_with_two_sizes_separates_a_serial_cost():
    model = fit(_rows(sizes=(1920, 6480), serial=0.001))
    assert model.serial_fitted
    assert model.serial_s_per_image == pytest.approx(0.001, abs=2e-4)
    assert model.fixed_s == pytest.approx(F, abs=1.0)


def test_fit_follows_medians_not_a_slowed_run():
    rows = _rows()
    rows[0].wall_s += 300  # someone else's job slowed one run
    model = fit(rows)
    assert model.fixed_s == pytest.approx(F, abs=1.0)
    assert model.parallel_core_s_per_image == pytest.approx(P, rel=0.02)


def test_fit_from_task_time_of_the_loaded_runs():
    rows = _rows()
    for row in rows:  # all cores busy: 1.2 x the work per image of the 1-core runs
        row.busy_core_s = P * row.images * (1.2 if row.total_cores == 2 else 1.0)
    model = fit_from_task_time(rows)
    assert model.parallel_core_s_per_image == pytest.approx(1.2 * P)
    assert model.fixed_s == pytest.approx(F + P * 6480 / 2 - 1.2 * P * 6480 / 2, abs=0.6)
    assert "2 cores busy" in model.method


def test_fit_needs_two_core_counts():
    with pytest.raises(OrchardError, match="two core counts"):
        fit(_rows(cores=(2,)))


def test_speedup_and_efficiency_against_one_worker():
    summaries = summarise(_rows())
    one, two = summaries
    assert (one.config, two.config) == ("1x1", "2x1")
    expected = (F + P * 6480) / (F + P * 6480 / 2)
    assert two.speedup == pytest.approx(expected, rel=1e-3)
    assert two.ideal_speedup == 2 and two.efficiency == pytest.approx(expected / 2, rel=1e-3)
    assert one.speedup == 1 and one.runs == 3 and one.wall_min_s < one.wall_median_s < one.wall_max_s
    # the featurize stage alone (P * n / cores in the rows) scales perfectly: efficiency 1,
    # the whole run (with its fixed cost F) less
    assert two.featurize_speedup == pytest.approx(2.0, rel=1e-3)
    assert two.featurize_efficiency == pytest.approx(1.0, rel=1e-3) and two.efficiency < 0.99


def test_featurize_stage_from_the_event_logs_when_every_run_has_them():
    rows = _rows()
    for row in rows:  # the jobs' span: the driver's stage less 2 s of planning before the first job
        row.featurize_jobs_s = row.stage_s[STAGE_FEATURIZE] - 2.0
    one, two = summarise(rows)
    assert one.featurize_source == two.featurize_source == FEATURIZE_FROM_EVENT_LOG
    assert two.featurize_median_s == pytest.approx(P * 6480 / 2 - 2.0, abs=1e-3)
    assert two.featurize_speedup == pytest.approx((P * 6480 - 2.0) / (P * 6480 / 2 - 2.0), rel=1e-3)
    rows[0].featurize_jobs_s = None  # one run's event log unreadable: every run's from run.json
    one, two = summarise(rows)
    assert two.featurize_source == FEATURIZE_FROM_RUN_JSON and two.featurize_speedup == pytest.approx(2.0, rel=1e-3)
    assert "featurize stage: run.json" in markdown([one, two], None, [], [], {})


def test_failed_and_warmup_runs_do_not_count():
    rows = _rows()
    rows.append(Measurement(config="1x1", executors=1, cores_per_executor=1, total_cores=1, input="data6480",
                            repetition=9, warmup=False, wall_s=1.0, ok=False, error="exit 1"))
    rows.append(Measurement(config="2x1", executors=2, cores_per_executor=1, total_cores=2, input="data6480",
                            repetition=0, warmup=True, wall_s=999.0, ok=True, images=6480))
    one, two = summarise(rows)
    assert one.failed == 1 and one.runs == 3 and two.wall_max_s < 999


def test_projection_time_and_cost():
    model = fit(_rows())
    rows, notes = project(model, [3, 10], [90_000], "m5.xlarge")
    three, ten = rows
    assert three.worker_vcpus == 12 and ten.worker_vcpus == 40
    assert three.run_s == pytest.approx(model.predict(90_000, 12), rel=1e-3)
    assert ten.run_s < three.run_s
    assert 0 < ten.efficiency_vs_one_node <= 1
    hourly = pricing.cluster_hourly_cost("m5.xlarge", 3)["total"]
    assert three.hourly_usd == pytest.approx(hourly)
    assert three.run_cost_usd == pytest.approx(hourly * max(three.run_s, 60) / 3600, abs=0.01)
    assert three.with_startup_cost_usd > three.run_cost_usd
    assert three.spot_run_cost_usd < three.run_cost_usd


def test_files_and_re_analysis(tmp_path):
    rows = _rows()
    write_csv(tmp_path / "measurements.csv", rows)
    again = read_measurements(tmp_path / "measurements.csv")
    assert [r.wall_s for r in again] == [r.wall_s for r in rows]
    assert again[0].stage_s == rows[0].stage_s and again[0].ok is True
    test = ScaleTest(inputs=["data6480"], configs=[Config(1, 1), Config(2, 1)], out=tmp_path)
    result = test.finish(again, {"machine": "test"})
    for name in ("summary.csv", "fit.json", "projection.csv", "speedup.png", "scale_test.md"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "speedup.png").read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "scale_test.md").read_text()
    assert "efficiency" in text and "m5.xlarge" in text and "- machine: test" in text
    assert "| featurize efficiency |" in text and "(2.00x) | 100% |" in text  # the 2x1 row
    assert read_context(tmp_path / "scale_test.md") == {"machine": "test"}
    assert read_context(tmp_path / "absent.md") == {}
    fits = json.loads((tmp_path / "fit.json").read_text())
    assert fits["regression"]["points"] == 6 and fits["task_time"] is None  # no event logs here
    assert len(result["projections"]) == 6


def test_command_re_analyses_a_folder(tmp_path, capsys):
    write_csv(tmp_path / "measurements.csv", _rows())
    assert main(["scale-test", "--analyse", str(tmp_path), "--nodes", "3", "--images", "90000"]) == 0
    out = capsys.readouterr().out
    assert "| 2x1 |" in out and "3 x m5.xlarge" in out
    assert main(["scale-test", "--workers", "1,2"]) == 2  # no --input


@pytest.mark.slow
def test_scale_test_end_to_end_and_the_report_of_a_run(tmp_path, sample_dir, capsys):
    """Two configurations of local[N] on 32 images, one run each; then `orchard report` on a kept run
    counts the tasks per executor that run.json took from Spark's REST API."""
    data = tmp_path / "data"
    for folder in sorted((sample_dir / "Training").iterdir())[:2]:
        (data / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:16]:
            shutil.copy(image, data / folder.name / image.name)
    out = tmp_path / "scale"
    code = main(["scale-test", "--input", str(data), "--master", "local", "--workers", "1,2", "--repeat", "1",
                 "--warmup", "0", "--out", str(out), "--keep-outputs"])
    assert code == 0, capsys.readouterr()
    rows = read_measurements(out / "measurements.csv")
    assert [r.total_cores for r in rows] == [1, 2] and all(r.ok and r.images == 32 for r in rows)
    assert all(r.app_id and r.event_log and r.skew is not None for r in rows)
    # the featurize jobs' span from the event log: within the driver's stage, which also plans before them
    assert all(0 < r.featurize_jobs_s < r.stage_s[STAGE_FEATURIZE] for r in rows)
    runs = sorted((out / "outputs").iterdir())
    record = json.loads((runs[-1] / RUN_RECORD).read_text())
    assert record["spark"]["event_log"] and Path(record["spark"]["event_log"].replace("file:", "", 1)).exists()
    capsys.readouterr()
    assert main(["report", str(runs[-1]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks_per_executor"] == {e["id"]: e["tasks"] for e in record["executors"]}
    assert (runs[-1] / "report" / "img" / "timeline.png").is_file()


@pytest.mark.parametrize("images, cores", [(1920, 2), (6480, 2), (6480, 1), (500, 12), (90_000, 12),
                                           (10_000_000, 200), (1000, 8), (33, 1)])
def test_partitions_are_whole_waves_of_bounded_tasks(images, cores):
    partitions = choose_partitions(images, cores)
    assert partitions % cores == 0  # no last, partial wave
    assert partitions // cores <= max(4, -(-images // (cores * 2000)))
    assert images / partitions <= 2000 and images / partitions >= 32


def test_partitions_for_few_images_and_the_bench():
    assert choose_partitions(6480, 2) == 4  # the bench on this 2-core machine: 2 waves of 1620 images
    assert choose_partitions(100, 8) == 3  # not enough for every core: tasks of at least 32 images
    assert choose_partitions(0, 4) == 1 and choose_partitions(5, 4) == 1


class _FakeSpark:
    """Just what planned_cores reads: the conf and defaultParallelism."""

    def __init__(self, conf, parallelism):
        self.sparkContext = type("Context", (), {
            "getConf": lambda _: type("Conf", (), {"get": lambda _, k, d=None: conf.get(k, d)})(),
            "defaultParallelism": parallelism,
        })()


def test_planned_cores_counts_executors_still_starting():
    standalone = {"spark.master": "spark://h:7077", "spark.cores.max": "8"}
    assert planned_cores(_FakeSpark(standalone, 2)) == 8  # 1 executor of 8 registered so far
    assert planned_cores(_FakeSpark({**standalone, "spark.cores.max": "1"}, 2)) == 1  # not the master's minimum 2
    yarn = {"spark.master": "yarn", "spark.executor.instances": "3", "spark.executor.cores": "4", "spark.task.cpus": "2"}
    assert planned_cores(_FakeSpark(yarn, 4)) == 6
    assert planned_cores(_FakeSpark({"spark.master": "yarn"}, 12)) == 12  # dynamic: what is there
    assert planned_cores(_FakeSpark({"spark.master": "local[3]", "spark.cores.max": "8"}, 3)) == 3


def test_driver_serial_cost_from_two_sizes():
    rows = _rows(sizes=(1920, 6480))
    for row in rows:
        row.stage_s = {STAGE_LIST: 2.0 + 0.0002 * row.images, STAGE_RECONCILE: 1.0 + 0.0001 * row.images}
        row.busy_core_s = P * row.images
    assert driver_serial_cost(rows) == pytest.approx(0.0003)
    assert driver_serial_cost(_rows()) is None
    assert fit_from_task_time(rows).serial_s_per_image == pytest.approx(0.0003)
    assert fit_from_task_time(rows, serial=0.001).serial_s_per_image == 0.001
