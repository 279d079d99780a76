"""JVM packages from Maven Central, the ecosystem's way: pinned coordinates resolved once by
Maven (`mvn dependency:list`, transitive dependencies included) into Maven's own local
repository, then used offline.

- A `JarSet` names its root artifacts (`group:artifact:version`) and the dependencies to leave
  out (`group:artifact`).
- `resolve(jar_set)` runs Maven only when the set's manifest is missing or a file it names is
  gone; the manifest (`<orchard cache>/maven/sets/<name>-<key>.tsv`, one line per jar:
  coordinate, path, sha256) is keyed by the sha256 of the set's generated pom, so a changed pin
  or exclusion is resolved again, never served from a stale list.
- Maven's own settings apply (`~/.m2/settings.xml`: mirrors, proxies, the local repository,
  default ~/.m2/repository); `$ORCHARD_MAVEN_REPO` names another local repository.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple
from xml.sax.saxutils import escape

from orchard.errors import OrchardError
from orchard.paths import cache_root, file_digest

log = logging.getLogger(__name__)

REPOSITORY_ENV = "ORCHARD_MAVEN_REPO"
MAVEN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class JarSet:
    """Root artifacts (`group:artifact:version`) whose runtime closure a part of orchard needs."""

    name: str  # a folder-safe word: "s3a", "hdfs"
    artifacts: Tuple[str, ...]
    exclusions: Tuple[str, ...] = ()  # `group:artifact`, left out of every root's closure
    purpose: str = ""

    def pom(self) -> str:
        """The pom.xml that declares the roots (what Maven resolves; its sha256 keys the set)."""
        excluded = "".join(
            f"<exclusion><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId></exclusion>"
            for g, a in (e.split(":") for e in self.exclusions))
        dependencies = "".join(
            f"    <dependency><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId>"
            f"<version>{escape(v)}</version><exclusions>{excluded}</exclusions></dependency>\n"
            for g, a, v in (split_coordinate(c) for c in self.artifacts))
        return ('<project xmlns="http://maven.apache.org/POM/4.0.0">\n  <modelVersion>4.0.0</modelVersion>\n'
                f"  <groupId>orchard.jars</groupId><artifactId>{escape(self.name)}</artifactId>"
                "<version>1</version><packaging>pom</packaging>\n"
                f"  <dependencies>\n{dependencies}  </dependencies>\n</project>\n")

    def key(self) -> str:
        return hashlib.sha256(self.pom().encode()).hexdigest()[:16]

    @property
    def roots(self) -> frozenset:
        """The root coordinates, each checked to be `group:artifact:version`."""
        return frozenset(":".join(split_coordinate(c)) for c in self.artifacts)


@dataclass(frozen=True)
class Jar:
    """One resolved jar: its coordinate (`group:artifact[:classifier]:version`), file, sha256."""

    coordinate: str
    path: Path
    sha256: str


def split_coordinate(coordinate: str) -> Tuple[str, str, str]:
    """`group:artifact:version` -> its three parts; OrchardError for anything else."""
    parts = coordinate.split(":")
    if len(parts) != 3 or not all(parts):
        raise OrchardError(f"not a Maven coordinate (group:artifact:version): {coordinate!r}")
    return parts[0], parts[1], parts[2]


def repository() -> Optional[Path]:
    """$ORCHARD_MAVEN_REPO, or None: Maven's own local repository (~/.m2/repository)."""
    value = os.environ.get(REPOSITORY_ENV)
    return Path(value) if value else None


def manifests_dir() -> Path:
    repo = repository()
    return repo.parent / "sets" if repo else cache_root() / "maven" / "sets"


def manifest_path(jar_set: JarSet) -> Path:
    return manifests_dir() / f"{jar_set.name}-{jar_set.key()}.tsv"


def parse_listing(text: str) -> List[Tuple[str, Path]]:
    """(coordinate, path) for each line of `mvn dependency:list -DoutputAbsoluteArtifactFilename`:
    `group:artifact:type[:classifier]:version:scope:/path/to.jar`; other lines are skipped."""
    jars = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) not in (6, 7) or not parts[-1].endswith(".jar"):
            continue
        group, artifact, _type = parts[:3]
        classifier = [parts[3]] if len(parts) == 7 else []
        version = parts[-3]
        jars.append((":".join([group, artifact, *classifier, version]), Path(parts[-1])))
    return jars


def read_manifest(jar_set: JarSet) -> Optional[List[Jar]]:
    """The set's jars as last resolved, or None when not resolved (or a file has gone)."""
    path = manifest_path(jar_set)
    if not path.is_file():
        return None
    jars = []
    for line in path.read_text().splitlines():
        coordinate, file, sha256 = line.split("\t")
        jars.append(Jar(coordinate, Path(file), sha256))
    if not jars or not all(jar.path.is_file() for jar in jars):
        return None
    return jars


def _mvn() -> str:
    found = shutil.which("mvn")
    if not found:
        raise OrchardError("Maven (mvn) is needed once, to fetch orchard's JVM packages from Maven Central; "
                           "install it (Debian/Ubuntu: sudo apt-get install maven), then run this again")
    return found


def _run_maven(jar_set: JarSet, work: Path) -> str:
    (work / "pom.xml").write_text(jar_set.pom())
    listing = work / "list.txt"
    repo = repository()
    command = [_mvn(), "-B", "-q", "-f", str(work / "pom.xml"), *([f"-Dmaven.repo.local={repo}"] if repo else []),
               "dependency:list", "-DincludeScope=runtime", "-DoutputAbsoluteArtifactFilename=true",
               f"-DoutputFile={listing}"]
    log.info("resolving %s from Maven Central (once; cached in %s)", ", ".join(jar_set.artifacts),
             repo or "Maven's local repository, ~/.m2/repository")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, cwd=str(work))
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OrchardError(f"could not run Maven to fetch {jar_set.name}'s jars: {error}") from None
    if result.returncode != 0 or not listing.is_file():
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        reason = lines[0] if lines else f"mvn exited with {result.returncode}"
        raise OrchardError(f"could not fetch {', '.join(jar_set.artifacts)} from Maven Central ({reason}); "
                           "check the network, or Maven's mirror/proxy settings (~/.m2/settings.xml)")
    return listing.read_text()


def resolve(jar_set: JarSet) -> List[Jar]:
    """The set's jars, roots first then their dependencies in Maven's order; Maven runs only
    when the set is not resolved yet. Raises OrchardError (no mvn, not found, no network)."""
    cached = read_manifest(jar_set)
    if cached is not None:
        return cached
    manifests_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=manifests_dir(), prefix="resolve-") as tmp:
        listed = parse_listing(_run_maven(jar_set, Path(tmp)))
    roots = jar_set.roots
    listed.sort(key=lambda item: item[0] not in roots)  # stable: the roots first
    if not roots <= {coordinate for coordinate, _ in listed}:
        raise OrchardError(f"Maven's listing of {jar_set.name} lacks one of {sorted(roots)}")
    jars = [Jar(coordinate, path, file_digest(path)) for coordinate, path in listed]
    target = manifest_path(jar_set)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    part.write_text("".join(f"{j.coordinate}\t{j.path}\t{j.sha256}\n" for j in jars))
    os.replace(part, target)
    return jars
