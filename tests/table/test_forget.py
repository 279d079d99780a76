"""Erasure and history on real Spark and Delta: `orchard forget`, its vacuum, `orchard history`."""
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchard.cli import main
from orchard.commands.history import render
from orchard.errors import OrchardError
from orchard.pipeline.config import RunConfig
from orchard.pipeline.run import run_pipeline
from orchard.table.forget import UNSAFE_RETENTION_ENV, forget
from orchard.table.read import history, read_features
from tests.fixtures.processes import run_captured
from tests.pipeline.test_incremental import make_input

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[2] / "src"


def paths_on_disk(table: Path) -> set:
    """Every path held by any Parquet file under `table` (live or not): what a disk scan finds."""
    found = set()
    for file in table.glob("*.parquet"):
        found |= set(pq.read_table(file, columns=["path"]).column("path").to_pylist())
    return found


@pytest.fixture(scope="module")
def grown(spark, sample_dir, model_file, tmp_path_factory):
    """An output of 9 images (Banana, Lemon, Kiwi x 3), then an update with 3 more."""
    root = tmp_path_factory.mktemp("forget")
    data = make_input(sample_dir, root / "in", 3)
    config = RunConfig(input=str(data), output=str(root / "out"), model_path=str(model_file), pca_k=2)
    run_pipeline(config, spark=spark)
    make_input(sample_dir, data, 1, start=3)
    config.update = True
    run_pipeline(config, spark=spark)
    return data, root / "out", config


def test_forget_removes_the_rows_keeps_them_until_vacuum_and_an_update_does_not_bring_them_back(
        spark, grown):
    data, output, config = grown
    kiwi = sorted(p.relative_to(data).as_posix() for p in (data / "Training" / "Kiwi").iterdir())
    banana = sorted(p.relative_to(data).as_posix() for p in (data / "Training" / "Banana").iterdir())[0]
    before = history(str(output))[-1]["version"]

    result = forget(spark, str(output), ["Training/Kiwi", banana])  # a folder prefix and one path
    assert result.images == result.features_rows == len(kiwi) + 1 and result.paths == sorted(kiwi + [banana])
    assert result.features_version == before + 1  # one commit on features
    rows = set(read_features(str(output)).path)
    assert not rows & set(kiwi + [banana]) and len(rows) == 12 - 5
    assert set(kiwi + [banana]) <= set(read_features(str(output), version=before).path)  # time travel: still there
    assert set(kiwi) <= paths_on_disk(output / "features")  # on disk until vacuumed

    record = run_pipeline(config, spark=spark)  # the files are unchanged: not featurized again
    assert record.counts.forgotten == 5 and record.counts.featurized == 7 and record.history[-1]["featurized_now"] == 0
    assert not set(read_features(str(output)).path) & set(kiwi + [banana])

    with pytest.raises(OrchardError, match="vacuum refused.*nothing was forgotten"):  # Delta's 7-day retention
        forget(spark, str(output), ["Training/Lemon"], vacuum_hours=0)
    assert len(read_features(str(output))) == 7
    env = {**os.environ, UNSAFE_RETENTION_ENV: "1", "PYTHONPATH": str(SRC), "SPARK_LOCAL_IP": "127.0.0.1"}
    command = [sys.executable, "-m", "orchard", "forget", str(output), "Training/Lemon", "--vacuum", "--retain-hours",
               "0", "--master", "local[1]"]
    done = run_captured(command, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "forgot 4 image(s)" in printed and "vacuumed" in printed and "owner's to delete" in printed
    gone = set(kiwi + [banana])
    on_disk = paths_on_disk(output / "features") | paths_on_disk(output / "errors")
    assert not on_disk & gone and not any(p.startswith("Training/Lemon/") for p in on_disk)  # no file holds them
    assert {p for p in read_features(str(output)).path} == on_disk  # only the live rows are left
    record = run_pipeline(config, spark=spark)
    assert record.counts.forgotten == 9 and record.counts.featurized == 3


def test_forget_of_nothing_and_of_a_folder_without_output_are_clear_errors(spark, grown, tmp_path):
    _, output, _ = grown
    with pytest.raises(OrchardError, match="no image of .* matches Training/Mango"):
        forget(spark, str(output), ["Training/Mango"])
    with pytest.raises(OrchardError, match="no features table"):
        forget(spark, str(tmp_path), ["x"])
    assert main(["forget", str(output)]) == 2  # no path at all: one message, exit code 2


def test_history_lists_each_version_with_its_rows_and_pca_model(grown):
    _, output, _ = grown
    versions = history(str(output))
    assert [v["operation"] for v in versions[:2]] == ["WRITE", "MERGE"]
    assert (versions[0]["added"], versions[0]["rows"]) == (9, 9) and (versions[1]["added"], versions[1]["rows"]) == (3, 12)
    assert all(v["orchard"]["pca_model"] == "pca_model" for v in versions if not v["operation"].startswith("VACUUM"))
    assert versions[1]["orchard"]["run"]["mode"] == "update" and versions[1]["orchard"]["run"]["new"] == 3
    table = render(versions).splitlines()
    assert table[0].split()[:3] == ["version", "committed", "(UTC)"] and len(table) == len(versions) + 1
    assert "run (update)" in table[2] and "pca_model" in table[2]


@pytest.mark.parametrize("kill_at", ["write", "commit"])
def test_a_killed_forget_leaves_the_features_version_and_a_rerun_completes(grown, tmp_path, kill_at):
    """Killed after recording what is forgotten (write) or after the errors commit (commit):
    the features table is its previous version for delta-rs; forgetting again completes."""
    import shutil

    from orchard.pipeline.killpoints import KILL_AT_ENV

    _, committed, _ = grown
    output = tmp_path / "out"
    shutil.copytree(committed, output)
    before = read_features(str(output)).sort_values("path").path.tolist()
    versions = len(history(str(output)))
    command = [sys.executable, "-m", "orchard", "forget", str(output), "Training/Banana", "--master", "local[1]"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "SPARK_LOCAL_IP": "127.0.0.1"}
    killed = run_captured(command, env={**env, KILL_AT_ENV: kill_at}, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert read_features(str(output)).sort_values("path").path.tolist() == before
    assert len(history(str(output))) == versions
    done = run_captured(command, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [p for p in read_features(str(output)).path if p.startswith("Training/Banana/")]
