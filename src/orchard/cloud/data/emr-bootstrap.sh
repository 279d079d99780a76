#!/bin/bash
# orchard @@ORCHARD_VERSION@@: EMR bootstrap action (written by `orchard aws bootstrap`).
#
# Runs on every node of an EMR cluster (Amazon Linux 2023) before Spark starts: EMR 7 (Python
# 3.9, the system's @@SYSTEM_PYTHON@@) or the Spark 4 line emr-spark-8 (Python 3.11, python3.11):
#   1. copies the ONNX model to @@MODEL_DIR@@ and checks its sha256;
#   2. creates a virtual environment, @@VENV@@, from the node's Python PYTHON_VERSION,
#      and installs in it the locked libraries (every pin, with hashes) from the wheelhouse in
#      the bucket, for this node's architecture, with --no-index: no PyPI access is needed.
#      The node's system Python is never touched (its libraries are rpm packages that
#      cloud-init and the AWS CLI use). Not pyspark: EMR provides its own Spark;
#   3. installs the orchard wheel in it with --no-deps.
# Spark's Python (PYSPARK_PYTHON, spark.pyspark.python) is @@VENV@@/bin/python: the cluster's
# configuration sets it.
#
# Usage: emr-bootstrap.sh WHEEL_S3_URI WHEELHOUSE_S3_URI MODEL_S3_URI [MODEL_SHA256 [PYTHON_VERSION]]
# (PYTHON_VERSION: the wheelhouse's, 3.9 by default; an empty MODEL_SHA256 means the built-in one)
# Fails loudly: any error stops here with a message, the node's bootstrap fails and so does the
# cluster start (see s3://BUCKET/logs/<cluster>/node/<instance>/bootstrap-actions/). Safe to run
# twice: the environment is reused (pip leaves what is installed as locked), the wheel and the
# model are replaced.
set -euo pipefail

log() { echo "orchard-bootstrap: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
trap 'log "FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

WHEEL_URI="${1:-}"
WHEELHOUSE_URI="${2:-}"
MODEL_URI="${3:-}"
MODEL_SHA256="${4:-@@MODEL_SHA256@@}"
PYTHON_VERSION="${5:-3.9}"
[ -n "$WHEEL_URI" ] && [ -n "$WHEELHOUSE_URI" ] && [ -n "$MODEL_URI" ] \
  || fail "usage: $0 WHEEL_S3_URI WHEELHOUSE_S3_URI MODEL_S3_URI [MODEL_SHA256 [PYTHON_VERSION]]"
case "$PYTHON_VERSION" in 3.9) NODE_PY=@@SYSTEM_PYTHON@@;; 3.1[0-9]) NODE_PY="/usr/bin/python$PYTHON_VERSION";;
  *) fail "unsupported PYTHON_VERSION $PYTHON_VERSION (3.9 or 3.1x)";; esac
ROOT="${ORCHARD_NODE_ROOT:-}"  # tests: a fake node's root folder
PYTHON="${ORCHARD_NODE_PYTHON:-$NODE_PY}"
VENV="$ROOT@@VENV@@"
MODEL_DIR="$ROOT@@MODEL_DIR@@"
SUDO="${ORCHARD_SUDO-sudo}"  # EMR runs bootstrap actions as the hadoop user
ARCH="${ORCHARD_NODE_ARCH:-$(uname -m)}"
PIP_OPTIONS=(--no-cache-dir --disable-pip-version-check --no-input --quiet --isolated)

command -v aws >/dev/null || fail "the aws CLI is missing (it is on every EMR node)"
case "$ARCH" in x86_64|aarch64) ;; *) fail "unsupported architecture $ARCH (x86_64 or aarch64)";; esac
[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null || fail "no Python at $PYTHON"
"$PYTHON" -c 'import sys; sys.exit(0 if "%d.%d" % sys.version_info[:2] == sys.argv[1] else 1)' "$PYTHON_VERSION" \
  || fail "the wheelhouse is for Python $PYTHON_VERSION, $PYTHON is $("$PYTHON" --version 2>&1)"

WORK="$(mktemp -d)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

MODEL_FILE="$(basename "$MODEL_URI")"
log "copying $MODEL_URI to $MODEL_DIR/$MODEL_FILE"
aws s3 cp --only-show-errors "$MODEL_URI" "$WORK/$MODEL_FILE"
if [ -n "$MODEL_SHA256" ]; then
  actual="$(sha256sum "$WORK/$MODEL_FILE" | cut -d' ' -f1)"
  [ "$actual" = "$MODEL_SHA256" ] \
    || fail "checksum mismatch for $MODEL_URI: sha256 $actual, expected $MODEL_SHA256"
fi
$SUDO mkdir -p "$MODEL_DIR"
$SUDO install -m 0644 "$WORK/$MODEL_FILE" "$MODEL_DIR/$MODEL_FILE.part"
$SUDO mv -f "$MODEL_DIR/$MODEL_FILE.part" "$MODEL_DIR/$MODEL_FILE"

WHEELHOUSE_URI="${WHEELHOUSE_URI%/}"
log "copying the wheelhouse for $ARCH from $WHEELHOUSE_URI/"
aws s3 cp --only-show-errors "$WHEELHOUSE_URI/requirements.txt" "$WORK/requirements.txt"
aws s3 cp --only-show-errors --recursive "$WHEELHOUSE_URI/$ARCH/" "$WORK/wheels/"
WHEEL="$WORK/$(basename "$WHEEL_URI")"
aws s3 cp --only-show-errors "$WHEEL_URI" "$WHEEL"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating the virtual environment $VENV ($("$PYTHON" --version 2>&1))"
  $SUDO mkdir -p "$(dirname "$VENV")"
  $SUDO "$PYTHON" -m venv "$VENV" \
    || fail "could not create $VENV with $PYTHON -m venv (is the python3 package complete?)"
fi
log "installing the locked libraries in $VENV (--no-index --require-hashes)"
$SUDO "$VENV/bin/python" -m pip install "${PIP_OPTIONS[@]}" --no-index --find-links "$WORK/wheels" \
  --require-hashes --requirement "$WORK/requirements.txt"
log "installing $WHEEL_URI (--no-deps)"
$SUDO "$VENV/bin/python" -m pip install "${PIP_OPTIONS[@]}" --no-index --no-deps --force-reinstall "$WHEEL"

"$VENV/bin/python" -c 'import orchard, onnxruntime, numpy, pandas, pyarrow, PIL, yaml, matplotlib, tqdm
print("orchard", orchard.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__,
      "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)' \
  || fail "the installed libraries do not import with $VENV/bin/python"
if "$VENV/bin/python" -m pip show pyspark >/dev/null 2>&1; then
  fail "a pip-installed pyspark is in $VENV; EMR's Spark must be the only one"
fi
log "done"
