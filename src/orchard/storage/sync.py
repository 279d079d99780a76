"""Copy a dataset or a run's output between a local folder and S3 or HDFS, in parallel.

`push(local_dir, uri)` and `pull(uri, local_dir)` copy every file below the source, keeping
relative paths, and skip files already at the target and identical:

- S3 (`s3://bucket/prefix`, also `s3a://`): same size and ETag = the content's MD5 (multipart
  ETags are recomputed with orchard's part size); the bucket is created when missing.
- HDFS (`hdfs:///path` or `hdfs://host:port/path`): same size and modification time (orchard
  sets the copy's time to the source's, as `rsync` does). HDFS is reached through a Hadoop
  client in a JVM started from pyspark (no Spark job); small-file writes cost ~0.2 s each on
  the local HDFS, so they run in parallel.

With `profile="local"` the endpoints and keys are those of `orchard local up`; without a
profile, S3 is real AWS (boto3's usual credentials) and HDFS needs a full hdfs://host:port URI.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

from orchard.errors import OrchardError
from orchard.paths import file_digest

log = logging.getLogger(__name__)

PART_SIZE = 64 * 1024 * 1024  # single PUT below this, multipart parts of this size above
DEFAULT_JOBS = 32


@dataclass(frozen=True)
class RemoteFile:
    size: int
    etag: Optional[str] = None  # S3
    mtime_ms: Optional[int] = None  # HDFS


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "hdfs"
    authority: str  # bucket, or host:port ("" for the default filesystem)
    path: str  # key prefix (no leading or trailing "/") or absolute HDFS path

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.authority}/{self.path}".rstrip("/")
        return f"hdfs://{self.authority}{self.path}"


def parse_uri(uri: str) -> Location:
    """s3://bucket/prefix, s3a://bucket/prefix, hdfs:///path or hdfs://host:port/path."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        if not parsed.netloc:
            raise OrchardError(f"{uri}: an S3 URI needs a bucket: s3://bucket/prefix")
        return Location("s3", parsed.netloc, parsed.path.strip("/"))
    if parsed.scheme == "hdfs":
        path = "/" + parsed.path.strip("/")
        return Location("hdfs", parsed.netloc, path)
    raise OrchardError(f"{uri}: push and pull copy to and from s3://bucket/prefix or hdfs:///path")


def s3_etag(path: Path, part_size: int = PART_SIZE) -> str:
    """The ETag S3 gives `path` uploaded by orchard: MD5, or MD5 of part MD5s + '-N'."""
    size = path.stat().st_size
    if size < part_size:
        return file_digest(path, "md5")
    parts = []
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(part_size), b""):
            parts.append(hashlib.md5(chunk).digest())
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def local_files(root: Path) -> Dict[str, Path]:
    """Every file below `root`, keyed by its path relative to it ('/' separators)."""
    if not root.is_dir():
        raise OrchardError(f"{root} is not a folder")
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path
    return files


def mtime_ms(path: Path) -> int:
    return int(path.stat().st_mtime * 1000)


# ---------------------------------------------------------------- S3


class S3Store:
    def __init__(self, client, location: Location):
        self.client = client
        self.bucket = location.authority
        self.prefix = location.path

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def list(self) -> Dict[str, RemoteFile]:
        from botocore.exceptions import ClientError

        start = f"{self.prefix}/" if self.prefix else ""
        found: Dict[str, RemoteFile] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # a folder marker
                    found[item["Key"][len(start):]] = RemoteFile(int(item["Size"]), item["ETag"].strip('"'))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404"):
                return {}
            raise
        return found

    def ensure_bucket(self) -> bool:
        """Create the bucket when it does not exist; True if it was created."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            self.client.create_bucket(Bucket=self.bucket,
                                      CreateBucketConfiguration={"LocationConstraint": region})
        else:
            self.client.create_bucket(Bucket=self.bucket)
        log.info("created bucket %s", self.bucket)
        return True

    def same(self, local: Path, remote: RemoteFile) -> bool:
        return local.stat().st_size == remote.size and remote.etag == s3_etag(local)

    def upload(self, local: Path, relative: str) -> None:
        if local.stat().st_size < PART_SIZE:
            with open(local, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.key(relative), Body=body)
        else:
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
            self.client.upload_file(str(local), self.bucket, self.key(relative), Config=config)

    def download(self, relative: str, local: Path, remote: RemoteFile) -> None:
        tmp = local.with_name(local.name + ".orchard-part")
        self.client.download_file(self.bucket, self.key(relative), str(tmp))
        os.replace(tmp, local)


def s3_client_for(profile: Optional[str]):
    if profile == "local":
        from orchard.local.cluster import LocalCluster
        from orchard.local.store import s3_client

        status = LocalCluster().status()
        if not status["running"] or not status.get("s3_endpoint"):
            raise OrchardError(f"the local cluster's S3 is not up (state dir {status['state_dir']}): "
                               "run `orchard local up` first")
        return s3_client(status["s3_endpoint"], status["access_key"], status["secret_key"])
    if profile:
        raise OrchardError(f"push and pull know the profile `local` only, got {profile!r}")
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=32))


# ---------------------------------------------------------------- HDFS


class HdfsStore:
    """HDFS through the Hadoop client of a JVM started from pyspark (no SparkContext)."""

    def __init__(self, location: Location, default_fs: Optional[str]):
        if not location.authority and not default_fs:
            raise OrchardError(f"{location.uri}: give hdfs://host:port/path, or --profile local "
                               "for the local cluster's HDFS")
        self.location = location
        self.gateway = _hadoop_gateway()
        jvm = self.gateway.jvm
        self.jvm = jvm
        conf = jvm.org.apache.hadoop.conf.Configuration()
        if default_fs:
            conf.set("fs.defaultFS", default_fs)
        for key, value in hdfs_client_conf(default_fs).items():
            conf.set(key, value)
        self.root = jvm.org.apache.hadoop.fs.Path(location.uri)
        self.fs = self.root.getFileSystem(conf)
        self.root = self.fs.makeQualified(self.root)
        self.root_text = str(self.root.toUri().getPath()).rstrip("/")

    def path(self, relative: str):
        Path_ = self.jvm.org.apache.hadoop.fs.Path
        return Path_(self.root, Path_(None, None, relative))  # no URI parsing of the name

    def local_path(self, local: Path):
        return self.jvm.org.apache.hadoop.fs.Path("file", None, str(local.absolute()))

    def list(self) -> Dict[str, RemoteFile]:
        if not self.fs.exists(self.root):
            return {}
        found: Dict[str, RemoteFile] = {}
        files = self.fs.listFiles(self.root, True)
        while files.hasNext():
            status = files.next()
            full = str(status.getPath().toUri().getPath())
            found[full[len(self.root_text) + 1:]] = RemoteFile(
                int(status.getLen()), mtime_ms=int(status.getModificationTime()))
        return found

    def ensure_bucket(self) -> bool:
        self.fs.mkdirs(self.root)
        return False

    def same(self, local: Path, remote: RemoteFile) -> bool:
        return local.stat().st_size == remote.size and remote.mtime_ms == mtime_ms(local)

    def upload(self, local: Path, relative: str) -> None:
        target = self.path(relative)
        self.fs.copyFromLocalFile(False, True, self.local_path(local), target)
        self.fs.setTimes(target, mtime_ms(local), -1)

    def download(self, relative: str, local: Path, remote: RemoteFile) -> None:
        tmp = local.with_name(local.name + ".orchard-part")
        self.fs.copyToLocalFile(False, self.path(relative), self.local_path(tmp), True)
        os.replace(tmp, local)
        if remote.mtime_ms is not None:
            os.utime(local, (remote.mtime_ms / 1000, remote.mtime_ms / 1000))

    def close(self) -> None:
        process = getattr(self.gateway, "proc", None)
        self.gateway.shutdown()
        if process is not None:  # the JVM exits when its stdin closes
            with contextlib.suppress(Exception):
                process.stdin.close()
                process.wait(timeout=15)


def hdfs_client_conf(default_fs: Optional[str]) -> Dict[str, str]:
    """Client settings for the local HDFS: replication 1 (one DataNode), and a short first wait
    (default 400 ms) before asking the NameNode whether a just-written file is complete."""
    if not default_fs:
        return {}
    return {"dfs.replication": "1",
            "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20"}


def _hadoop_gateway():
    """A py4j gateway to a JVM with pyspark's jars (its Hadoop client), quiet, on 127.0.0.1."""
    from orchard.spark.session import LOG4J_CONFIG, check_java

    check_java()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    conf = SparkConf(loadDefaults=False)
    conf.set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}")
    return launch_gateway(conf)


def default_fs_for(profile: Optional[str]) -> Optional[str]:
    if profile == "local":
        from orchard.local.cluster import LocalCluster

        status = LocalCluster().status()
        if not status["running"] or not status.get("hdfs_url"):
            raise OrchardError(f"the local cluster's HDFS is not up (state dir {status['state_dir']}): "
                               "run `orchard local up --hdfs` first")
        return status["hdfs_url"]
    if profile:
        raise OrchardError(f"push and pull know the profile `local` only, got {profile!r}")
    return None


def open_store(uri: str, profile: Optional[str]):
    location = parse_uri(uri)
    if location.scheme == "s3":
        return S3Store(s3_client_for(profile), location)
    default_fs = default_fs_for(profile)
    with storage_errors(uri):
        return HdfsStore(location, default_fs)


@contextlib.contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """S3 and HDFS client errors as one-line OrchardErrors naming the URI."""
    try:
        yield
    except OrchardError:
        raise
    except Exception as error:
        module = type(error).__module__ or ""
        if module.startswith(("botocore", "boto3", "py4j")):
            raise OrchardError(f"{uri}: {_reason(error)}") from None
        raise


# ---------------------------------------------------------------- copying


def _copy_all(tasks: List[Tuple[str, Callable[[], None], int]], jobs: int, desc: str) -> None:
    """Run the copy functions in `jobs` threads with a progress bar (files and bytes)."""
    from tqdm import tqdm

    total_bytes = sum(size for _, _, size in tasks)
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
              mininterval=0.5, disable=not tasks) as bar, ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(copy): (name, size) for name, copy, size in tasks}
        done = 0
        for future in as_completed(futures):
            name, size = futures[future]
            try:
                future.result()
            except Exception as error:
                for other in futures:
                    other.cancel()
                raise OrchardError(f"copying {name} failed: {_reason(error)}") from None
            done += 1
            bar.set_postfix_str(f"{done}/{len(tasks)} files", refresh=False)
            bar.update(size)


def _reason(error: Exception) -> str:
    """One line on why a copy failed (for a Java error: its exception, not py4j's frame)."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        return str(java.toString()).splitlines()[0]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _close(store) -> None:
    if hasattr(store, "close"):
        store.close()


def push(local_dir: str, uri: str, profile: Optional[str] = None, jobs: int = DEFAULT_JOBS) -> Dict[str, Any]:
    """Copy every file below `local_dir` to `uri`, skipping identical files already there."""
    started = time.perf_counter()
    files = local_files(Path(local_dir).expanduser())
    if not files:
        raise OrchardError(f"{local_dir} has no files to push")
    store = open_store(uri, profile)
    try:
        with storage_errors(uri):
            created = store.ensure_bucket()
            remote = {} if created else store.list()
        todo = [(rel, path) for rel, path in sorted(files.items())
                if rel not in remote or not store.same(path, remote[rel])]
        tasks = [(rel, (lambda r=rel, p=path: store.upload(p, r)), path.stat().st_size) for rel, path in todo]
        _copy_all(tasks, jobs, f"push {uri}")
    finally:
        _close(store)
    return _summary(local_dir, uri, len(files), len(todo), sum(s for _, _, s in tasks), started)


def pull(uri: str, local_dir: str, profile: Optional[str] = None, jobs: int = DEFAULT_JOBS) -> Dict[str, Any]:
    """Copy every file below `uri` into `local_dir`, skipping identical files already there."""
    started = time.perf_counter()
    target = Path(local_dir).expanduser()
    store = open_store(uri, profile)
    try:
        with storage_errors(uri):
            remote = store.list()
        if not remote:
            raise OrchardError(f"nothing to pull: no files under {uri}")
        todo = []
        for rel, info in sorted(remote.items()):
            local = target.joinpath(*rel.split("/"))
            if not (local.is_file() and store.same(local, info)):
                todo.append((rel, local, info))
        for _, local, _ in todo:
            local.parent.mkdir(parents=True, exist_ok=True)
        tasks = [(rel, (lambda r=rel, p=local, i=info: store.download(r, p, i)), info.size)
                 for rel, local, info in todo]
        _copy_all(tasks, jobs, f"pull {uri}")
    finally:
        _close(store)
    return _summary(uri, local_dir, len(remote), len(todo), sum(s for _, _, s in tasks), started)


def _summary(source: str, target: str, files: int, copied: int, size: int, started: float) -> Dict[str, Any]:
    return {"source": source, "target": target, "files": files, "copied": copied,
            "skipped": files - copied, "bytes": size,
            "seconds": round(time.perf_counter() - started, 2)}
