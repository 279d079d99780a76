"""`orchard run`: the featurization pipeline."""
from __future__ import annotations

import argparse
import json
from typing import List

from orchard import progress
from orchard.names import DEFAULT_MODEL, PRECISIONS
from orchard.pipeline.config import DEFAULT_MASTER, RunConfig, build_config, load_config_file

HELP = "featurize a folder of fruit images: load -> preprocess -> CNN features -> PCA -> Parquet"
EPILOG = """\
input layout: <root>/<Split>/<Class>/<image> (Fruits-360) or <root>/<Class>/<image>;
images are .jpg/.jpeg/.png in any letter case, other files are counted as ignored.
output: features/ and errors/ (Parquet), pca_model/ (Spark PCAModel), run.json, pca_scree.png;
_orchard/commits/<n>.json names the committed files (readers: orchard.read_features).
example: orchard run --input fruits-360-100x100 --output runs/full   (try `orchard demo` first)
"""


def spark_conf_pair(text: str):
    """argparse type for `--conf KEY=VALUE`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def channel_values(text: str) -> List[float]:
    """argparse type for `--mean`/`--std`: 1 or 3 comma-separated numbers."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.485,0.456,0.406, got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers (R,G,B), got {len(values)}")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = RunConfig()
    parser.add_argument("--config", metavar="FILE",
                        help="YAML or JSON file with any of these options (command line wins)")
    parser.add_argument("--input", metavar="URI",
                        help="dataset root: a folder, hdfs:///path or s3://bucket/prefix")
    parser.add_argument("--output", metavar="URI", help="output folder (local, hdfs:// or s3://)")
    parser.add_argument("--model", metavar="NAME",
                        help=f"registered model (default {DEFAULT_MODEL}); see `orchard models`; with "
                             "--model-path, any other NAME names your own model")
    parser.add_argument("--model-path", metavar="FILE",
                        help="ONNX file to use: a registered model's (checked by sha256; default: "
                             "$ORCHARD_MODEL_DIR, then the copy shipped in the package, then the user "
                             "cache, then a checked download) or "
                             "your own (its input name, shape, NCHW/NHWC layout and uint8/float32 "
                             "dtype are read from the graph)")
    parser.add_argument("--feature-output", metavar="NAME",
                        help="the tensor to take as features (flattened per image): a graph output "
                             "or an intermediate tensor (default: the model's feature output, or "
                             "your own graph's first output)")
    parser.add_argument("--mean", type=channel_values, metavar="R,G,B",
                        help="float32 inputs: per-channel mean on the 0..1 scale; the model gets "
                             "(pixels/255 - mean)/std (default: none, 0..255 pixels as floats)")
    parser.add_argument("--std", type=channel_values, metavar="R,G,B",
                        help="float32 inputs: per-channel standard deviation on the 0..1 scale "
                             "(see --mean)")
    pca = parser.add_mutually_exclusive_group()
    pca.add_argument("--pca-variance", type=float, metavar="FRACTION",
                     help=f"keep the fewest components explaining this much variance "
                          f"(default {defaults.pca_variance})")
    pca.add_argument("--pca-k", type=int, metavar="K", help="keep exactly K components")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=f"images per inference call (default {defaults.batch_size})")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"the model's arithmetic (default {defaults.precision}): int8 runs it quantized "
                             "by ONNX Runtime (static, per-channel), calibrated on 300 of the input's images "
                             "and cached; faster, features close to fp32's (README, Speed)")
    parser.add_argument("--master", metavar="URL",
                        help=f"Spark master (default {DEFAULT_MASTER}: embedded, all cores; under "
                             "spark-submit, its master)")
    parser.add_argument("--partitions", type=int, metavar="N",
                        help="Spark partitions for the images (default: from file and core counts)")
    parser.add_argument("--profile", metavar="NAME",
                        help="execution profile, e.g. `local` for `orchard local up`'s cluster")
    parser.add_argument("--event-log-dir", metavar="URI",
                        help="where Spark writes this run's event log")
    parser.add_argument("--conf", dest="spark_conf", action="append", type=spark_conf_pair,
                        metavar="KEY=VALUE", help="extra Spark setting (repeatable)")
    parser.add_argument("--overwrite", action="store_true", default=None,
                        help="replace the output if it exists")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (terminal) or progress lines (otherwise) on stderr")
    grow = parser.add_argument_group("runs that grow (see README, Runs that grow)")
    grow.add_argument("--update", action="store_true", default=None,
                      help="featurize only images new or changed (size, mtime) since the output's last "
                           "commit; drop removed ones; project with the committed PCA model")
    grow.add_argument("--resume", action="store_true", default=None,
                      help="finish a killed run: keep its committed chunks, featurize the rest (as --update)")
    grow.add_argument("--refit-pca", action="store_true", default=None,
                      help="with --update: refit the PCA on every row and rewrite the pca column")
    grow.add_argument("--pca-model", metavar="URI",
                      help="project with this PCA model (another run's output, or a saved PCAModel "
                           "folder) instead of fitting one; backbone and length must match")
    grow.add_argument("--chunk-images", type=int, metavar="N",
                      help="images featurized and committed per chunk, the most a killed run redoes "
                           "(default: about 3 minutes of work on the cores at hand)")
    parser.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    file_settings = load_config_file(args.config) if args.config else {}
    cli = {name: getattr(args, name, None) for name in RunConfig.__dataclass_fields__}
    if cli.get("spark_conf"):
        cli["spark_conf"] = {**file_settings.get("spark_conf", {}), **dict(cli["spark_conf"])}
    return build_config(file_settings, cli)


def run_command(args: argparse.Namespace) -> int:
    # orchard.api imports pyspark.ml: deferred, so that the CLI starts without it
    from orchard import api

    config = config_from_args(args)
    progress.configure(quiet=args.quiet)
    record = api.run(config)
    summary = {
        "output": record.output,
        "counts": record.to_dict()["counts"],
        "pca_k": record.pca_k,
        "explained_variance": record.pca.get("explained_variance"),
        "seconds": record.total_seconds,
    }
    if record.pca.get("warning"):
        summary["warning"] = record.pca["warning"]
    print(json.dumps(summary, indent=2))
    return 0
