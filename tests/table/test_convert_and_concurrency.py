"""An output of the release before Delta tables converted (`orchard convert`), and two runs at once.

The old output is made by that release's own code (its `src/` at RELEASED, from this
repository's history), so the conversion is tested on what users really have on disk.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from orchard.errors import OrchardError
from orchard.table.read import history, read_features
from tests.fixtures.processes import run_captured
from tests.pipeline.test_incremental import make_input

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
RELEASED = "4e53bf1"  # main before the Delta tables: Parquet folders + _orchard/commits/<n>.json


def released_src(root: Path) -> Path:
    """The src/ of RELEASED, extracted from git into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "src.tar"
    done = subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), RELEASED, "src"],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"the released code {RELEASED} is not in this clone's history: {done.stderr}"
    with tarfile.open(archive) as tar:
        tar.extractall(root)
    return root / "src"


def orchard(src: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    return run_captured([sys.executable, "-m", "orchard", *args], env=env, timeout=300)


def test_an_output_of_the_previous_release_is_refused_with_a_hint_and_converts_to_the_same_rows(
        spark, sample_dir, model_file, tmp_path):
    from orchard.pipeline.config import RunConfig
    from orchard.pipeline.run import run_pipeline

    old_src = released_src(tmp_path / "released")
    data = make_input(sample_dir, tmp_path / "in", 3)
    old = tmp_path / "old"
    done = orchard(old_src, "run", "--input", str(data), "--output", str(old), "--model-path", str(model_file),
                   "--pca-k", "2", "--master", "local[1]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (old / "_orchard" / "commits").is_dir() and not (old / "features" / "_delta_log").exists()

    with pytest.raises(OrchardError, match=r"orchard convert .* NEW_OUTPUT"):  # an --update on it: the hint
        run_pipeline(RunConfig(input=str(data), output=str(old), model_path=str(model_file), update=True), spark=spark)

    new = tmp_path / "new"
    done = orchard(SRC, "convert", str(old), str(new), "--master", "local[1]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "9 feature rows" in done.stdout
    import pyarrow.parquet as pq

    commit = json.loads(sorted((old / "_orchard" / "commits").glob("*.json"))[-1].read_text())
    was = pq.read_table([str(old / name) for name in commit["files"]["features"]]).to_pandas().set_index("path")
    now = read_features(str(new)).set_index("path")
    assert sorted(was.index) == sorted(now.index)
    assert all(np.asarray(was.loc[p, "pca"]).tobytes() == np.asarray(now.loc[p, "pca"]).tobytes() for p in was.index)
    assert now["size"].notna().all() and now["mtime_ms"].notna().all()  # the old index, in the table

    record = run_pipeline(RunConfig(input=str(data), output=str(new), model_path=str(model_file), update=True),
                          spark=spark)  # nothing changed since the old run: nothing featurized again
    assert record.history[-1]["featurized_now"] == 0 and record.counts.featurized == 9
    assert record.history[-1]["mode"] == "update" and record.history[0]["mode"] == "full"


def test_two_updates_at_once_commit_one_after_the_other_or_stop_clearly_never_a_duplicate(
        sample_dir, model_file, tmp_path):
    data = make_input(sample_dir, tmp_path / "in", 2)
    output = tmp_path / "out"
    base = ["run", "--input", str(data), "--output", str(output), "--model-path", str(model_file), "--pca-k", "2",
            "--master", "local[1]"]
    assert orchard(SRC, *base).returncode == 0
    make_input(sample_dir, data, 2, start=2)  # 6 new images for both
    env = {**os.environ, "PYTHONPATH": str(SRC), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    runs = [subprocess.Popen([sys.executable, "-m", "orchard", *base, "--update"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stdout.read(), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 2]), [stderr[-2000:] for _, _, stderr in results]
    if codes == [0, 2]:  # the loser: Delta's conflict, said in one line
        loser = next(stderr for code, _, stderr in results if code == 2)
        assert "another writer committed to" in loser and "run it again with --update" in loser
    rows = read_features(str(output)).path.tolist()
    assert len(rows) == len(set(rows)) == 12  # every image once: none lost, none twice
    assert [v["operation"] for v in history(str(output))][0] == "WRITE"
    shutil.rmtree(tmp_path / "in")
