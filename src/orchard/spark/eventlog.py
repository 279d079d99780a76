"""Event-log naming: where Spark writes a run's event log, and the settings that turn it on.

Spark 3.5 writes one of two layouts under `spark.eventLog.dir`: a single file
`<app_id>[_<attempt>][.<codec>]`, or with rolling on, a folder `eventlog_v2_<app_id>[_<attempt>]/`.
Reading and parsing the logs is `orchard.analysis.eventlog`'s job.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Dict, Optional

from orchard.paths import cache_root

log = logging.getLogger(__name__)

ROLLING_PREFIX = "eventlog_v2_"
ROLLING_PART_PREFIX = "events_"
CODEC_CLASSES = {  # spark.io.compression.codec may name the class instead of the short name
    "org.apache.spark.io.ZStdCompressionCodec": "zstd",
    "org.apache.spark.io.LZ4CompressionCodec": "lz4",
    "org.apache.spark.io.LZFCompressionCodec": "lzf",
    "org.apache.spark.io.SnappyCompressionCodec": "snappy",
}


def sanitize_app_name(app_id: str, attempt_id: Optional[str] = None) -> str:
    """Spark's EventLogFileWriter.nameForAppAndAttempt: the log's base name for an app."""

    def clean(text: str) -> str:
        return re.sub(r"[.${}'\"]", "_", re.sub(r"[ :/]", "-", text)).lower()

    base = clean(app_id)
    return f"{base}_{clean(attempt_id)}" if attempt_id else base


def codec_short_name(name: str) -> str:
    return CODEC_CLASSES.get(name, name).lower()


def expected_log_path(
    log_dir: str,
    app_id: str,
    attempt_id: Optional[str] = None,
    rolling: bool = False,
    compress: bool = False,
    codec: str = "zstd",
) -> str:
    """Where Spark 3.5 puts the finished event log of `app_id` (a file, or a folder if rolling)."""
    name = sanitize_app_name(app_id, attempt_id)
    base = log_dir.rstrip("/")
    if rolling:
        return f"{base}/{ROLLING_PREFIX}{name}"
    return f"{base}/{name}" + (f".{codec_short_name(codec)}" if compress else "")


def event_log_of(spark) -> Optional[str]:
    """The exact event log (file or rolling folder) this SparkSession writes; None if disabled.

    Asks Spark's own EventLoggingListener; falls back to the name Spark's rules give.
    """
    context = spark.sparkContext
    conf = context.getConf()
    if conf.get("spark.eventLog.enabled", "false").lower() != "true":
        return None
    try:
        listener = context._jsc.sc().eventLogger()
        if listener.isDefined():
            return str(listener.get().logWriter().logPath())
    except Exception as error:  # a private Spark API: fall back to the naming rules
        log.debug("could not ask Spark for the event log path: %s", error)
    attempt = None
    try:
        option = context._jsc.sc().applicationAttemptId()
        attempt = str(option.get()) if option.isDefined() else None
    except Exception:
        pass
    log_dir = conf.get("spark.eventLog.dir", "file:/tmp/spark-events")
    return expected_log_path(
        log_dir, context.applicationId, attempt,
        rolling=conf.get("spark.eventLog.rolling.enabled", "false").lower() == "true",
        compress=conf.get("spark.eventLog.compress", "false").lower() == "true",
        codec=conf.get("spark.eventLog.compression.codec", "zstd"),
    )


def launched_by_spark_submit() -> bool:
    """True inside `spark-submit` (e.g. an EMR step, client or cluster deploy mode)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def event_log_conf(event_log_dir: Optional[str], on_this_machine: bool,
                   under_spark_submit: Optional[bool] = None) -> Dict[str, str]:
    """Spark event logging settings for a run: {} or {spark.eventLog.enabled[, .dir]: value}.

    - a given `event_log_dir`: that folder (a local path is made and turned into a file: URI);
    - under spark-submit (`under_spark_submit`, default: `launched_by_spark_submit()`): nothing.
      The cluster's settings (EMR: hdfs:///var/log/spark/apps, read by the History Server)
      are already in the application's conf; with `--deploy-mode cluster` the driver's YARN
      container may lack SPARK_CONF_DIR, and a local folder there would be on a core node,
      out of the History Server's sight. run.json records where the log went (`event_log_of`);
    - not on this machine (a remote master from a plain Python process): on, in the folder of
      the installation's spark-defaults.conf when it names one;
    - else a local folder, <cache>/spark-events.
    """
    if under_spark_submit is None:
        under_spark_submit = launched_by_spark_submit()
    if not event_log_dir and under_spark_submit:
        return {}
    if not event_log_dir and not on_this_machine and _spark_defaults().get("spark.eventLog.dir"):
        return {"spark.eventLog.enabled": "true"}
    if not event_log_dir:
        folder = cache_root() / "spark-events"
        folder.mkdir(parents=True, exist_ok=True)
        event_log_dir = folder.as_uri()
    elif "://" not in event_log_dir and not event_log_dir.startswith("file:"):
        Path(event_log_dir).mkdir(parents=True, exist_ok=True)
        event_log_dir = Path(event_log_dir).resolve().as_uri()
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": event_log_dir}


def _spark_defaults() -> Dict[str, str]:
    """Settings in the Spark installation's spark-defaults.conf ($SPARK_CONF_DIR or $SPARK_HOME/conf)."""
    folder = os.environ.get("SPARK_CONF_DIR") or (
        os.path.join(os.environ["SPARK_HOME"], "conf") if os.environ.get("SPARK_HOME") else None)
    defaults: Dict[str, str] = {}
    path = Path(folder or "/nonexistent") / "spark-defaults.conf"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                defaults[parts[0]] = parts[1].strip()
    return defaults
