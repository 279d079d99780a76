"""`orchard local up|status|down` (orchard.commands.local)."""
from __future__ import annotations

import json

from orchard.cli import main
from orchard.local import store as localstore
from orchard.local.cluster import LocalCluster
from tests.local.boxes import record, write_state


def test_local_status_command_when_nothing_runs(tmp_path, capsys):
    assert main(["local", "status", "--state-dir", str(tmp_path / "box")]) == 0
    assert "not running" in capsys.readouterr().out
    assert main(["local", "status", "--json", "--state-dir", str(tmp_path / "box")]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert main(["local", "down", "--state-dir", str(tmp_path / "box")]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_local_status_command_shows_urls_keys_and_pids(tmp_path, sleepers, capsys):
    box = LocalCluster(tmp_path / "box")
    keys = localstore.credentials(box.state_dir / "s3")
    process = sleepers()
    write_state(box.state_dir, [record("spark-master", process.pid)])
    assert main(["local", "status", "--state-dir", str(box.state_dir)]) == 0
    out = capsys.readouterr().out
    for text in ("spark://127.0.0.1:17077", "http://127.0.0.1:18080", "0 of 1", keys["secret_key"],
                 "hdfs://127.0.0.1:19000", f"spark-master={process.pid}"):
        assert text in out


def test_local_fetch_resolves_each_jar_set_once_and_says_what(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from orchard.local import deps as localdeps
    from orchard.spark import maven

    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "maven" / "repository"))
    small = maven.JarSet("probe", ("org.slf4j:slf4j-simple:1.7.36",), purpose="a test set")
    monkeypatch.setattr(localdeps, "jar_sets", lambda: [small])
    monkeypatch.setattr(localdeps, "weed_binary", lambda: Path("/opt/weed"))
    assert main(["local", "fetch"]) == 0  # real Maven, Maven Central
    out = capsys.readouterr().out
    assert "seaweedfs  /opt/weed" in out and "probe      org.slf4j:slf4j-simple:1.7.36: 2 jars" in out
    assert maven.read_manifest(small) is not None
    monkeypatch.setattr(maven, "_run_maven", lambda *a: (_ for _ in ()).throw(AssertionError("ran again")))
    assert main(["local", "fetch"]) == 0  # the second time from the manifest
