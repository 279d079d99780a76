"""Shared fixtures: where the shared data and model are, and one local Spark session.

Without the shared model or sample (set ORCHARD_SHARED_DIR), the tests that need them are
skipped: those using the `model_file` or `sample_dir` fixtures (directly or through another
fixture) or naming the shared paths below in their own code; the others run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ORCHARD_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
MODEL_DIR = SHARED / "models"
MODEL_FILE = MODEL_DIR / "mobilenet_v2_1.0_224.onnx"
SAMPLE = DATA / "fruits-360-sample"

# CI's rule for skips (.ci/allowed-skips.txt) and how xdist's workers share the suite
pytest_plugins = ["tests.plugins.skips", "tests.plugins.scheduling"]
pytest_plugins += ["tests.fixtures.sample",  # one featurized run of the sample per session
                   "tests.fixtures.models"]  # a tiny fruit model (the service, the container)

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


SHARED_FIXTURES = ("model_file", "sample_dir")
SHARED_NAMES = {"SHARED": SHARED, "DATA": DATA, "MODEL_DIR": MODEL_DIR, "MODEL_FILE": MODEL_FILE, "SAMPLE": SAMPLE}


def missing_shared() -> List[str]:
    """What of the shared folder is missing, as readable lines (empty when all is there)."""
    missing = []
    if not MODEL_FILE.is_file():
        missing.append(f"the shared model {MODEL_FILE}")
    if not SAMPLE.is_dir():
        missing.append(f"the shared sample {SAMPLE}")
    return missing


def needs_shared(item: pytest.Item) -> bool:
    """True when the test uses the shared model or sample: through a fixture, or by naming one of
    the shared paths in its own code (`DATA / ...`, `from tests.conftest import DATA`)."""
    if set(SHARED_FIXTURES) & set(getattr(item, "fixturenames", ())):
        return True
    code = getattr(getattr(item, "function", None), "__code__", None)
    return code is not None and bool(set(SHARED_NAMES) & set(code.co_names + code.co_varnames))


def pytest_collection_modifyitems(config, items):
    missing = missing_shared()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"missing {' and '.join(missing)} (set ORCHARD_SHARED_DIR)")
    for item in items:
        if needs_shared(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def model_file() -> Path:
    if not MODEL_FILE.is_file():
        pytest.skip(f"missing the shared model {MODEL_FILE} (set ORCHARD_SHARED_DIR)")
    return MODEL_FILE


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip(f"missing the shared sample {SAMPLE} (set ORCHARD_SHARED_DIR)")
    return SAMPLE


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One embedded Spark for the test session, configured like `orchard run` configures it."""
    from orchard.spark.session import create_session

    events = tmp_path_factory.mktemp("spark-events")
    session = create_session("orchard-tests", "local[2]", extra_conf={
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
        "spark.sql.shuffle.partitions": "4",
    })
    yield session
    session.stop()


@pytest.fixture
def sleepers():
    """start() -> a process that sleeps 2 minutes in its own session (a stand-in for a server of
    the local cluster), killed at the end of the test."""
    started = []

    def start():
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                   start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache; the model comes from the shared folder."""
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ORCHARD_MODEL_DIR", str(MODEL_DIR))
    # recording a JVM class archive costs seconds at every JVM exit: tests/spark/test_classarchive.py
    # turns it on where it is what is tested
    monkeypatch.setenv("ORCHARD_JVM_CLASS_ARCHIVE", "0")
