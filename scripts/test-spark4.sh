#!/usr/bin/env bash
# Run orchard's end-to-end tests on pyspark 4.1 (emr-spark-8.1.0's line) in a second virtual environment.
# The environment is cached (ORCHARD_SPARK4_VENV, default ~/.cache/orchard/venv-spark4) and
# reinstalled only when pyproject.toml changes, so a re-run costs only the tests.
# Usage: scripts/test-spark4.sh [pytest options] [tests...]   (default tests: the end-to-end ones)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${ORCHARD_SPARK4_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/orchard/venv-spark4}
spec=${ORCHARD_SPARK4_PYSPARK:-"pyspark>=4.1,<4.2"}  # what emr-spark-8.1.0 (the LTS line) runs: Spark 4.1.1
stamp="$venv/.orchard-stamp"
want="$(sha256sum pyproject.toml | cut -c1-16) $spec"

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "spark4: creating $venv ($spec)"
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # orchard's dependencies (non-editable, the tree's pyproject) with pyspark 4 in place of 3.5,
  # built from a copy so that no build/ or egg-info is left in the tree.
  copy="$(mktemp -d)"
  cp -r pyproject.toml README.md src "$copy/"
  "$venv/bin/python" -m pip install -q "$copy[test]"
  # then pyspark 4 in place of the 3.5 that orchard's metadata names as its tested default
  "$venv/bin/python" -m pip install -q "$spec"
  rm -rf "$copy"
  echo "$want" > "$stamp"
fi

# The tests import orchard from this tree, not from the copy installed above.
export PYTHONPATH=$PWD/src
export PYSPARK_PYTHON="$venv/bin/python" PYSPARK_DRIVER_PYTHON="$venv/bin/python"
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
unset SPARK_HOME
"$venv/bin/python" -c 'import pyspark, sys; print(f"spark4: pyspark {pyspark.__version__} on Python {sys.version.split()[0]}")'
paths=0
for arg in "$@"; do case "$arg" in -*) ;; *) paths=1;; esac; done
if [ $paths -eq 0 ]; then  # options only: the end-to-end tests
  set -- "$@" tests/pipeline/test_run.py tests/test_api.py
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
