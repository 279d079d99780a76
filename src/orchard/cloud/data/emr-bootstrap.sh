#!/bin/bash
# orchard @@ORCHARD_VERSION@@: EMR bootstrap action (written by `orchard aws bootstrap`).
#
# Runs on every node of an EMR 7 cluster (Amazon Linux 2023, Python 3.9) before Spark starts:
#   1. installs orchard's pinned Python libraries for the nodes' Python, and NOT pyspark:
#      EMR provides its own Spark, a pip-installed pyspark would shadow it;
#   2. installs the orchard wheel with --no-deps;
#   3. copies the ONNX model to @@MODEL_DIR@@ and checks its sha256.
#
# Usage: emr-bootstrap.sh WHEEL_S3_URI MODEL_S3_URI [MODEL_SHA256]
# Fails loudly: any error stops here with a message, the node's bootstrap fails and so does the
# cluster start (see s3://BUCKET/logs/<cluster>/node/<instance>/bootstrap-actions/). Safe to run
# twice: pinned versions are left as they are, the wheel and the model are replaced.
set -euo pipefail

log() { echo "orchard-bootstrap: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
trap 'log "FAILED (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

WHEEL_URI="${1:-}"
MODEL_URI="${2:-}"
MODEL_SHA256="${3:-@@MODEL_SHA256@@}"
[ -n "$WHEEL_URI" ] && [ -n "$MODEL_URI" ] || fail "usage: $0 WHEEL_S3_URI MODEL_S3_URI [MODEL_SHA256]"
PYTHON="${ORCHARD_NODE_PYTHON:-@@NODE_PYTHON@@}"
MODEL_DIR="${ORCHARD_NODE_MODEL_DIR:-@@MODEL_DIR@@}"
SUDO="${ORCHARD_SUDO-sudo}"  # EMR runs bootstrap actions as the hadoop user
PIP_OPTIONS=(--no-cache-dir --disable-pip-version-check --no-input --quiet)

command -v aws >/dev/null || fail "the aws CLI is missing (it is on every EMR node)"
[ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null || fail "no Python at $PYTHON"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 9) else 1)' \
  || fail "orchard needs Python >= 3.9, $PYTHON is $("$PYTHON" --version 2>&1)"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  log "pip is missing for $PYTHON: installing python3-pip"
  $SUDO dnf install -y -q python3-pip
fi

WORK="$(mktemp -d)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

log "installing pinned libraries for $("$PYTHON" --version 2>&1) (pyspark excluded: EMR has Spark)"
cat > "$WORK/requirements.txt" <<'REQUIREMENTS'
@@REQUIREMENTS@@
REQUIREMENTS
$SUDO "$PYTHON" -m pip install "${PIP_OPTIONS[@]}" --requirement "$WORK/requirements.txt"

WHEEL="$WORK/$(basename "$WHEEL_URI")"
log "installing $WHEEL_URI (--no-deps)"
aws s3 cp --only-show-errors "$WHEEL_URI" "$WHEEL"
$SUDO "$PYTHON" -m pip install "${PIP_OPTIONS[@]}" --no-deps --force-reinstall "$WHEEL"

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

"$PYTHON" -c 'import orchard, onnxruntime, numpy, pandas, pyarrow, PIL, yaml, matplotlib, tqdm
print("orchard", orchard.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__,
      "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)' \
  || fail "the installed libraries do not import with $PYTHON"
if "$PYTHON" -m pip show pyspark >/dev/null 2>&1; then
  log "WARNING: a pip-installed pyspark is present for $PYTHON; EMR's Spark should be the only one"
fi
log "done"
