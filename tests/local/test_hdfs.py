"""HDFS of the local cluster (orchard.local.hdfs)."""
from __future__ import annotations

from orchard.local import hdfs
from orchard.local.processes import free_port


def test_hdfs_config_for_java17_and_one_datanode(tmp_path):
    ports = {"namenode": 19000, "namenode_ui": 19870, "datanode": 19866, "datanode_ui": 19864,
             "datanode_ipc": 19867}
    conf = hdfs.write_config(tmp_path, ports)
    for name in ("hdfs", "datanode", "secondary", "journal", "static"):
        assert (conf / "webapps" / name / "WEB-INF" / "web.xml").is_file()
    site = (conf / "hdfs-site.xml").read_text()
    assert "<name>dfs.replication</name><value>1</value>" in site
    assert "<name>dfs.webhdfs.enabled</name><value>false</value>" in site
    assert "127.0.0.1:19866" in site
    assert "hdfs://127.0.0.1:19000" in (conf / "core-site.xml").read_text()
    assert not hdfs.is_formatted(tmp_path)
    assert hdfs.namenode_state(free_port(set())) is None
