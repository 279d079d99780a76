"""Reading an output's tables without a JVM: delta-rs (`deltalake`), pandas and pyarrow.

The same committed rows as `spark.read.format("delta")`: delta-rs follows the table's Delta
log, so a run being written or killed is never seen. Local folders, `file:`, `s3://` (and
`s3a://`, read as `s3://`) and `hdfs://` URIs; S3 settings come from orchard.storage's
`S3Settings` (an endpoint such as the local cluster's SeaweedFS) or boto3's usual variables.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional, Tuple, Union

from orchard.errors import OrchardError
from orchard.names import FEATURES_DIR
from orchard.storage.fs import S3Settings, Storage, error_reason, is_local, join, local_path, split_uri
from orchard.table.delta import orchard_metadata

Version = Union[int, str, dt.datetime, None]  # a version number, an ISO 8601 time, or None: the newest


def storage_options(uri: str, s3: Optional[S3Settings] = None) -> Dict[str, str]:
    """delta-rs storage options for `uri`: for S3, the endpoint, keys and region of `s3`
    (plain http allowed for a loopback endpoint); nothing otherwise (boto3-style variables apply)."""
    if is_local(uri) or split_uri(uri)[0] not in ("s3", "s3a", "s3n") or s3 is None:
        return {}
    options = {"AWS_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": s3.access_key,
               "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_REGION": s3.region or "us-east-1"}
    if s3.endpoint_url:  # an endpoint of one's own (SeaweedFS, MinIO): path-style buckets, as s3a's
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if s3.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return {key: value for key, value in options.items() if value}


def delta_uri(uri: str) -> str:
    """`uri` as delta-rs names it: a local path for local URIs, s3:// for s3a:// and s3n://."""
    if is_local(uri):
        return str(local_path(uri))
    scheme = split_uri(uri)[0]
    return "s3" + uri[len(scheme):] if scheme in ("s3a", "s3n") else uri


def open_table(uri: str, table: str = FEATURES_DIR, version: Version = None, storage: Optional[Storage] = None):
    """The deltalake.DeltaTable `table` of the output `uri`, at `version` (a number, an ISO 8601
    time or datetime: the version committed at or before it; None: the newest).
    Raises OrchardError when there is no such table or version."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    storage = storage or Storage()
    root = storage.qualify(uri) if not is_local(uri) else uri
    target = join(root.rstrip("/"), table)
    options = storage_options(root, storage.s3_settings)
    try:
        delta = DeltaTable(delta_uri(target), storage_options=options)
        if version is not None:
            delta.load_as_version(version if isinstance(version, (int, dt.datetime)) else _version_arg(version))
    except TableNotFoundError:
        raise OrchardError(f"{target}: no Delta table there (not an orchard output, or no finished run yet)") from None
    except (DeltaError, OSError, ValueError) as error:  # delta-rs: a version not in the log, a store it cannot reach
        raise OrchardError(f"{target}: {error_reason(error)}") from None
    return delta


def _version_arg(text: str) -> Union[int, dt.datetime]:
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise OrchardError(f"--as-of {text!r}: a table version (a number) or an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def read_features(uri: str, table: str = FEATURES_DIR, columns: Optional[List[str]] = None,
                  storage: Optional[Storage] = None, version: Version = None):
    """The committed rows of `table` (features or errors) of the output `uri`, as a
    pandas.DataFrame (one row per image; `features` and `pca` are arrays of float32), at
    `version` (see open_table; default: the newest). Raises OrchardError when the output has
    no such table or version."""
    return open_table(uri, table, version, storage).to_pandas(columns=columns)


def committed_files(uri: str, table: str = FEATURES_DIR, storage: Optional[Storage] = None,
                    version: Version = None) -> List[str]:
    """The URIs of the Parquet files of `table`'s version `version` (default: the newest)."""
    return list(open_table(uri, table, version, storage).file_uris())


def history(uri: str, table: str = FEATURES_DIR, storage: Optional[Storage] = None) -> List[Dict[str, Any]]:
    """The table's versions, oldest first: version, timestamp (ISO 8601 UTC), operation, rows
    `added` and `removed` by it and `rows` after it (from Delta's operation metrics; an
    updated row counts as removed and added; None where Delta records no metrics), and
    orchard's metadata (`orchard`: None for another writer's commit)."""
    entries: List[Dict[str, Any]] = []
    rows: Optional[int] = 0
    for commit in sorted(open_table(uri, table, None, storage).history(), key=lambda c: int(c.get("version", -1))):
        added, removed = row_changes(commit, rows)
        rows = rows + added - removed if rows is not None and added is not None and removed is not None else None
        moment = dt.datetime.fromtimestamp(int(commit.get("timestamp", 0)) / 1000, tz=dt.timezone.utc)
        entries.append({"version": int(commit.get("version", -1)), "timestamp": moment.isoformat(timespec="seconds"),
                        "operation": commit.get("operation"), "added": added, "removed": removed, "rows": rows,
                        "orchard": orchard_metadata(commit.get("userMetadata"))})
    return entries


def row_changes(commit: Dict[str, Any], rows_before: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
    """(rows added, rows removed) by one commit of Delta's history (`rows_before`: the table's
    rows before it, for an overwrite); (None, None) for an operation without row metrics."""
    metrics = {key: int(value) for key, value in (commit.get("operationMetrics") or {}).items()
               if str(value).lstrip("-").isdigit()}
    operation = commit.get("operation") or ""
    if operation in ("WRITE", "CREATE TABLE AS SELECT", "REPLACE TABLE AS SELECT", "CREATE OR REPLACE TABLE AS SELECT"):
        mode = str((commit.get("operationParameters") or {}).get("mode", "")).strip('"').lower()
        replaced = operation != "WRITE" or mode == "overwrite"
        return metrics.get("numOutputRows", 0), (rows_before if replaced else 0)
    if operation == "MERGE":
        updated = metrics.get("numTargetRowsUpdated", 0)
        return metrics.get("numTargetRowsInserted", 0) + updated, metrics.get("numTargetRowsDeleted", 0) + updated
    if operation == "DELETE":
        return 0, metrics.get("numDeletedRows", 0)
    if operation in ("VACUUM START", "VACUUM END", "OPTIMIZE", "SET TBLPROPERTIES"):
        return 0, 0
    return None, None
