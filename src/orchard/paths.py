"""Local paths and remote URIs (hdfs://, s3://, s3a://); file digests; orchard's cache folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse


def is_local_uri(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # "C:" drive letters count as local


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (`file:/x` or a plain path)."""
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)


def file_digest(path: Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


CACHE_DIR_ENV = "ORCHARD_CACHE_DIR"


def cache_root() -> Path:
    """orchard's cache folder: $ORCHARD_CACHE_DIR, default ~/.cache/orchard."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "orchard")
