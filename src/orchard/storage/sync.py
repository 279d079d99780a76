"""One sync engine: copy a local folder to S3, HDFS or any Hadoop filesystem and back, in
parallel, skipping files already there and identical. `orchard push`/`pull` and `orchard aws
push` both use it.

- Hidden files (a name in the path starting with `_` or `.`, as Spark and Hadoop hide them:
  `_SUCCESS`, `.DS_Store`, `.crc` files) are not part of a dataset: never copied, counted.
- Identical means the same size and, on S3, an ETag equal to the content's MD5 or to the
  multipart ETag orchard's uploads get (parts of PART_SIZE bytes), or else the MD5 orchard
  stored as metadata (the ETag of an SSE-KMS object is not an MD5); on Hadoop filesystems, the
  same modification time (orchard gives each copy its source's time, as `rsync -t` does).
- Every file is its own object or file, written whole: an interrupted copy loses at most the
  files in flight, and running it again copies only what is missing or changed.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.progress import Display, is_quiet
from orchard.storage.fs import (
    S3_SCHEMES,
    FileInfo,
    Progress,
    Storage,
    error_reason,
    file_digests,
    is_copied,
    is_local,
    join,
    split_uri,
    storage_errors,
)

DEFAULT_JOBS = 32


@dataclass
class LocalFile:
    """A file to copy: its name relative to the folder copied ('/' separators), its path, size."""

    name: str
    path: Path
    size: int
    _digests: Optional[Tuple[str, str]] = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, path: Path, name: str) -> "LocalFile":
        return cls(name, path, path.stat().st_size)

    def digests(self) -> Tuple[str, str]:
        """(MD5, S3 ETag) of the content, computed once."""
        if self._digests is None:
            self._digests = file_digests(self.path)
        return self._digests


def local_files(root: Path) -> Tuple[List[LocalFile], int]:
    """(the visible files below `root`, sorted by name; how many hidden files were left out).

    Raises OrchardError when `root` is not a folder or holds no visible file.
    """
    if not root.is_dir():
        raise OrchardError(f"{root} is not a folder")
    found: List[LocalFile] = []
    hidden = 0
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if not path.is_file():
                continue
            if not is_copied(relative):
                hidden += 1
            else:
                found.append(LocalFile.of(path, relative))
    if not found:
        raise OrchardError(f"no files to copy under {root}" + (f" ({hidden} hidden)" if hidden else ""))
    return found, hidden


class StorageTarget:
    """A remote folder (`uri`) as the engine sees it, through a `Storage`."""

    def __init__(self, storage: Storage, uri: str):
        self.storage = storage
        self.uri = check_remote(uri, storage)

    def list(self) -> Dict[str, FileInfo]:
        return {info.name: info for info in self.storage.list(self.uri)}

    def prepare(self) -> None:
        self.storage.make_dirs(self.uri)

    def stored_md5(self, name: str) -> Optional[str]:
        return self.storage.stored_md5(join(self.uri, name))

    def upload(self, file: LocalFile, progress: Progress) -> None:
        md5 = file.digests()[0] if self.wants_md5 else None
        self.storage.put_file(file.path, join(self.uri, file.name), md5, progress)

    @property
    def wants_md5(self) -> bool:
        return split_uri(self.uri)[0] in S3_SCHEMES and self.storage.spark is None

    def download(self, name: str, local: Path) -> None:
        self.storage.get_file(join(self.uri, name), local)


def check_remote(uri: str, storage: Storage) -> str:
    """`uri` if push and pull can copy to and from it; raises OrchardError saying why not."""
    if is_local(uri):
        raise OrchardError(f"{uri}: push and pull copy to and from s3://bucket/prefix, hdfs:///path "
                           "or another Hadoop filesystem URI")
    scheme, authority, _ = split_uri(uri)
    if scheme in S3_SCHEMES and not authority:
        raise OrchardError(f"{uri}: an S3 URI needs a bucket: s3://bucket/prefix")
    if scheme == "hdfs" and not authority and not storage.hadoop_conf.get("fs.defaultFS"):
        raise OrchardError(f"{uri}: give hdfs://host:port/path, or --profile local for the local "
                           "cluster's HDFS")
    stripped = uri.rstrip("/")
    return stripped if split_uri(stripped)[2] != "/" else uri


def is_same(file: LocalFile, remote: FileInfo, target) -> bool:
    """True when `remote` holds what `file` holds (see the module's docstring)."""
    if remote.size != file.size:
        return False
    if remote.etag is not None:
        md5, etag = file.digests()
        if remote.etag in (md5, etag):
            return True
        return target.stored_md5(file.name) == md5
    return remote.mtime_ms is not None and remote.mtime_ms == int(file.path.stat().st_mtime * 1000)


def _summary(files: int, copied: List[int], hidden: int) -> Dict[str, int]:
    return {"files": files, "copied": len(copied), "skipped": files - len(copied),
            "hidden": hidden, "bytes": sum(copied)}


def upload(files: List[LocalFile], target, jobs: int = DEFAULT_JOBS, progress: bool = True,
           label: str = "push", hidden: int = 0) -> Dict[str, int]:
    """Copy `files` to `target` (their order kept when jobs == 1), skipping identical ones.

    `target` has list() -> {name: FileInfo}, stored_md5(name) and upload(file, progress).
    Returns {files, copied, skipped, hidden, bytes}.
    """
    remote = target.list()
    todo = [f for f in files if f.name not in remote or not is_same(f, remote[f.name], target)]
    tasks = [(f.name, f.size, lambda report, f=f: target.upload(f, report)) for f in todo]
    _run(tasks, jobs, label, progress)
    return _summary(len(files), [f.size for f in todo], hidden)


def push(local_dir: str, target: StorageTarget, jobs: int = DEFAULT_JOBS, progress: bool = True,
         label: Optional[str] = None) -> Dict[str, Any]:
    """Copy every visible file below `local_dir` to `target` (its folder or bucket created when
    missing), skipping identical files already there.

    Returns {source, target, files, copied, skipped, hidden, bytes, seconds}.
    """
    started = time.perf_counter()
    files, hidden = local_files(Path(local_dir).expanduser())
    with storage_errors(target.uri):
        target.prepare()
        counts = upload(files, target, jobs, progress, label or f"push {target.uri}", hidden)
    return {"source": local_dir, "target": target.uri, **counts,
            "seconds": round(time.perf_counter() - started, 2)}


def pull(target: StorageTarget, local_dir: str, jobs: int = DEFAULT_JOBS,
         progress: bool = True) -> Dict[str, Any]:
    """Copy every visible file below `target` into `local_dir`, skipping identical files there;
    each copy gets its source's modification time when the source has one.

    Returns {source, target, files, copied, skipped, hidden, bytes, seconds}.
    """
    started = time.perf_counter()
    folder = Path(local_dir).expanduser()
    with storage_errors(target.uri):
        listed = target.list()
        if not listed:
            raise OrchardError(f"nothing to pull: no files under {target.uri}")
        remote = {name: info for name, info in listed.items() if is_copied(name)}
        todo = []
        for name, info in sorted(remote.items()):
            local = folder.joinpath(*name.split("/"))
            if not (local.is_file() and is_same(LocalFile.of(local, name), info, target)):
                todo.append((name, local, info))
        for _, local, _ in todo:
            local.parent.mkdir(parents=True, exist_ok=True)
        tasks = [(name, info.size, lambda report, n=name, p=local, i=info: _download(target, n, p, i, report))
                 for name, local, info in todo]
        _run(tasks, jobs, f"pull {target.uri}", progress)
    counts = _summary(len(remote), [info.size for _, _, info in todo], len(listed) - len(remote))
    return {"source": target.uri, "target": local_dir, **counts,
            "seconds": round(time.perf_counter() - started, 2)}


def _download(target, name: str, local: Path, info: FileInfo, report: Callable[[int], None]) -> None:
    target.download(name, local)
    if info.mtime_ms is not None:
        os.utime(local, (info.mtime_ms / 1000, info.mtime_ms / 1000))
    report(info.size)


Task = Tuple[str, int, Callable[[Callable[[int], None]], None]]  # (name, bytes, copy(progress))


def _run(tasks: List[Task], jobs: int, label: str, progress: bool) -> None:
    """Run the copies in `jobs` threads (in order in this thread when jobs == 1), showing bytes
    and files done on stderr (orchard.progress: a tqdm bar on a terminal, else plain periodic
    lines; none when `progress` is false or progress is quiet). The first failure cancels the
    rest and is raised as an OrchardError naming the file."""
    if jobs < 1:
        raise OrchardError(f"the number of parallel copies must be at least 1, got {jobs}")
    if not tasks:
        return
    lock = threading.Lock()
    display = Display(sum(size for _, size, _ in tasks), label, unit="B") if progress and not is_quiet() else None
    state = {"bytes": 0, "files": 0}

    def advance(n: int) -> None:
        with lock:
            state["bytes"] += n
            if display is not None:
                display.update(state["bytes"], extra=f"{state['files']}/{len(tasks)} files")

    def done(count: int) -> None:
        with lock:
            state["files"] = count
            if display is not None:
                display.update(state["bytes"], extra=f"{count}/{len(tasks)} files", final=count == len(tasks))

    try:
        if jobs == 1:
            for count, (name, _, copy) in enumerate(tasks, 1):
                _copy(name, copy, advance)
                done(count)
            return
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_copy, name, copy, advance): name for name, _, copy in tasks}
            try:
                for count, future in enumerate(as_completed(futures), 1):
                    future.result()
                    done(count)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        if display is not None:
            display.close()


def _copy(name: str, copy: Callable[[Callable[[int], None]], None], advance: Callable[[int], None]) -> None:
    try:
        copy(advance)
    except OrchardError:
        raise
    except Exception as error:
        raise OrchardError(f"copying {name} failed: {error_reason(error)}") from None
