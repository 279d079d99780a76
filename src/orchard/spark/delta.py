"""Delta Lake in orchard's Spark sessions: the release that pairs with the installed Spark
line, its jars from Maven Central (orchard.spark.maven), and the session settings.

Delta pairs with one Spark line per release (Delta's release notes, "compatibility with Apache
Spark"): orchard pins the release AWS ships with that line, so a table written here is read by
the cluster's own Delta:

- Spark 3.5 -> io.delta:delta-spark_2.12:3.3.2 (emr-7.14.0's Delta);
- Spark 4.1 -> io.delta:delta-spark_2.13:4.2.0 (emr-spark-8.1.0's Delta, built against Spark 4.1).

Only the jars Spark does not bundle go on the classpath: Maven's runtime closure of delta-spark
4.2 also names Parquet, Jackson, Hadoop and Scala jars that pyspark already ships (in
`pyspark/jars/`, other versions); two copies of a class on one classpath is a bug waiting.
On a cluster started by spark-submit (an EMR step) the cluster's own Delta is used (EMR's
`delta-defaults` classification), never a second copy.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.spark import maven

DELTA_FOR_SPARK: Dict[str, Tuple[str, str]] = {"3.5": ("2.12", "3.3.2"), "4.1": ("2.13", "4.2.0")}
SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # the partitions of a table's log replay (Delta's default 50: 50 tasks per snapshot of a
    # table of a few files, ~1 s per commit here); one per core of a small driver
    "spark.databricks.delta.snapshotPartitions": "2",
}
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-\d[^-]*(-[^-]+)?\.jar$")


def spark_line(version: Optional[str] = None) -> str:
    """"3.5" for pyspark 3.5.x (default: the installed pyspark's version)."""
    if version is None:
        import pyspark  # deferred: orchard's CLI starts without it

        version = pyspark.__version__
    return ".".join(version.split(".")[:2])


def delta_release(spark_version: Optional[str] = None) -> Tuple[str, str]:
    """(Scala binary version, Delta release) for the Spark line of `spark_version` (default:
    the installed pyspark). Raises OrchardError for a line orchard has no Delta pin for."""
    line = spark_line(spark_version)
    if line not in DELTA_FOR_SPARK:
        lines = ", ".join(sorted(DELTA_FOR_SPARK))
        raise OrchardError(f"no Delta Lake release pinned for Spark {line}: orchard runs on Spark {lines} "
                           f"(pip install 'pyspark>=4.1,<4.2' or 'pyspark>=3.5,<3.6')")
    return DELTA_FOR_SPARK[line]


def delta_set(spark_version: Optional[str] = None) -> maven.JarSet:
    scala, release = delta_release(spark_version)
    return maven.JarSet("delta", (f"io.delta:delta-spark_{scala}:{release}",), (),
                        f"Delta Lake {release} tables for Spark {spark_line(spark_version)}")


def bundled_artifacts() -> frozenset:
    """The artifact names of the jars pyspark ships (`pyspark/jars/<artifact>-<version>.jar`)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    return frozenset(m.group("artifact") for p in jars.glob("*.jar") if (m := _JAR_NAME.match(p.name)))


def delta_jars() -> List[Path]:
    """The Delta jars to add to a JVM orchard starts: the runtime closure of delta-spark minus
    what pyspark bundles (resolved once by Maven, then offline). Raises OrchardError (from
    orchard.spark.maven) when they are not fetched and Maven cannot fetch them."""
    bundled = bundled_artifacts()
    return [jar.path for jar in maven.resolve(delta_set())
            if jar.coordinate.split(":")[1] not in bundled]


def with_delta(conf: Dict[str, str], jars: bool) -> Dict[str, str]:
    """`conf` (Spark settings) plus Delta's: its SQL extension added to `spark.sql.extensions`,
    its catalog (unless one is set), and, with `jars` (a JVM orchard launches itself), the Delta
    jars added to `spark.jars`."""
    extensions = [e for e in conf.get("spark.sql.extensions", "").split(",") if e]
    delta = {**SESSION_CONF, **{k: v for k, v in conf.items() if k in SESSION_CONF and k != "spark.sql.extensions"}}
    if SESSION_CONF["spark.sql.extensions"] not in extensions:
        extensions.append(SESSION_CONF["spark.sql.extensions"])
    delta["spark.sql.extensions"] = ",".join(extensions)
    if jars:
        listed = [j for j in conf.get("spark.jars", "").split(",") if j]
        delta["spark.jars"] = ",".join(listed + [str(p) for p in delta_jars() if str(p) not in listed])
    return {**conf, **delta}


def has_delta(spark) -> bool:
    """True when `spark`'s session has Delta's SQL extension on (orchard's sessions do).

    The classes are not probed through py4j: on Spark 4 that probe loads Delta's classes in a
    class loader without Spark's, and the NoClassDefFoundError ends py4j's connection. A session
    whose jars are missing fails at its first table operation (Spark's DATA_SOURCE_NOT_FOUND).
    """
    return "DeltaSparkSessionExtension" in (spark.conf.get("spark.sql.extensions", "") or "")
