"""Shared fixtures: where the shared data and model are, and one local Spark session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ORCHARD_SHARED_DIR", REPO.parent / "shared"))
DATA = SHARED / "data"
MODEL_DIR = SHARED / "models"
MODEL_FILE = MODEL_DIR / "mobilenet_v2_1.0_224.onnx"
SAMPLE = DATA / "fruits-360-sample"

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def pytest_configure(config):
    if not MODEL_FILE.is_file():
        raise pytest.UsageError(f"the shared model is missing: {MODEL_FILE} (set ORCHARD_SHARED_DIR)")


@pytest.fixture(scope="session")
def model_file() -> Path:
    return MODEL_FILE


@pytest.fixture(scope="session")
def sample_dir() -> Path:
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


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache; the model comes from the shared folder."""
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ORCHARD_MODEL_DIR", str(MODEL_DIR))
    # recording a JVM class archive costs seconds at every JVM exit: tests/test_classarchive.py
    # turns it on where it is what is tested
    monkeypatch.setenv("ORCHARD_JVM_CLASS_ARCHIVE", "0")
