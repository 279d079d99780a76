"""orchard's Python API entry points that know about execution profiles.

`run(config)` is `orchard run`: it resolves the profile's Spark settings (orchard.local.profiles)
and runs the pipeline with them. The pipeline itself (orchard.pipeline) knows no profile.
"""
from __future__ import annotations

from typing import Dict, Optional

from orchard.local.profiles import profile_spark_conf
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig
from orchard.pipeline.record import RunRecord
from orchard.pipeline.run import run_pipeline
from orchard.spark.session import create_session, is_local_master, stop_session


def spark_conf_for(config: RunConfig) -> Dict[str, str]:
    """Spark settings of a run: the profile's (cluster, storage endpoints, `spark.master`),
    then config.spark_conf, which wins key by key. Raises OrchardError for an unknown profile."""
    conf: Dict[str, str] = {}
    if config.profile:
        conf.update(profile_spark_conf(config.profile))
    conf.update(config.spark_conf)
    return conf


def run(config: RunConfig, spark=None) -> RunRecord:
    """Run `orchard run` as described by `config`; return its RunRecord (also written as
    <output>/run.json, `record.to_dict()`).

    Writes features/ and errors/ (Parquet), pca_model/ (a Spark PCAModel), run.json and
    pca_scree.png under config.output. Uses `spark` when given (or the active session), else
    starts Spark with the profile's and config.spark_conf's settings and stops it at the end.
    Raises OrchardError on bad settings, an unknown profile, a missing input or model, or an
    existing output without config.overwrite.
    """
    config.validate()
    return run_pipeline(config, spark=spark, spark_conf=spark_conf_for(config))


def start_spark(master: Optional[str] = None, conf: Optional[Dict[str, str]] = None, app_name: str = "orchard"):
    """Start (or reuse) a SparkSession the way orchard does: Java checked (OrchardError with a
    fix when missing or too old), Arrow on, this Python for the workers, loopback address and
    quiet logs on a local master. `master` defaults to local[*]; `conf` wins over orchard's
    settings. Stop it with `stop_spark`."""
    master = master or DEFAULT_MASTER
    return create_session(app_name, master, extra_conf=conf, on_this_machine=is_local_master(master))


def stop_spark(spark) -> None:
    """Stop `spark` and, when orchard launched its JVM, end that JVM too (a later `start_spark`
    starts a fresh one)."""
    stop_session(spark)
