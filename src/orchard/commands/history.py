"""`orchard history OUTPUT`: the versions of an output's features table (or errors table)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

from orchard.names import ERRORS_DIR, FEATURES_DIR
from orchard.table.read import history

HELP = "list the versions of an output's features table: operation, rows added and removed, PCA model"
EPILOG = """\
Read with delta-rs from the table's Delta log (no Spark). A version number goes to
--as-of of `orchard evaluate`, `orchard train` and `orchard predict --pca-model`, and to
orchard.read_features(..., version=N); the rows of a version stay readable until
`orchard forget --vacuum` (or Delta's VACUUM) removes their files.
"""
COLUMNS = ("version", "committed (UTC)", "operation", "+rows", "-rows", "rows", "by", "PCA model", "orchard")


def register(subparsers) -> None:
    parser = subparsers.add_parser("history", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", metavar="OUTPUT", help="an `orchard run` output (a folder, hdfs://, s3://)")
    parser.add_argument("--table", choices=(FEATURES_DIR, ERRORS_DIR), default=FEATURES_DIR,
                        help="which table (default features)")
    parser.add_argument("--json", action="store_true", help="one JSON object per version instead of a table")
    parser.set_defaults(func=history_command)


def history_command(args: argparse.Namespace) -> int:
    versions = history(args.output, args.table)
    if args.json:
        for entry in versions:
            print(json.dumps(entry, default=str))
        return 0
    print(render(versions))
    return 0


def row_of(entry: Dict[str, Any]) -> List[str]:
    """The table's cells for one version (`-` where unknown)."""
    meta = entry.get("orchard") or {}
    by = meta.get("operation", "another writer") if meta else "another writer"
    if not meta and str(entry["operation"]).startswith("VACUUM"):
        by = "vacuum"
    if by == "run" and isinstance(meta.get("run"), dict):
        by = f"run ({meta['run'].get('mode')})"

    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    return [cell(entry["version"]), entry["timestamp"].replace("+00:00", "").replace("T", " "), cell(entry["operation"]),
            cell(entry["added"]), cell(entry["removed"]), cell(entry["rows"]), by, cell(meta.get("pca_model")),
            cell(meta.get("orchard_version"))]


def render(versions: List[Dict[str, Any]]) -> str:
    """A plain-text table of `versions` (oldest first), one line each."""
    rows = [list(COLUMNS)] + [row_of(entry) for entry in versions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows)
