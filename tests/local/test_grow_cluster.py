"""Runs that grow (issue 12) on the local cluster, for real, on the session's box (`local_box`,
tests/local/conftest.py: 2 workers of 1 core, SeaweedFS S3, HDFS; shared with the other cluster
modules, so this one keeps to the bucket orchard-grow and the HDFS folder /orchard-grow).

- On S3 (s3://) and on HDFS (hdfs:///), input and output: a first run; an --update after adding
  and removing images (same rows and features as a full local-mode run on the new input, old
  rows' pca unchanged); then, on that output, a kill -9 of the driver during the commit, a
  reader check (read_features through orchard.storage gives the previous output exactly) and a
  re-run. The first two runs are a module fixture per store (`grown`), so the update test and
  the kill test each stay a few minutes at most.
- Losing a worker: one worker's executor JVM killed (SIGKILL) while featurize tasks run; the
  output is exact (every listed path once, features equal to a run without the kill) and
  `orchard report` shows the failed and retried tasks of the featurize stage. Only the executor
  is killed, not the worker: its worker starts a new one, so the box is whole again for the
  tests after this one (in this module or another).

The full-run references run in local mode in the background from the module's start.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from orchard.local.profiles import profile_spark_conf
from orchard.pipeline.killpoints import KILL_AT_ENV
from orchard.table.read import read_features
from orchard.storage.fs import Storage
from tests.fixtures.processes import command_line, descendants, kill_group, run_logged, wait_logged
from tests.local.boxes import REPO, orchard, using_box

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

LABELS = ("Banana", "Lemon", "Kiwi")
LOSS_LABELS = ("Apple Braeburn", "Banana", "Kiwi", "Lemon", "Orange", "Strawberry")
TOLERANCE = 1e-5


def copy_images(sample_dir: Path, root: Path, labels, per_label: int, start: int = 0) -> Path:
    """`per_label` Training images of each label (from the `start`-th, sorted) copied below `root`."""
    for label in labels:
        (root / "Training" / label).mkdir(parents=True, exist_ok=True)
        for image in sorted((sample_dir / "Training" / label).iterdir())[start:start + per_label]:
            shutil.copy(image, root / "Training" / label / image.name)
    return root


def relative_files(root: Path) -> List[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def start_local_run(data: Path, output: Path, env: Dict[str, str]) -> subprocess.Popen:
    with open(f"{output}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "orchard", "run", "--input", str(data), "--output", str(output),
                                 "--master", "local[2]", "--pca-k", "2"], env=env, cwd=str(REPO),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_dir, model_file):
    """Local folders: v1 (3 labels x 3), v2 (v1 + 3 new - 1 removed), v3 (v2 + 3 new), the
    worker-loss set (6 labels x 16); local-mode full runs of v2 and of the loss set, started now."""
    root = tmp_path_factory.mktemp("grow-inputs")
    v1 = copy_images(sample_dir, root / "v1", LABELS, 3)
    v2 = root / "v2"  # copies keep their mtimes: on HDFS, push copies them along (a new mtime: a changed file)
    shutil.copytree(v1, v2)
    copy_images(sample_dir, v2, LABELS, 1, start=3)
    removed = sorted((v2 / "Training" / "Kiwi").iterdir())[0]
    removed.unlink()
    v3 = root / "v3"
    shutil.copytree(v2, v3)
    copy_images(sample_dir, v3, LABELS, 1, start=4)
    loss = copy_images(sample_dir, root / "loss", LOSS_LABELS, 16)
    env = {**os.environ, "ORCHARD_MODEL_DIR": str(model_file.parent),
           "ORCHARD_CACHE_DIR": str(tmp_path_factory.mktemp("grow-reference-cache"))}
    env.pop(KILL_AT_ENV, None)
    references = {name: (start_local_run(data, root / f"reference-{name}", env), root / f"reference-{name}")
                  for name, data in (("v2", v2), ("loss", loss))}
    try:
        yield {"v1": v1, "v2": v2, "v3": v3, "loss": loss, "removed": removed.relative_to(v2).as_posix(),
               "references": references}
    finally:
        for process, _ in references.values():
            if process.poll() is None:
                kill_group(process)
            process.wait()


def reference(inputs, name: str) -> Dict[str, np.ndarray]:
    process, output = inputs["references"][name]
    log = Path(f"{output}.log")
    assert wait_logged(process, log, 600, f"reference run {name}") == 0, log.read_text(errors="replace")[-4000:]
    return {row.path: np.asarray(row.features) for row in read_features(str(output)).itertuples()}


@pytest.fixture(scope="module")
def box(local_box, inputs):
    """The session's box, for this module (the references start first); its own `env`."""
    with using_box(local_box) as box:
        box["env"].pop(KILL_AT_ENV, None)
        yield {**box, "storage": Storage(profile_spark_conf("local"))}


def run(box, data: str, output: str, *options: str, kill_at: Optional[str] = None, log: Optional[Path] = None) -> int:
    """`orchard run --profile local`; its return code (asserted 0 unless killed on purpose, then
    its output goes to `log`)."""
    if kill_at is None:
        orchard(box["env"], "run", "--input", data, "--output", output, "--profile", "local", "--pca-k", "2",
                *options)
        return 0
    env = {**box["env"], KILL_AT_ENV: kill_at}
    return run_logged([sys.executable, "-m", "orchard", "run", "--input", data, "--output", output,
                       "--profile", "local", "--pca-k", "2", *options], log, env=env, cwd=REPO, timeout=300)


def rows(box, output: str) -> Dict[str, tuple]:
    frame = read_features(output, storage=box["storage"])
    paths = frame.path.tolist()
    assert len(paths) == len(set(paths)), "a path twice"
    return {row.path: (np.asarray(row.features), np.asarray(row.pca)) for row in frame.itertuples()}


def push(box, folder: Path, uri: str) -> None:
    orchard(box["env"], "push", str(folder), uri, "--profile", "local")


STORES = ["s3://orchard-grow", "hdfs:///orchard-grow"]


@pytest.fixture(scope="module")
def grown(box, inputs):
    """Per store, made once: a first run on v1, then v2 pushed (3 new, 1 removed) and `--update`;
    the rows after each run. The killed-commit test goes on from the updated output."""
    made: Dict[str, Dict[str, object]] = {}

    def grow(store: str) -> Dict[str, object]:
        if store not in made:
            data, output = f"{store}/in", f"{store}/out"
            push(box, inputs["v1"], data)
            run(box, data, output)
            first = rows(box, output)
            push(box, inputs["v2"], data)  # 3 new images; then 1 removed
            assert box["storage"].delete(f"{data}/{inputs['removed']}", recursive=False)
            run(box, data, output, "--update")
            made[store] = {"data": data, "output": output, "first": first, "second": rows(box, output)}
        return made[store]

    return grow


@pytest.mark.parametrize("store", STORES)
def test_update_on_the_cluster_matches_a_full_run_and_keeps_the_old_pca(box, inputs, grown, store):
    state = grown(store)
    first, second = state["first"], state["second"]
    assert sorted(first) == relative_files(inputs["v1"])
    full = reference(inputs, "v2")
    assert sorted(second) == sorted(full) == relative_files(inputs["v2"])
    assert max(np.abs(second[p][0] - full[p]).max() for p in full) <= TOLERANCE
    for path in set(first) & set(second):  # the old rows' pca: the same space, unchanged
        assert np.abs(second[path][1] - first[path][1]).max() <= 1e-6
    history = json.loads(box["storage"].read_bytes(f"{state['output']}/run.json"))["history"]
    assert [(h["mode"], h["new"], h["removed"], h["unchanged"], h["featurized_now"]) for h in history] == [
        ("full", 9, 0, 0, 9), ("update", 3, 1, 8, 3)]


@pytest.mark.parametrize("store", STORES)
def test_a_killed_commit_on_the_cluster_keeps_the_previous_output(box, inputs, grown, store, tmp_path):
    state = grown(store)  # the updated output of the test above (made here if it ran alone)
    data, output, second = state["data"], state["output"], state["second"]
    assert rows(box, output).keys() == second.keys()  # what this test starts from
    push(box, inputs["v3"], data)  # 3 more; the driver killed at the commit
    chunked = ("--update", "--chunk-images", "2")  # staged in chunks (a small update is featurized in one go)
    assert run(box, data, output, *chunked, kill_at="commit", log=tmp_path / "killed.log") == -signal.SIGKILL
    after_kill = rows(box, output)
    assert sorted(after_kill) == sorted(second)  # the previous output, exactly
    assert all(np.array_equal(after_kill[p][0], second[p][0]) and np.array_equal(after_kill[p][1], second[p][1])
               for p in second)
    run(box, data, output, *chunked)
    third = rows(box, output)
    assert sorted(third) == relative_files(inputs["v3"])
    last = json.loads(box["storage"].read_bytes(f"{output}/run.json"))["history"][-1]
    assert last["new"] == 3 and last["featurized_now"] == 0  # the killed run's staged chunk was kept


def _maps(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "maps").read_text(errors="replace")
    except OSError:
        return ""


def featurizing_executor(worker_pid: int) -> Optional[int]:
    """The pid of the worker's executor JVM while it featurizes: one of its Python workers has
    ONNX Runtime loaded (other stages run Python workers too, without it), else None."""
    for pid in descendants(worker_pid)[1:]:
        if "CoarseGrainedExecutorBackend" in command_line(pid):
            if any("onnxruntime" in _maps(p) for p in descendants(pid)[1:] if "pyspark.daemon" in command_line(p)):
                return pid
    return None


def test_losing_a_worker_mid_featurize_changes_nothing(box, inputs, tmp_path):
    data, output = "s3://orchard-grow/loss", "s3://orchard-grow/loss-out"
    push(box, inputs["loss"], data)
    env = dict(box["env"])
    command = [sys.executable, "-m", "orchard", "run", "--input", data, "--output", output, "--profile", "local",
               "--pca-k", "2"]
    log_file = tmp_path / "run.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        worker = box["status"]["pids"]["spark-worker-1"]
        killed = None
        deadline = time.time() + 600
        while killed is None and process.poll() is None and time.time() < deadline:
            executor = featurizing_executor(worker)
            if executor is not None:
                os.kill(executor, signal.SIGKILL)
                killed = executor
            time.sleep(0.2)
        returncode = wait_logged(process, log_file, 600, "orchard run (an executor killed)")
    assert returncode == 0, log_file.read_text()[-4000:]
    assert killed is not None, "the featurize stage ended before an executor could be killed"

    ours = rows(box, output)
    full = reference(inputs, "loss")
    assert sorted(ours) == sorted(full) == relative_files(inputs["loss"])  # none missing, none twice
    assert max(np.abs(ours[p][0] - full[p]).max() for p in full) <= TOLERANCE

    report = json.loads(orchard(box["env"], "report", output, "--profile", "local", "--out", str(tmp_path / "r"),
                                "--json").stdout)
    lines = report["task_failures"]
    assert any("featurize" in line and "lost" in line for line in lines), lines
    assert report["failed_tasks"] >= 1
