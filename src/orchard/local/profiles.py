"""Named execution profiles: Spark settings (master, storage endpoints) for where a run goes.

A profile returns Spark configuration keys; `spark.master` in it replaces `--master`.
"""
from __future__ import annotations

from typing import Callable, Dict

from orchard.errors import OrchardError
from orchard.local.cluster import LocalCluster

PROFILES: Dict[str, Callable[[], Dict[str, str]]] = {}


def profile_spark_conf(name: str) -> Dict[str, str]:
    """The Spark settings of profile `name`; OrchardError for an unknown name (or from the profile)."""
    try:
        make_conf = PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES)) or "none yet"
        raise OrchardError(f"unknown profile {name!r} (known: {known})") from None
    return make_conf()


def local_cluster_conf() -> Dict[str, str]:
    """`--profile local`: the cluster of `orchard local up` (state dir $ORCHARD_STATE_DIR)."""
    return LocalCluster().spark_conf()


PROFILES["local"] = local_cluster_conf
