"""The `orchard` command line: one subcommand per capability, registered from orchard.commands."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from orchard import __version__
from orchard.commands import (
    aws, convert, demo, doctor, evaluate, forget, history, local, models, predict, report, run, scale_test, serve,
    train, transfer,
)
from orchard.errors import OrchardError

# Each module defines register(subparsers); add new capabilities here.
COMMAND_MODULES = (demo, run, history, forget, convert, evaluate, models, report, scale_test, aws, local, transfer,
                   train, predict, serve, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The `orchard` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="orchard",
        description="Turn collections of fruit photos into compact features on Apache Spark.",
    )
    parser.add_argument("--version", action="version", version=f"orchard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); the exit code (OrchardError: its own, 130 on ^C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s orchard %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except OrchardError as error:
        print(f"orchard: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("orchard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
