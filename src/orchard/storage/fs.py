"""One door to files wherever they are: a local disk, S3, HDFS or any other Hadoop filesystem.

`Storage` routes each URI to one backend:

- local paths and `file:` URIs: Python's own file functions;
- `s3://`, `s3a://`, `s3n://`: boto3 (endpoint and keys from `S3Settings`, or boto3's usual
  credential chain for real AWS); with a `spark` session given, Hadoop's S3 connector instead
  (s3a, or EMRFS on EMR), as Spark itself reads and writes them;
- every other scheme (`hdfs://`, `viewfs://`, ...): Hadoop's FileSystem in the JVM of
  orchard.spark.gateway (the running SparkContext's, else one bare JVM per process), with the
  given Hadoop settings (e.g. fs.defaultFS, so that `hdfs:///path` works).

Sizes are bytes; modification times are milliseconds since the epoch; names returned by
`list` are relative to the listed folder, with '/' separators.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import mimetypes
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

from orchard.errors import OrchardError
from orchard.spark import gateway

PART_SIZE = 8 * 1024 * 1024  # S3: one PUT below this size, parts of this size at and above it
MD5_METADATA = "md5"  # x-amz-meta-md5: the content's MD5 (the ETag is not one for multipart, SSE-KMS)
S3_SCHEMES = ("s3", "s3a", "s3n")
HIDDEN_PREFIXES = (".", "_")
Progress = Optional[Callable[[int], None]]  # called with the bytes copied since the last call


@dataclass(frozen=True)
class FileInfo:
    """One file found by `Storage.list`."""

    name: str  # relative to the listed folder, '/' separators
    size: int  # bytes
    etag: Optional[str] = None  # S3 (boto3): the object's ETag, without quotes
    mtime_ms: Optional[int] = None  # ms since the epoch (S3: the object's LastModified)


@dataclass(frozen=True)
class S3Settings:
    """Where S3 is and how to sign: None everywhere means real AWS, boto3's usual credentials."""

    endpoint_url: Optional[str] = None  # e.g. http://127.0.0.1:8333
    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    region: Optional[str] = None
    path_style: bool = False

    @classmethod
    def from_hadoop(cls, conf: Dict[str, str]) -> "S3Settings":
        """The settings of Hadoop's s3a keys (fs.s3a.endpoint, .access.key, ...), as Spark has them."""
        endpoint = conf.get("fs.s3a.endpoint") or None
        if endpoint and "://" not in endpoint:
            secure = conf.get("fs.s3a.connection.ssl.enabled", "true").lower() == "true"
            endpoint = ("https://" if secure else "http://") + endpoint
        return cls(endpoint_url=endpoint, access_key=conf.get("fs.s3a.access.key") or None,
                   secret_key=conf.get("fs.s3a.secret.key") or None,
                   region=conf.get("fs.s3a.endpoint.region") or None,
                   path_style=conf.get("fs.s3a.path.style.access", "false").lower() == "true")

    def client(self, max_pool_connections: int = 32):
        """A boto3 S3 client for these settings."""
        import boto3
        from botocore.config import Config

        config = Config(max_pool_connections=max_pool_connections, retries={"mode": "standard"},
                        s3={"addressing_style": "path"} if self.path_style else None)
        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region,
                            config=config)


# --------------------------------------------------------------------------- names


def is_hidden(relative: str) -> bool:
    """Names starting with '.' or '_' are hidden to Spark and Hadoop (`_SUCCESS`, `.DS_Store`,
    `.part-0.crc`): a file is hidden when any part of its relative path is."""
    return any(part.startswith(HIDDEN_PREFIXES) for part in relative.split("/"))


TABLE_FOLDERS = ("_delta_log", "_orchard")  # an output's Delta logs and orchard's own tables: copied whole


def is_copied(relative: str) -> bool:
    """What push and pull copy: the files Spark sees, plus Delta's logs and orchard's tables
    (`features/_delta_log/...`, `_orchard/...`), so that a copied output is the same tables;
    never checksum or temporary files (`.x.crc`, `.x.part`)."""
    return not any(part.startswith(HIDDEN_PREFIXES) and part not in TABLE_FOLDERS for part in relative.split("/"))


def is_local(uri: str) -> bool:
    """A plain path, a `file:` URI, or a Windows drive letter."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1


def local_path(uri: str) -> Path:
    """The path of a local URI (`file:` URIs are unescaped)."""
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def join(uri: str, name: str) -> str:
    """`name` (relative, '/' separators) below the folder `uri`."""
    return f"{uri.rstrip('/')}/{name}" if name else uri


def split_uri(uri: str) -> Tuple[str, Optional[str], str]:
    """(scheme, authority or None, path) of `scheme://authority/path` or `scheme:/path`, with no
    unescaping: names may hold any character ('#', '?', '%', spaces)."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(?://([^/]*))?(.*)$", uri)
    if not match:
        raise OrchardError(f"{uri}: not a URI (expected scheme://authority/path)")
    scheme, authority, path = match.groups()
    return scheme.lower(), authority or None, "/" + path.lstrip("/")


def file_digests(path: Path, part_size: int = PART_SIZE) -> Tuple[str, str]:
    """(MD5 hex of the content, the ETag S3 gives it uploaded by orchard: that MD5 below
    `part_size`, else the MD5 of the parts' MD5s + '-<number of parts>')."""
    whole = hashlib.md5()
    parts: List[bytes] = []
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(part_size), b""):
            whole.update(block)
            parts.append(hashlib.md5(block).digest())
    md5 = whole.hexdigest()
    if path.stat().st_size < part_size:
        return md5, md5
    return md5, f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def upload_extra_args(path: Path, md5: str) -> Dict[str, Any]:
    """The object settings orchard uploads a file with: its MD5 as metadata, its content type."""
    extra: Dict[str, Any] = {"Metadata": {MD5_METADATA: md5}}
    content_type = mimetypes.guess_type(path.name)[0]
    if content_type:
        extra["ContentType"] = content_type
    return extra


def transfer_config():
    """boto3's multipart settings for orchard's uploads: parts of PART_SIZE bytes."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                          max_concurrency=4, use_threads=True)


def mtime_ms(path: Path) -> int:
    return int(path.stat().st_mtime * 1000)


def _temporary_name(name: str) -> str:
    return f".{name}.orchard-tmp-{os.getpid()}-{threading.get_ident()}"


def _fetch_atomically(local: Path, copy: Callable[[Path], None]) -> None:
    """`copy(temporary)` fills a hidden temporary file beside `local`, which then replaces
    `local` in one rename: a reader never sees half a file; the temporary never stays behind."""
    temporary = local.with_name(_temporary_name(local.name))
    try:
        copy(temporary)
        os.replace(temporary, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


# --------------------------------------------------------------------------- errors


def error_reason(error: BaseException) -> str:
    """One line on why a storage call failed (for a Java error: its exception, not py4j's frame)."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        return str(java.toString()).splitlines()[0]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """S3 (botocore, boto3) and Hadoop (py4j) errors as one-line OrchardErrors naming `uri`."""
    try:
        yield
    except OrchardError:
        raise
    except Exception as error:
        module = type(error).__module__ or ""
        if module.startswith(("botocore", "boto3", "s3transfer", "py4j")):
            raise OrchardError(f"{uri}: {error_reason(error)}") from None
        raise


def _error_code(error: Exception) -> str:
    return str((getattr(error, "response", None) or {}).get("Error", {}).get("Code", ""))


MISSING_CODES = ("404", "NoSuchKey", "NoSuchBucket", "NotFound")


# --------------------------------------------------------------------------- backends


class LocalFiles:
    """The local disk, through Python."""

    def exists(self, uri: str) -> bool:
        return local_path(uri).exists()

    def is_dir(self, uri: str) -> bool:
        return local_path(uri).is_dir()

    def list(self, uri: str) -> List[FileInfo]:
        return sorted(self.iter_files(uri), key=lambda info: info.name)

    def iter_files(self, uri: str) -> Iterator[FileInfo]:
        root = local_path(uri)
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_file():
                    stat = path.stat()
                    yield FileInfo(path.relative_to(root).as_posix(), stat.st_size,
                                   mtime_ms=stat.st_mtime_ns // 1_000_000)

    def list_names(self, uri: str) -> List[str]:
        return sorted(p.name for p in local_path(uri).iterdir())

    def read_bytes(self, uri: str) -> bytes:
        return local_path(uri).read_bytes()

    def open(self, uri: str) -> BinaryIO:
        return open(local_path(uri), "rb")

    def write_bytes(self, uri: str, data: bytes) -> None:
        target = local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(_temporary_name(target.name))
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def delete(self, uri: str, recursive: bool) -> bool:
        path = local_path(uri)
        if path.is_dir() and not path.is_symlink():
            if recursive:
                shutil.rmtree(path)
            else:
                path.rmdir()
            return True
        if path.exists() or path.is_symlink():
            path.unlink()
            return True
        return False

    def size(self, uri: str) -> int:
        path = local_path(uri)
        if not path.is_file():
            raise FileNotFoundError(uri)
        return path.stat().st_size

    def make_dirs(self, uri: str) -> None:
        local_path(uri).mkdir(parents=True, exist_ok=True)

    def put_file(self, local: Path, uri: str, md5: Optional[str] = None, progress: Progress = None) -> None:
        local_path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.get_file(str(local), local_path(uri))
        if progress:
            progress(local.stat().st_size)

    def get_file(self, uri: str, local: Path) -> None:
        _fetch_atomically(local, lambda temporary: shutil.copy2(local_path(uri), temporary))

    def stored_md5(self, uri: str) -> Optional[str]:
        return None

    def qualify(self, uri: str) -> str:
        return "file:" + os.path.abspath(local_path(uri))


class S3Files:
    """S3 through boto3: path-style or virtual-host buckets, any endpoint."""

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self.settings.client()
            return self._client

    @staticmethod
    def bucket_key(uri: str) -> Tuple[str, str]:
        scheme, bucket, path = split_uri(uri)
        if not bucket:
            raise OrchardError(f"{uri}: an S3 URI needs a bucket: s3://bucket/prefix")
        return bucket, path.lstrip("/")

    @staticmethod
    def _prefix(key: str) -> str:
        return key.rstrip("/") + "/" if key.strip("/") else ""

    def _head(self, bucket: str, key: str) -> Optional[Dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            return self.client().head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in MISSING_CODES:
                return None
            raise

    def exists(self, uri: str) -> bool:
        bucket, key = self.bucket_key(uri)
        return (bool(key) and self._head(bucket, key) is not None) or self.is_dir(uri)

    def is_dir(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self.bucket_key(uri)
        try:
            if not key.strip("/"):
                self.client().head_bucket(Bucket=bucket)
                return True
            answer = self.client().list_objects_v2(Bucket=bucket, Prefix=self._prefix(key), MaxKeys=1)
        except ClientError as error:
            if _error_code(error) in MISSING_CODES:
                return False
            raise
        return answer.get("KeyCount", 0) > 0

    def _pages(self, uri: str, **options) -> Iterator[Tuple[str, Dict[str, Any]]]:
        from botocore.exceptions import ClientError

        bucket, key = self.bucket_key(uri)
        prefix = self._prefix(key)
        try:
            for page in self.client().get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix, **options):
                yield prefix, page
        except ClientError as error:
            if _error_code(error) not in MISSING_CODES:
                raise

    def list(self, uri: str) -> List[FileInfo]:
        return sorted(self.iter_files(uri), key=lambda info: info.name)

    def iter_files(self, uri: str) -> Iterator[FileInfo]:
        for prefix, page in self._pages(uri):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # not a folder marker
                    modified = item.get("LastModified")
                    yield FileInfo(item["Key"][len(prefix):], int(item["Size"]),
                                   etag=str(item.get("ETag", "")).strip('"'),
                                   mtime_ms=int(modified.timestamp() * 1000) if modified else None)

    def list_names(self, uri: str) -> List[str]:
        names = set()
        for prefix, page in self._pages(uri, Delimiter="/"):
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(n for n in names if n)

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = self.bucket_key(uri)
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def open(self, uri: str) -> BinaryIO:
        return io.BytesIO(self.read_bytes(uri))

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self.bucket_key(uri)
        self.client().put_object(Bucket=bucket, Key=key, Body=data)  # atomic: whole or nothing

    def delete(self, uri: str, recursive: bool) -> bool:
        bucket, key = self.bucket_key(uri)
        deleted = False
        if key and self._head(bucket, key) is not None:
            self.client().delete_object(Bucket=bucket, Key=key)
            deleted = True
        if recursive:
            for prefix, page in self._pages(uri):
                batch = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if batch:
                    self.client().delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                    deleted = True
        return deleted

    def size(self, uri: str) -> int:
        bucket, key = self.bucket_key(uri)
        head = self._head(bucket, key) if key else None
        if head is None:
            raise FileNotFoundError(uri)
        return int(head["ContentLength"])

    def make_dirs(self, uri: str) -> None:
        """S3 has no folders: create the bucket when it does not exist."""
        from botocore.exceptions import ClientError

        bucket, _ = self.bucket_key(uri)
        client = self.client()
        try:
            client.head_bucket(Bucket=bucket)
            return
        except ClientError as error:
            if _error_code(error) not in MISSING_CODES:
                raise
        region = client.meta.region_name
        if region and region != "us-east-1":
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        else:
            client.create_bucket(Bucket=bucket)

    def put_file(self, local: Path, uri: str, md5: Optional[str] = None, progress: Progress = None) -> None:
        bucket, key = self.bucket_key(uri)
        size = local.stat().st_size
        extra = upload_extra_args(local, md5 or file_digests(local)[0])
        if size < PART_SIZE:
            with open(local, "rb") as body:
                self.client().put_object(Bucket=bucket, Key=key, Body=body, **extra)
            if progress:
                progress(size)
        else:
            self.client().upload_file(str(local), bucket, key, ExtraArgs=extra, Callback=progress,
                                      Config=transfer_config())

    def get_file(self, uri: str, local: Path) -> None:
        bucket, key = self.bucket_key(uri)
        _fetch_atomically(local, lambda temporary: self.client().download_file(bucket, key, str(temporary)))

    def stored_md5(self, uri: str) -> Optional[str]:
        bucket, key = self.bucket_key(uri)
        head = self._head(bucket, key)
        return (head or {}).get("Metadata", {}).get(MD5_METADATA)

    def qualify(self, uri: str) -> str:
        return uri


class HadoopFiles:
    """Any Hadoop filesystem, through the JVM: `spark`'s own configuration when given, else
    the gateway's JVM with Hadoop's defaults and `settings`."""

    OBJECT_STORES = ("s3", "s3a", "s3n", "gs", "wasb", "wasbs", "abfs", "abfss", "oss")

    def __init__(self, settings: Dict[str, str], spark=None):
        if spark is not None:
            self.jvm = spark.sparkContext._jvm
            conf = spark.sparkContext._jsc.hadoopConfiguration()
            if settings:
                conf = self.jvm.org.apache.hadoop.conf.Configuration(conf)
                for key, value in settings.items():
                    conf.set(key, value)
        else:
            self.jvm = gateway.jvm()
            conf = gateway.hadoop_configuration(settings)
        self.conf = conf

    def path(self, uri: str):
        """A Hadoop Path taking the URI's path literally (no unescaping of '%', '#', '?')."""
        if is_local(uri) and not uri.startswith("file:"):  # a plain path: on the default filesystem
            return self.jvm.org.apache.hadoop.fs.Path(uri)
        scheme, authority, path = split_uri(uri)
        return self.jvm.org.apache.hadoop.fs.Path(scheme, authority, path)

    def _fs(self, uri: str):
        path = self.path(uri)
        return path, path.getFileSystem(self.conf)

    def exists(self, uri: str) -> bool:
        path, fs = self._fs(uri)
        return bool(fs.exists(path))

    def is_dir(self, uri: str) -> bool:
        path, fs = self._fs(uri)
        return bool(fs.exists(path) and fs.getFileStatus(path).isDirectory())

    def list(self, uri: str) -> List[FileInfo]:
        return sorted(self.iter_files(uri), key=lambda info: info.name)

    def iter_files(self, uri: str) -> Iterator[FileInfo]:
        path, fs = self._fs(uri)
        if not fs.exists(path):
            return
        root = fs.makeQualified(path)
        root_text = str(root.toUri().getPath()).rstrip("/")
        files = fs.listFiles(root, True)
        while files.hasNext():
            status = files.next()
            full = str(status.getPath().toUri().getPath())
            yield FileInfo(full[len(root_text) + 1:], int(status.getLen()), mtime_ms=int(status.getModificationTime()))

    def list_names(self, uri: str) -> List[str]:
        path, fs = self._fs(uri)
        return sorted(str(status.getPath().getName()) for status in fs.listStatus(path))

    def read_bytes(self, uri: str) -> bytes:
        path, fs = self._fs(uri)
        stream = fs.open(path)
        try:
            return bytes(self.jvm.org.apache.hadoop.io.IOUtils.readFullyToByteArray(stream))
        finally:
            stream.close()

    def open(self, uri: str) -> BinaryIO:
        return io.BytesIO(self.read_bytes(uri))

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Object stores: one write (the object appears whole when closed); others: a hidden
        temporary file renamed over the target."""
        target, fs = self._fs(uri)
        atomic_rename = str(fs.getScheme()).lower() not in self.OBJECT_STORES
        Path_ = self.jvm.org.apache.hadoop.fs.Path
        written = Path_(target.getParent(), Path_(None, None, _temporary_name(str(target.getName())))) \
            if atomic_rename else target
        stream = fs.create(written, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()
        if atomic_rename:
            if fs.exists(target):
                fs.delete(target, False)
            if not fs.rename(written, target):
                fs.delete(written, False)
                raise OrchardError(f"{uri}: could not rename the written file into place")

    def delete(self, uri: str, recursive: bool) -> bool:
        path, fs = self._fs(uri)
        return bool(fs.delete(path, recursive))

    def size(self, uri: str) -> int:
        path, fs = self._fs(uri)
        if not fs.exists(path):
            raise FileNotFoundError(uri)
        return int(fs.getFileStatus(path).getLen())

    def make_dirs(self, uri: str) -> None:
        path, fs = self._fs(uri)
        fs.mkdirs(path)

    def _local(self, local: Path):
        return self.jvm.org.apache.hadoop.fs.Path("file", None, str(local.absolute()))

    def put_file(self, local: Path, uri: str, md5: Optional[str] = None, progress: Progress = None) -> None:
        """Copy `local` to `uri` (replacing it); the copy gets the local file's modification time."""
        target, fs = self._fs(uri)
        fs.copyFromLocalFile(False, True, self._local(local), target)
        fs.setTimes(target, mtime_ms(local), -1)
        if progress:
            progress(local.stat().st_size)

    def get_file(self, uri: str, local: Path) -> None:
        source, fs = self._fs(uri)
        _fetch_atomically(local, lambda temporary: fs.copyToLocalFile(False, source, self._local(temporary), True))

    def stored_md5(self, uri: str) -> Optional[str]:
        return None

    def qualify(self, uri: str) -> str:
        path, fs = self._fs(uri)
        return str(fs.makeQualified(path).toString())


# --------------------------------------------------------------------------- the door


class Storage:
    """List, read, write and copy files by URI, on any of orchard's storages.

    `hadoop_conf`: Hadoop settings (a `spark.hadoop.` prefix is dropped), for Hadoop
    filesystems; its fs.s3a.* keys also give the S3 settings when `s3` is not given.
    `s3`: S3 endpoint and keys for boto3. `spark`: a SparkSession whose Hadoop configuration
    serves every non-local URI, S3 included (through Hadoop's S3 connector).
    Backend errors surface as botocore/py4j exceptions; wrap calls in `storage_errors(uri)`
    for one-line OrchardErrors.
    """

    def __init__(self, hadoop_conf: Optional[Dict[str, str]] = None, s3: Optional[S3Settings] = None,
                 spark=None):
        self.hadoop_conf = gateway.hadoop_settings(hadoop_conf)
        self.s3_settings = s3 or S3Settings.from_hadoop(self.hadoop_conf)
        self.spark = spark
        self._local = LocalFiles()
        self._s3: Optional[S3Files] = None
        self._hadoop: Optional[HadoopFiles] = None
        self._lock = threading.Lock()

    def backend(self, uri: str):
        """The backend serving `uri` (LocalFiles, S3Files or HadoopFiles). With a `spark`
        session, a path without a scheme is on Spark's default filesystem, as for Spark."""
        if is_local(uri) and (uri.startswith("file:") or self._plain_paths_are_local()):
            return self._local
        with self._lock:
            if split_uri(uri)[0] in S3_SCHEMES and self.spark is None:
                if self._s3 is None:
                    self._s3 = S3Files(self.s3_settings)
                return self._s3
            if self._hadoop is None:
                self._hadoop = HadoopFiles(self.hadoop_conf, self.spark)
            return self._hadoop

    def _plain_paths_are_local(self) -> bool:
        if self.spark is None:
            return True
        default_fs = self.spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS", "file:///")
        return str(default_fs).startswith("file:")

    def exists(self, uri: str) -> bool:
        """True when `uri` is a file or a folder (on S3: an object, or a prefix of objects)."""
        return self.backend(uri).exists(uri)

    def is_dir(self, uri: str) -> bool:
        """True when `uri` is a folder (on S3: a bucket, or a prefix holding objects)."""
        return self.backend(uri).is_dir(uri)

    def list(self, uri: str) -> List[FileInfo]:
        """Every file below the folder `uri`, recursively, sorted by relative name, hidden files
        included; [] when `uri` does not exist."""
        return self.backend(uri).list(uri)

    def iter_files(self, uri: str) -> Iterator[FileInfo]:
        """Every file below the folder `uri`, recursively, in no set order, hidden files included,
        one at a time (memory does not grow with the file count); nothing when `uri` does not exist."""
        return self.backend(uri).iter_files(uri)

    def list_names(self, uri: str) -> List[str]:
        """Names directly inside the folder `uri` (files and folders), sorted."""
        return self.backend(uri).list_names(uri)

    def read_bytes(self, uri: str) -> bytes:
        """The whole content of the file `uri`."""
        return self.backend(uri).read_bytes(uri)

    def open(self, uri: str) -> BinaryIO:
        """A binary file object to read `uri` (streamed from a local disk, in memory otherwise)."""
        return self.backend(uri).open(uri)

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write (or replace) the file `uri`, creating its folders. Atomic where the backend
        allows: a local disk and HDFS write a hidden temporary file and rename it; an S3 object
        appears whole when written."""
        self.backend(uri).write_bytes(uri, data)

    def delete(self, uri: str, recursive: bool = True) -> bool:
        """Delete the file or folder `uri` (with what it holds when `recursive`); False when
        there was nothing to delete."""
        return self.backend(uri).delete(uri, recursive)

    def size(self, uri: str) -> int:
        """Size in bytes of the file `uri`; FileNotFoundError when there is none."""
        return self.backend(uri).size(uri)

    def make_dirs(self, uri: str) -> None:
        """Create the folder `uri` and its parents (on S3: the bucket, when it does not exist)."""
        self.backend(uri).make_dirs(uri)

    def put_file(self, local: Path, uri: str, md5: Optional[str] = None, progress: Progress = None) -> None:
        """Copy the local file `local` to `uri`. S3: one PUT below PART_SIZE, parts of PART_SIZE
        above, the content's MD5 (`md5`, computed when None) stored as metadata; Hadoop: the copy
        gets the local file's modification time. `progress(n)` is called as bytes go."""
        self.backend(uri).put_file(local, uri, md5, progress)

    def get_file(self, uri: str, local: Path) -> None:
        """Copy the file `uri` to the local path `local` (written aside, then renamed)."""
        self.backend(uri).get_file(uri, local)

    def stored_md5(self, uri: str) -> Optional[str]:
        """The MD5 orchard stored with the S3 object `uri` (None elsewhere, or when absent)."""
        return self.backend(uri).stored_md5(uri)

    def qualify(self, uri: str) -> str:
        """`uri` made absolute: `file:/abs/path`, `hdfs://host:port/path`, S3 URIs as given."""
        return self.backend(uri).qualify(uri)
