#!/usr/bin/env bash
# orchard set-up in one command: checks Java, installs orchard and its test tools with pip.
#   scripts/setup.sh            (uses $PYTHON, default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
  echo "setup: orchard needs Python >= 3.9 ($("$PYTHON" --version 2>&1) found); set PYTHON=..." >&2
  exit 1
fi
java_bin=${JAVA_HOME:+$JAVA_HOME/bin/}java
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "setup: Java not found. Spark needs Java 8, 11 or 17: apt-get install openjdk-17-jre-headless" >&2
  echo "       (or set JAVA_HOME), then run this again." >&2
  exit 1
fi
echo "setup: $("$java_bin" -version 2>&1 | head -1)"

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"

if ! ldconfig -p 2>/dev/null | grep -q 'liblapack.so.3'; then
  echo "setup: hint: no native BLAS/LAPACK found; PCA runs 3-5x faster with it:" \
       "apt-get install libopenblas0-pthread liblapack3"
fi
echo "setup: done. Try: orchard run --input ../shared/data/fruits-360-sample --output runs/sample"
