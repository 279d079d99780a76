"""A Java class-data sharing (CDS) archive of Spark's classes, for faster start-ups.

A Spark JVM spends seconds loading and verifying the same ~20,000 classes on every run. The
first run that orchard starts records them (`-XX:ArchiveClassesAtExit`, Java 13+, ~190 MB
under the cache folder); later runs map that archive (`-XX:SharedArchiveFile`) and start
seconds faster. `orchard run` uses one (archive name "run"). The JVM writes the archive when
it exits, to a temporary name that `finish()` renames once the JVM is gone, so no run ever
maps a half-written archive.
`ORCHARD_JVM_CLASS_ARCHIVE=0` turns it off. Only for JVMs orchard launches itself (not
under spark-submit), and only the driver's (in local mode it also runs the tasks).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from orchard.paths import cache_root

log = logging.getLogger(__name__)

SWITCH_ENV = "ORCHARD_JVM_CLASS_ARCHIVE"
MIN_JAVA = 13  # dynamic archives (JEP 350)
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # CDS warnings go to stdout otherwise
STALE_SECONDS = 3600  # an unfinished archive older than this was left by a killed run

# What decides the JVM's class path; an archive only serves the same class path.
CLASS_PATH_ENV = ("SPARK_HOME", "SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_DIST_CLASSPATH")


@dataclass
class ClassArchive:
    path: Path  # the finished archive
    recording: bool  # True: this JVM records it (to `pending`); False: this JVM maps `path`

    @property
    def pending(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")

    def java_options(self) -> str:
        if self.recording:
            return f"-XX:ArchiveClassesAtExit={self.pending} {QUIET}"
        # a damaged archive crashes the JVM at start (then orchard starts without it): keep the
        # JVM's crash report beside the archive, not in the user's working folder
        crash_report = self.path.with_name("hs_err_pid%p.log")
        return f"-XX:SharedArchiveFile={self.path} -XX:ErrorFile={crash_report} {QUIET}"

    def finish(self) -> None:
        """After the JVM exited: publish the archive it recorded (atomically)."""
        if self.recording and self.pending.is_file() and self.pending.stat().st_size > 0:
            os.replace(self.pending, self.path)
            log.info("JVM class archive written: %s (later runs start faster)", self.path)

    def discard(self) -> None:
        """The JVM would not start with this archive: remove it (the next run records a new one)."""
        self.path.unlink(missing_ok=True)


def class_archive(name: str, java: str, java_major: int, conf: Dict[str, str]) -> Optional[ClassArchive]:
    """The archive `name` for a JVM about to start with `conf`, or None (off, old Java, odd path).

    Each use (e.g. "run") has its own name: the archive holds the classes its first JVM loaded.
    """
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "no", "off") or java_major < MIN_JAVA:
        return None
    folder = cache_root() / "jvm"
    if any(c.isspace() for c in str(folder)):
        return None  # Spark splits extraJavaOptions on whitespace
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    path = folder / f"{name}-{_class_path_key(java, java_major, conf)}.jsa"
    archive = ClassArchive(path=path, recording=not path.is_file())
    if archive.recording:
        log.info("recording the JVM's classes for faster later start-ups (once, %s)", path)
    return archive


def _class_path_key(java: str, java_major: int, conf: Dict[str, str]) -> str:
    import pyspark

    parts = [os.path.realpath(java), str(java_major), os.path.dirname(pyspark.__file__), pyspark.__version__,
             conf.get("spark.driver.extraClassPath", "")]
    parts += [f"{name}={os.environ.get(name, '')}" for name in CLASS_PATH_ENV]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _remove_stale(folder: Path) -> None:
    for leftover in folder.glob("*.tmp"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_SECONDS:
                leftover.unlink()
        except OSError:
            pass
