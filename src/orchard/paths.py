"""Telling local paths from remote URIs (hdfs://, s3://, s3a://)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse


def is_local_uri(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # "C:" drive letters count as local


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI (`file:/x` or a plain path)."""
    return Path(urlparse(uri).path if uri.startswith("file:") else uri)
