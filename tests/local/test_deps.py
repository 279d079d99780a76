"""What the local cluster downloads once (orchard.local.deps)."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from orchard.errors import OrchardError
from orchard.local import deps as localdeps


def _sdist(path: Path, files) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_jars_are_extracted_once_then_served_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))
    downloads = []

    def fake_download(requirement, into):
        downloads.append(requirement)
        return _sdist(into / "sagemaker_pyspark-1.4.5.tar.gz", {
            "sagemaker_pyspark-1.4.5/deps/jars/hadoop-aws-3.3.1.jar": b"aws",
            "sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-bundle-1.11.901.jar": b"bundle",
            "sagemaker_pyspark-1.4.5/deps/jars/aws-java-sdk-s3-1.12.262.jar": b"not wanted",
        })

    monkeypatch.setattr(localdeps, "_download_sdist", fake_download)
    jars = localdeps.s3a_jars()
    assert [j.name for j in jars] == list(localdeps.S3A_JARS)
    assert jars[0].read_bytes() == b"aws"
    assert sorted(p.name for p in jars[0].parent.iterdir()) == sorted([*localdeps.S3A_JARS, ".complete"])
    assert localdeps.s3a_jars() == jars and downloads == ["sagemaker-pyspark==1.4.5"]
    assert not list((tmp_path / "cache" / "local-cluster").glob("download-*"))  # archive deleted


def test_a_failed_download_says_what_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that "
                                           "satisfies the requirement pyspark==2.4.8\n")

    monkeypatch.setattr(localdeps.subprocess, "run", no_network)
    with pytest.raises(OrchardError, match=r"could not download .*PyPI.*satisfies"):
        localdeps.hadoop_jars()


def test_missing_members_are_reported(tmp_path):
    archive = _sdist(tmp_path / "x.tar.gz", {"x/deps/jars/a.jar": b"a"})
    with pytest.raises(OrchardError, match="lacks b.jar"):
        localdeps._extract_members(archive, "deps/jars", ["a.jar", "b.jar"], tmp_path / "out")
