"""`orchard models`: the model registry, and fetching weights into the user cache."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from orchard.names import DEFAULT_MODEL
from orchard.pipeline.models import REGISTRY, cache_dir, resolve_model

HELP = "list the registered models, or fetch one's weights into the cache (checksum verified)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help=HELP, description=HELP)
    parser.add_argument("action", nargs="?", choices=("list", "fetch"), default="list",
                        help="list (default) or fetch")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model to fetch (default {DEFAULT_MODEL})")
    parser.add_argument("--model-path", metavar="FILE", help="verify this file instead of searching")
    parser.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(json.dumps({"cache": str(cache_dir()), "models": [asdict(s) for s in REGISTRY.values()]},
                         indent=2))
        return 0
    spec, path, digest = resolve_model(args.model, args.model_path)
    print(json.dumps({"model": spec.name, "path": str(path), "sha256": digest}, indent=2))
    return 0
