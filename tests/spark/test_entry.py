"""The EMR step runs `spark-submit spark_entry.py run ...`: the same `orchard run` as locally.

The command comes from the builder the step uses (orchard.cloud.emr.spark_submit_args), with
local stand-ins: pyspark's own spark-submit, the entry script from the package, `local[2]`
instead of YARN, local folders instead of S3.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchard.cloud.artifacts import ENTRY_SCRIPT
from orchard.cloud.emr import orchard_run_args, spark_submit_args, step_request
from orchard.cloud.layout import Layout
from orchard.names import FEATURES_DIR, RUN_RECORD


def delta_jars_for_submit() -> str:
    """Delta's jars for a spark-submit of this machine's pyspark (on EMR, delta-defaults puts the
    cluster's own on the classpath: orchard.cloud.emr)."""
    from orchard.spark.delta import delta_jars

    return ",".join(str(path) for path in delta_jars())


def spark_submit_binary() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-submit")


def test_the_step_runs_the_entry_script_with_orchard_run_arguments():
    request = step_request("j-1", Layout("bucket-x"), "s3://bucket-x/data/", "s3://bucket-x/runs/a/")
    args = request.params["Steps"][0]["HadoopJarStep"]["Args"]
    expected = spark_submit_args("s3://bucket-x/orchard/spark_entry.py", orchard_run_args(
        "s3://bucket-x/data/", "s3://bucket-x/runs/a/", "/opt/orchard/models/mobilenet_v2_1.0_224.onnx"))
    assert args == expected
    assert ENTRY_SCRIPT.read_text().count("from orchard.cli import main") == 1


@pytest.mark.slow
def test_spark_submit_of_the_entry_script_runs_orchard_run(tmp_path, sample_dir, model_file):
    data = tmp_path / "data"
    for split, count in (("Training", 4), ("Test", 2)):
        for cls in sorted(p.name for p in (sample_dir / split).iterdir())[:3]:
            (data / split / cls).mkdir(parents=True)
            for image in sorted((sample_dir / split / cls).iterdir())[:count]:
                shutil.copy2(image, data / split / cls / image.name)
    output = tmp_path / "out"
    command = spark_submit_args(str(ENTRY_SCRIPT), orchard_run_args(str(data), str(output), str(model_file),
                                                                    ["--pca-k", "3"]),
                                master="local[2]", conf={"spark.ui.enabled": "false", "spark.jars": delta_jars_for_submit()})
    command[0] = spark_submit_binary()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{"):])  # what the step's stdout log holds
    record = json.loads((output / RUN_RECORD).read_text())
    assert record["counts"] == {"found": 18, "images": 18, "featurized": 18, "errors": 0, "ignored": 0,
                                "forgotten": 0}
    assert summary["counts"] == record["counts"]
    assert record["pca"]["k"] == 3
    assert record["master"] == "local[2]"  # spark-submit's master, not orchard's default
    assert (output / FEATURES_DIR).is_dir()
