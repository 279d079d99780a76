"""The JVM class archive: recorded by the first JVM, published only once complete, then used."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchard.spark.classarchive import SWITCH_ENV, class_archive

JAVA = "/usr/bin/java"

# A process that starts Spark the way `orchard run` does, runs a job, stops, and says how the
# JVM was started.
SCRIPT = """
import json, sys
from orchard.spark.session import create_session, stop_session
spark = create_session("archive-test", "local[1]", class_archive_name="test")
arguments = list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
rows = spark.range(10).count()
stop_session(spark)
print(json.dumps({"rows": rows, "arguments": arguments}))
"""


def start_and_stop_spark(folder: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                            cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def archives(cache: Path):
    return sorted((cache / "jvm").glob("test-*.jsa"))


def test_off_by_switch_or_old_java(monkeypatch):
    monkeypatch.setenv(SWITCH_ENV, "0")
    assert class_archive("run", JAVA, 17, {}) is None
    monkeypatch.setenv(SWITCH_ENV, "1")
    assert class_archive("run", JAVA, 11, {}) is None
    assert class_archive("run", JAVA, 17, {}) is not None


def test_records_when_absent_then_maps_it(monkeypatch, tmp_path):
    monkeypatch.setenv(SWITCH_ENV, "1")
    first = class_archive("run", JAVA, 17, {})
    assert first.recording and f"-XX:ArchiveClassesAtExit={first.pending}" in first.java_options()
    first.pending.write_bytes(b"recorded classes")
    first.finish()
    assert first.path.read_bytes() == b"recorded classes" and not first.pending.exists()
    later = class_archive("run", JAVA, 17, {})
    assert not later.recording and f"-XX:SharedArchiveFile={later.path}" in later.java_options()


def test_another_class_path_gets_another_archive(monkeypatch):
    monkeypatch.setenv(SWITCH_ENV, "1")
    plain = class_archive("run", JAVA, 17, {})
    extended = class_archive("run", JAVA, 17, {"spark.driver.extraClassPath": "/opt/extra.jar"})
    assert plain.path != extended.path


def test_an_unfinished_recording_is_never_published(monkeypatch):
    monkeypatch.setenv(SWITCH_ENV, "1")
    archive = class_archive("run", JAVA, 17, {})
    archive.finish()  # the JVM wrote nothing (e.g. it was killed)
    assert not archive.path.exists()
    assert class_archive("run", JAVA, 17, {}).recording  # the next JVM records again


@pytest.mark.slow
def test_a_real_jvm_records_then_uses_the_archive_and_survives_a_broken_one(monkeypatch, tmp_path):
    monkeypatch.setenv(SWITCH_ENV, "1")
    cache = tmp_path / "cache"

    first = start_and_stop_spark(tmp_path)
    assert first["rows"] == 10
    assert any(a.startswith("-XX:ArchiveClassesAtExit=") for a in first["arguments"])
    [archive] = archives(cache)
    assert archive.suffix == ".jsa" and archive.stat().st_size > 10_000_000  # published, complete

    second = start_and_stop_spark(tmp_path)
    assert second["rows"] == 10
    assert f"-XX:SharedArchiveFile={archive}" in second["arguments"]

    archive.chmod(0o644)
    archive.write_bytes(archive.read_bytes()[:1_000_000])  # a truncated archive stops a JVM
    third = start_and_stop_spark(tmp_path)
    assert third["rows"] == 10  # started again without it
    assert not any("SharedArchiveFile" in a for a in third["arguments"])
    assert archives(cache) == []  # the broken archive was removed
    assert not list(tmp_path.glob("hs_err*"))  # the JVM's crash report is not left in the working folder
