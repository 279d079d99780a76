"""`orchard serve`: the fruit classifier as an HTTP service with a web page."""
from __future__ import annotations

import argparse
import logging
import os

from orchard.classify.export import read_metadata
from orchard.classify.names import ONNX_FILE
from orchard.errors import OrchardError
from orchard.names import PRECISIONS
from orchard.serve.settings import SETTINGS_ENV, ServeSettings, settings_json

HELP = "serve a trained fruit classifier over HTTP: POST /v1/predict, a web page at /"
EPILOG = """\
endpoints: POST /v1/predict (multipart field 'file', or raw bytes with Content-Type image/*),
GET /v1/model, GET /healthz, GET / (the web page), GET /docs (OpenAPI).
example: orchard serve models/fruit --port 8000
         curl -F file=@banana.jpg http://127.0.0.1:8000/v1/predict
"""
log = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help=HELP, description=HELP, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ServeSettings(model_dir="")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `orchard train` (holds fruit.onnx)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=defaults.workers, metavar="N",
                        help="worker processes, each with its own model session (default 1)")
    parser.add_argument("--threads", type=int, default=defaults.threads, metavar="N",
                        help="ONNX Runtime threads per worker (default: the cores divided by the workers)")
    parser.add_argument("--threshold", type=float, default=defaults.threshold, metavar="P",
                        help=f"below this confidence the answer says it is not sure (default {defaults.threshold})")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, metavar="K",
                        help=f"guesses in each answer (default {defaults.top_k})")
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20, metavar="MB",
                        help="largest upload accepted, in MiB; larger ones get 413 (default 10)")
    parser.add_argument("--timeout", type=float, default=defaults.request_timeout_s, metavar="SECONDS",
                        help=f"time limit to receive an upload and answer it (default {defaults.request_timeout_s:g})")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, metavar="N",
                        help=f"images of concurrent requests run together (default {defaults.max_batch}; "
                             "1 turns micro-batching off)")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help=f"the model's arithmetic (default {defaults.precision}): int8 runs the backbone "
                             "quantized by ONNX Runtime, calibrated on the packaged demo images and cached "
                             "(the first start quantizes: ~30 s)")
    parser.set_defaults(func=serve_command)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    settings = ServeSettings(model_dir=os.path.abspath(args.model_dir), threshold=args.threshold, top_k=args.top_k,
                             max_body_bytes=int(args.max_body_mb * 2**20), request_timeout_s=args.timeout,
                             max_batch=args.max_batch, threads=args.threads, workers=args.workers,
                             precision=args.precision)
    for name, value in (("--workers", settings.workers), ("--top-k", settings.top_k),
                        ("--max-batch", settings.max_batch), ("--max-body-mb", settings.max_body_bytes)):
        if value < 1:
            raise OrchardError(f"{name} must be positive, got {value}")
    if not 0.0 <= settings.threshold <= 1.0:
        raise OrchardError(f"--threshold must be in [0, 1], got {settings.threshold}")
    if settings.request_timeout_s <= 0:
        raise OrchardError(f"--timeout must be positive, got {settings.request_timeout_s}")
    return settings


def serve_command(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise OrchardError(f"orchard serve needs {error.name}: pip install 'orchard[serve]'") from None
    settings = settings_from_args(args)
    model_file = os.path.join(settings.model_dir, ONNX_FILE)
    if not os.path.isfile(model_file):
        raise OrchardError(f"no {ONNX_FILE} in {args.model_dir}: train one with `orchard train RUN --output "
                           f"{args.model_dir}`")
    classes = read_metadata(model_file)["classes"]  # fails here, before any worker starts
    os.environ[SETTINGS_ENV] = settings_json(settings)
    log.info("serving %s (%d classes) on http://%s:%d/ with %d worker(s)", model_file, len(classes), args.host,
             args.port, settings.workers)
    uvicorn.run("orchard.serve.app:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=settings.workers, log_level="info", server_header=False, timeout_keep_alive=5)
    return 0
