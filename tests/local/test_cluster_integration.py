"""The cloud in a box, for real: one `up` (2 workers, SeaweedFS S3, HDFS) for the module, the
sample pushed to S3 and to HDFS, `orchard run --profile local` from S3 to S3 and from HDFS to
HDFS, the outputs pulled back and compared with a local-mode run, then `down`.

Ports are free ones and the state directory is a temporary one, so a user's own box is never
touched. What `up` downloads from PyPI (~400 MB, once) is cached in $ORCHARD_TEST_CACHE_DIR
(default ~/.cache/orchard-tests). Wall time here: ~5 minutes on 2 cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

from orchard.local.processes import group_members, process_start_time
from tests.local.boxes import orchard, running_box

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4




@pytest.fixture(scope="module")
def box(tmp_path_factory, model_file):
    """One box for the module; stopped (and checked for leftovers) even when a test fails."""
    with running_box(tmp_path_factory.mktemp("box"), model_file, workers=2, cores=1, memory="1g",
                     hdfs=True, s3=True) as box:
        yield box


@pytest.fixture(scope="module")
def reference_started(tmp_path_factory, sample_dir, model_file):
    """The local-mode run every cluster run must agree with, started in the background (it
    overlaps the pushes, which mostly wait on HDFS)."""
    output = tmp_path_factory.mktemp("reference") / "run"
    env = {**os.environ, "ORCHARD_MODEL_DIR": str(model_file.parent),
           "ORCHARD_CACHE_DIR": str(tmp_path_factory.mktemp("reference-cache"))}
    log_file = open(output.parent / "run.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchard", "run", "--input", str(sample_dir), "--output", str(output),
         "--master", "local[2]"], env=env, cwd=str(REPO), stdout=log_file, stderr=subprocess.STDOUT)
    try:
        yield process, output, log_file
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log_file.close()


@pytest.fixture(scope="module")
def pushed(box, sample_dir, reference_started):
    """The sample, pushed to the box's S3 and HDFS."""
    summaries = {}
    for uri in ("s3://orchard-it/fruits", "hdfs:///orchard-it/fruits"):
        out = orchard(box["env"], "push", str(sample_dir), uri, "--profile", "local", "--json")
        summaries[uri] = json.loads(out.stdout)
    return summaries


@pytest.fixture(scope="module")
def reference(reference_started):
    process, output, log_file = reference_started
    returncode = process.wait(timeout=900)
    log_file.seek(0)
    assert returncode == 0, f"the local-mode reference run failed:\n{log_file.read()[-4000:]}"
    return output


def features_table(folder: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "features", columns=["path", "label", "split", "features"]).to_pandas()
    return table.sort_values("path").reset_index(drop=True)


def test_up_starts_everything_on_loopback(box):
    status = box["status"]
    assert status["running"] and status["workers_alive"] == 2
    assert status["master_url"].startswith("spark://127.0.0.1:")
    assert status["s3_endpoint"].startswith("http://127.0.0.1:")
    assert status["hdfs_url"].startswith("hdfs://127.0.0.1:")
    assert status["access_key"] and status["secret_key"]
    assert set(status["pids"]) == {"seaweedfs", "hdfs-namenode", "hdfs-datanode", "spark-master",
                                   "spark-worker-0", "spark-worker-1"}
    again = box["cluster"].up(workers=2, cores=1, memory="1g", hdfs=True, s3=True)
    assert again["already_running"] and again["pids"] == status["pids"]
    shown = json.loads(orchard(box["env"], "local", "status", "--json").stdout)
    assert shown["pids"] == status["pids"] and shown["workers_alive"] == 2


def test_push_copies_the_sample_and_skips_it_the_second_time(box, pushed, sample_dir):
    n_files = sum(1 for p in sample_dir.rglob("*") if p.is_file())
    for summary in pushed.values():
        assert summary["files"] == n_files and summary["copied"] == n_files
    again = json.loads(orchard(box["env"], "push", str(sample_dir), "s3://orchard-it/fruits",
                               "--profile", "local", "--json").stdout)
    assert again["copied"] == 0 and again["skipped"] == n_files


@pytest.mark.parametrize("store", ["s3://orchard-it", "hdfs:///orchard-it"])
def test_run_on_the_cluster_matches_local_mode(box, pushed, reference, store, tmp_path):
    output = f"{store}/runs/{store.split(':')[0]}"
    orchard(box["env"], "run", "--input", f"{store}/fruits", "--output", output, "--profile", "local")
    pulled = tmp_path / "pulled"
    orchard(box["env"], "pull", output, str(pulled), "--profile", "local")

    record = json.loads((pulled / "run.json").read_text())
    assert record["master"] == box["status"]["master_url"]
    assert record["counts"]["featurized"] == json.loads((reference / "run.json").read_text())["counts"]["featurized"]
    executors = record["executors"]
    assert len({e["id"] for e in executors}) == 2, executors  # tasks ran on both workers' executors
    assert all(e["tasks"] > 0 and e["host"] == "127.0.0.1" for e in executors)

    ours, theirs = features_table(pulled), features_table(reference)
    assert ours["path"].tolist() == theirs["path"].tolist()
    assert ours["label"].tolist() == theirs["label"].tolist()
    assert ours["split"].tolist() == theirs["split"].tolist()
    difference = np.abs(np.stack(ours["features"].to_numpy()) - np.stack(theirs["features"].to_numpy()))
    assert difference.max() <= TOLERANCE


def _processes_using(folder: Path) -> List[str]:
    """Live processes whose working directory or command line is inside `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if process_start_time(int(entry.name)) and (cwd.startswith(str(folder)) or str(folder) in cmdline):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_down_stops_everything_it_started(box):
    cluster, state_dir = box["cluster"], box["state_dir"]
    pids = dict(cluster.status()["pids"])
    children = [pid for leader in pids.values() for pid in group_members(leader)]
    result = cluster.down()
    assert result["stopped"] == pids
    assert all(process_start_time(pid) is None for pid in [*pids.values(), *children])
    if Path("/proc/self/cwd").exists():
        assert _processes_using(state_dir) == []
    assert cluster.status()["pids"] == {}
    assert json.loads(orchard(box["env"], "local", "status", "--json").stdout)["running"] is False
