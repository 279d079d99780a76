"""The EMR nodes' library set, run together: a Python 3.9 virtual environment made from exactly
the locked wheelhouse (--no-index --require-hashes), orchard's wheel, and pyspark 3.5.x standing
in for EMR's Spark, runs `orchard run` on the sample.

Slow the first time (pyspark's 300 MB source is built into a wheel; the wheelhouse is
downloaded): both are kept under $ORCHARD_NODE_SET_CACHE (default ~/.cache/orchard/node-set)
and the wheelhouse cache, with the environment itself, so later runs pay only the pipeline.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchard.cloud.wheelhouse import LOCK_NAME, lock_digest, locked_pins, normalize
from tests.cloud.conftest import LAYOUT

PYSPARK = "3.5.5"  # EMR 7.10's Spark
PY4J = "0.10.9.7"  # what pyspark 3.5 requires
CACHE = Path(os.environ.get("ORCHARD_NODE_SET_CACHE")
             or Path.home() / ".cache" / "orchard" / "node-set")


def run_checked(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command[:4]}...: {(result.stdout + result.stderr)[-3000:]}"
    return result


def pyspark_wheels(python39: str) -> Path:
    """pyspark and py4j wheels for the test (pyspark is a source release: built once, in pip's
    own build environment: a fresh Python 3.9 has no `wheel` package for setup.py bdist_wheel)."""
    folder = CACHE / "pyspark-wheels"
    if not list(folder.glob(f"pyspark-{PYSPARK}-*.whl")):
        partial = CACHE / ".pyspark-wheels.partial"
        shutil.rmtree(partial, ignore_errors=True)
        run_checked([python39, "-m", "pip", "wheel", "--isolated", "--disable-pip-version-check", "--no-deps",
                     "--use-pep517", "--wheel-dir", str(partial), f"pyspark=={PYSPARK}", f"py4j=={PY4J}"],
                    timeout=1800)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder


def node_environment(python39: str, wheelhouse: Path) -> Path:
    """The venv of exactly the locked set (+ pyspark), made once per lock; returns its python."""
    venv = CACHE / f"venv-{lock_digest()}-pyspark{PYSPARK}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        run_checked([python39, "-m", "venv", str(venv)], timeout=300)
        run_checked([str(python), "-m", "pip", "install", "--isolated", "--no-index", "--quiet",
                     "--find-links", str(wheelhouse / "x86_64"), "--require-hashes",
                     "--requirement", str(wheelhouse / LOCK_NAME)], timeout=1200)
        run_checked([str(python), "-m", "pip", "install", "--isolated", "--no-index", "--quiet",
                     "--find-links", str(pyspark_wheels(python39)), f"pyspark=={PYSPARK}"], timeout=600)
        (venv / ".complete").write_text("", encoding="utf-8")
    return python


@pytest.mark.slow
def test_the_locked_node_set_runs_the_pipeline_on_python39(tmp_path, python39, x86_64_wheelhouse, wheel,
                                                          sample_dir, model_file):
    python = node_environment(python39, x86_64_wheelhouse)
    run_checked([str(python), "-m", "pip", "install", "--isolated", "--no-index", "--no-deps", "--quiet",
                 "--force-reinstall", str(wheel)], timeout=300)
    listing = run_checked([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
                           "{d.metadata['Name']: d.version for d in m.distributions()}))"]).stdout
    installed = {normalize(name): version for name, version in json.loads(listing).items()}
    expected = {**locked_pins(), "orchard": LAYOUT.version, "pyspark": PYSPARK, "py4j": PY4J}
    assert {name: installed.get(name) for name in expected} == expected
    assert set(installed) - set(expected) <= {"pip", "setuptools"}  # exactly the set

    output = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SPARK_HOME", "SPARK_CONF_DIR", "PYSPARK_DRIVER_PYTHON")}
    env.update({"PYSPARK_PYTHON": str(python), "SPARK_LOCAL_IP": "127.0.0.1",
                "ORCHARD_CACHE_DIR": str(tmp_path / "cache")})
    run_checked([str(python), "-m", "orchard", "run", "--input", str(sample_dir), "--output", str(output),
                 "--model-path", str(model_file), "--master", "local[2]", "--pca-k", "20"],
                env=env, cwd=tmp_path, timeout=1200)
    record = json.loads((output / "run.json").read_text())
    images = len([p for p in sample_dir.rglob("*") if p.suffix.lower() == ".jpg"])
    assert record["counts"]["featurized"] == images and record["counts"]["errors"] == 0
    versions = record["versions"]
    assert versions["python"].startswith("3.9.")
    assert versions["executable"].startswith(str(python.parent.parent))  # orchard ran from the venv
    pins = locked_pins()
    assert {name: versions[name] for name in ("numpy", "pandas", "pyarrow", "onnxruntime", "pillow")} == \
        {name: pins[name] for name in ("numpy", "pandas", "pyarrow", "onnxruntime", "pillow")}
    assert record["spark"]["version"] == PYSPARK
    assert record["pca"]["k"] == 20
    assert (output / "features").is_dir()
