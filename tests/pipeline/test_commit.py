"""Crash safety: the driver killed (SIGKILL) at each point of a run, on the Delta tables.

Each case runs `orchard run` as a subprocess that kills itself at a named point
($ORCHARD_TEST_KILL_AT, see orchard.pipeline.killpoints), then checks that delta-rs and Spark's
own Delta reader both see the previous version exactly, and that a re-run completes with every
path once.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchard.errors import OrchardError
from orchard.pipeline.killpoints import KILL_AT_ENV
from orchard.table.read import history, read_features
from tests.fixtures.processes import run_logged
from tests.pipeline.test_incremental import make_input

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[2] / "src"


def small_pca_model(spark, folder: Path) -> str:
    """A Spark PCAModel fitted on 5-long vectors (not MobileNetV2's 1280), saved in `folder`."""
    from pyspark.ml.feature import PCA
    from pyspark.ml.linalg import Vectors

    frame = spark.createDataFrame([(Vectors.dense([float(i + j * j) for j in range(5)]),) for i in range(6)], ["v"])
    PCA(k=2, inputCol="v", outputCol="p").fit(frame).save(str(folder))
    return str(folder)


def orchard_run(data: Path, output: Path, model_file: Path, *options: str, kill_at: str = "") -> int:
    env = {**os.environ, "PYTHONPATH": str(SRC), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    command = [sys.executable, "-m", "orchard", "run", "--input", str(data), "--output", str(output),
               "--model-path", str(model_file), "--pca-k", "2", "--master", "local[2]", *options]
    log = output.parent / f"{output.name}-run-{kill_at or 'whole'}.log"
    return run_logged(command, log, env=env, timeout=300)  # a hang fails with every process's stacks


def snapshot(output: Path, spark=None):
    """(path, label), features and pca of every committed row, sorted by path: read by delta-rs,
    or by Spark's Delta reader when `spark` is given."""
    if spark is None:
        frame = read_features(str(output)).sort_values("path").reset_index(drop=True)
        return frame[["path", "label"]].values.tolist(), [list(x) for x in frame.features], [list(x) for x in frame.pca]
    rows = spark.read.format("delta").load(str(output / "features")).orderBy("path").collect()
    return [[r.path, r.label] for r in rows], [list(r.features) for r in rows], [list(r.pca) for r in rows]


@pytest.fixture(scope="module")
def first_run(sample_dir, model_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    data = make_input(sample_dir, root / "in", 4)
    output = root / "out"
    assert orchard_run(data, output, model_file) == 0
    return data, output


def killed_then_checked(spark, data: Path, output: Path, model_file: Path, kill_at: str, before, *options) -> None:
    """A run with `options`, killed at `kill_at`: both readers see `before` exactly; no new version."""
    versions = len(history(str(output)))
    assert orchard_run(data, output, model_file, *options, kill_at=kill_at) == -signal.SIGKILL
    assert snapshot(output) == before  # the previous version, exactly (delta-rs)
    assert snapshot(output, spark) == before  # and Spark's Delta reader
    assert len(history(str(output))) == versions


def rerun_and_check(data: Path, output: Path, model_file: Path, rows: int, redone: tuple) -> None:
    """The --update after the kills completes: every path once, (featurized_now, resumed_chunks)
    as `redone`, one new version that run.json names."""
    versions = len(history(str(output)))
    assert orchard_run(data, output, model_file, "--update", "--chunk-images", "4") == 0
    paths = read_features(str(output)).path.tolist()
    assert len(paths) == len(set(paths)) == rows
    record = json.loads((output / "run.json").read_text())
    assert (record["history"][-1]["featurized_now"], record["history"][-1]["resumed_chunks"]) == redone
    assert len(history(str(output))) == versions + 1 == record["table"]["features_version"] + 1


def test_killed_updates_leave_the_previous_output_and_a_rerun_completes(spark, first_run, sample_dir, model_file,
                                                                        tmp_path):
    """The kills chained on one output: at start and featurize, then a re-run; 6 more images,
    killed at write, then again at commit, then a re-run."""
    source, committed = first_run
    data, output = tmp_path / "in", tmp_path / "out"
    shutil.copytree(source, data)
    shutil.copytree(committed, output)
    update = ("--update", "--chunk-images", "4")

    before = snapshot(output)
    make_input(sample_dir, data, 2, start=4)  # 6 new images, in chunks of 4
    killed_then_checked(spark, data, output, model_file, "start", before, *update)
    killed_then_checked(spark, data, output, model_file, "featurize", before, *update)
    rerun_and_check(data, output, model_file, 18, (2, 1))  # the first chunk (4) was committed: 2 redone

    before = snapshot(output)
    make_input(sample_dir, data, 2, start=6)  # 6 more
    killed_then_checked(spark, data, output, model_file, "write", before, *update)
    killed_then_checked(spark, data, output, model_file, "commit", before, *update)  # on what the write kill left
    rerun_and_check(data, output, model_file, 24, (0, 2))  # both chunks were committed: none redone


@pytest.mark.parametrize("kill_at", ["featurize", "commit"])
def test_a_killed_overwrite_keeps_the_old_output(spark, first_run, model_file, tmp_path, kill_at):
    source, committed = first_run
    output = tmp_path / "out"
    shutil.copytree(committed, output)
    before = snapshot(output)
    killed_then_checked(spark, source, output, model_file, kill_at, before, "--overwrite")
    assert orchard_run(source, output, model_file, "--overwrite") == 0
    record = json.loads((output / "run.json").read_text())
    assert [entry["mode"] for entry in record["history"]] == ["overwrite"]
    assert len(read_features(str(output))) == 12
    assert len(read_features(str(output), version=0)) == 12  # the replaced run: readable until a vacuum


def test_a_torn_or_missing_newest_log_entry_never_deletes_committed_data(first_run, sample_dir, model_file, tmp_path):
    source, committed = first_run
    data, output = tmp_path / "in", tmp_path / "out"
    shutil.copytree(source, data)
    shutil.copytree(committed, output)
    make_input(sample_dir, data, 1, start=4)
    assert orchard_run(data, output, model_file, "--update") == 0  # version 1
    files = sorted(p.name for p in (output / "features").glob("*.parquet"))
    newest = output / "features" / "_delta_log" / f"{1:020d}.json"

    newest.write_bytes(newest.read_bytes()[:40])  # torn: the first 40 bytes of the commit
    make_input(sample_dir, data, 1, start=5)
    code = orchard_run(data, output, model_file, "--update")
    assert set(files) <= {p.name for p in (output / "features").glob("*.parquet")}  # nothing deleted
    if code != 0:  # Delta refuses a log it cannot read: one clear message, the data left alone
        log = (output.parent / f"{output.name}-run-whole.log").read_text()
        assert "orchard: error:" in log

    for entry in newest.parent.glob(f"*{1:020d}*"):  # missing: the entry and its checksums gone
        entry.unlink()
    # the table is its version 0 again, every data file still there
    assert len(read_features(str(output))) == 12
    assert orchard_run(data, output, model_file, "--update") == 0
    assert set(files) <= {p.name for p in (output / "features").glob("*.parquet")}
    assert len(read_features(str(output)).path.unique()) == 18


def test_reader_without_a_table_is_a_clear_error(tmp_path):
    with pytest.raises(OrchardError, match="no Delta table there"):
        read_features(str(tmp_path))


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs mounted at tmp_path/disk (root only: skipped elsewhere), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_clear_error_and_leaves_the_last_commit(spark, sample_dir, model_file, tmp_path,
                                                                     small_disk):
    from orchard.pipeline.config import RunConfig
    from orchard.pipeline.run import run_pipeline

    data = make_input(sample_dir, tmp_path / "in", 5)
    output = small_disk / "out"
    run_pipeline(RunConfig(input=str(data), output=str(output), model_path=str(model_file), pca_k=3), spark=spark)
    before = snapshot(output)
    make_input(sample_dir, data, 50, start=5)  # 150 new images: ~770 KB of features, more than the disk has left
    with pytest.raises(OrchardError, match="no space left on the device .* still the last committed run"):
        run_pipeline(RunConfig(input=str(data), output=str(output), model_path=str(model_file), update=True),
                     spark=spark)
    assert snapshot(output) == before


def test_disk_full_recognises_enospc_from_python():
    import errno

    from orchard.pipeline.run import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(ValueError("No space left on device"))  # only OS errors and Java's own
