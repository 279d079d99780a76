#!/usr/bin/env python3
"""Rewrite the output blocks of docs/aws.md: each block that follows a `$ orchard ...` line gets
what that command prints now (dry runs and cost estimates: no AWS access needed).

    python scripts/update-aws-docs.py          (tests/cloud/test_commands.py checks the blocks are current)
"""
import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "aws.md"


def run(line: str) -> str:
    from orchard.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(shlex.split(line)[1:])
    if code != 0:
        sys.exit(f"`{line}` failed with exit code {code}")
    return out.getvalue().rstrip("\n")


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    updated = re.sub(r"```\n\$ (orchard [^\n]+)\n(.*?)\n```",
                     lambda m: f"```\n$ {m.group(1)}\n{run(m.group(1))}\n```", text, flags=re.S)
    DOC.write_text(updated, encoding="utf-8")
    print(f"{DOC}: {'updated' if updated != text else 'already current'}")


if __name__ == "__main__":
    main()
