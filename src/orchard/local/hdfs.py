"""A real one-node HDFS for the local cluster: a NameNode and a DataNode on 127.0.0.1.

The server classes are Hadoop 3.4.1's, from Maven Central (see orchard.local.deps). Their HTTP
servers look up `webapps/<name>/WEB-INF/web.xml` on the classpath, which Hadoop's distribution
ships beside its jars, not in them: empty ones do (the NameNode's web UI pages are absent, its
/jmx and /conf endpoints work). WebHDFS is off.
Replication is 1 (one DataNode). Data lives in the state directory and survives `down`/`up`.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional
from xml.sax.saxutils import escape

WEBAPPS = ("hdfs", "datanode", "secondary", "journal", "static")
NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
HEAP = "-Xmx512m"

LOG4J = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{yy/MM/dd HH:mm:ss} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
log4j.logger.BlockStateChange=WARN
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
"""


def site_xml(properties: Dict[str, str]) -> str:
    rows = "".join(
        f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
        for k, v in properties.items()
    )
    return f'<?xml version="1.0"?>\n<configuration>\n{rows}</configuration>\n'


def hdfs_properties(home: Path, ports: Dict[str, int]) -> Dict[str, Dict[str, str]]:
    """core-site and hdfs-site settings of the one-node HDFS under `home`."""
    host = "127.0.0.1"
    core = {
        "fs.defaultFS": f"hdfs://{host}:{ports['namenode']}",
        "hadoop.tmp.dir": str(home / "tmp"),
    }
    hdfs = {
        "dfs.replication": "1",
        "dfs.webhdfs.enabled": "false",
        "dfs.permissions.enabled": "false",
        "dfs.namenode.name.dir": (home / "name").as_uri(),
        "dfs.datanode.data.dir": (home / "data").as_uri(),
        "dfs.namenode.rpc-address": f"{host}:{ports['namenode']}",
        "dfs.namenode.http-address": f"{host}:{ports['namenode_ui']}",
        "dfs.namenode.secondary.http-address": f"{host}:0",
        "dfs.datanode.address": f"{host}:{ports['datanode']}",
        "dfs.datanode.http.address": f"{host}:{ports['datanode_ui']}",
        "dfs.datanode.ipc.address": f"{host}:{ports['datanode_ipc']}",
        "dfs.datanode.hostname": host,
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.safemode.extension": "0",
        "dfs.namenode.safemode.min.datanodes": "0",
        "dfs.heartbeat.interval": "1",
        "dfs.namenode.heartbeat.recheck-interval": "10000",
        # small files: do not wait for the DataNode's incremental block report before `complete`
        "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "50",
        "dfs.datanode.max.transfer.threads": "1024",
    }
    return {"core-site.xml": core, "hdfs-site.xml": hdfs}


def write_config(home: Path, ports: Dict[str, int]) -> Path:
    """Write the conf folder (site files, log4j, empty webapps) and return it."""
    conf = home / "conf"
    for name in WEBAPPS:
        web_inf = conf / "webapps" / name / "WEB-INF"
        web_inf.mkdir(parents=True, exist_ok=True)
        (web_inf / "web.xml").write_text("<web-app/>\n")
    for file_name, properties in hdfs_properties(home, ports).items():
        (conf / file_name).write_text(site_xml(properties))
    (conf / "log4j.properties").write_text(LOG4J)
    for folder in ("name", "data", "tmp"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    return conf


def classpath(conf: Path, jars: List[Path]) -> str:
    return ":".join([str(conf), *(str(j) for j in jars)])


def is_formatted(home: Path) -> bool:
    return (home / "name" / "current" / "VERSION").is_file()


def format_command(java: str, cp: str) -> List[str]:
    return [java, HEAP, "-cp", cp, NAMENODE_CLASS, "-format", "-nonInteractive", "-force"]


def namenode_command(java: str, cp: str) -> List[str]:
    return [java, HEAP, "-cp", cp, NAMENODE_CLASS]


def datanode_command(java: str, cp: str) -> List[str]:
    return [java, HEAP, "-cp", cp, DATANODE_CLASS]


def _namenode_bean(ui_port: int, name: str, timeout: float) -> Optional[Dict[str, object]]:
    """One bean of the NameNode's /jmx (`Hadoop:service=NameNode,name=<name>`), or None when it
    does not answer."""
    url = f"http://127.0.0.1:{ui_port}/jmx?qry=Hadoop:service=NameNode,name={name}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            beans = json.load(response).get("beans", [])
    except (OSError, ValueError):
        return None
    return beans[0] if beans else None


def namenode_state(ui_port: int, timeout: float = 2.0) -> Optional[Dict[str, object]]:
    """{live_datanodes, safemode} from the NameNode's /jmx, or None when it does not answer."""
    bean = _namenode_bean(ui_port, "FSNamesystemState", timeout)
    if bean is None:
        return None
    return {"live_datanodes": int(bean.get("NumLiveDataNodes", 0)),
            "safemode": str(bean.get("FSState", "")) == "safeMode"}


def software_version(ui_port: int, timeout: float = 2.0) -> Optional[str]:
    """The NameNode's Hadoop version (its NameNodeInfo bean), e.g. "3.4.1"; None when it does
    not answer."""
    bean = _namenode_bean(ui_port, "NameNodeInfo", timeout)
    return None if bean is None else str(bean.get("SoftwareVersion"))


def is_ready(ui_port: int) -> bool:
    state = namenode_state(ui_port)
    return bool(state and state["live_datanodes"] >= 1 and not state["safemode"])
