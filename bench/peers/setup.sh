#!/usr/bin/env bash
# Virtual environments for the peer benchmark (bench/peers/run.py) and the seeds' Keras baseline
# (bench/seeds_keras.py), outside the repository:
#     ${ORCHARD_CACHE_DIR:-~/.cache/orchard}/bench-venvs/{ray,daft,keras}
# Idempotent: an environment whose packages are all installed (a marker file records the pins)
# is skipped. Only PyPI is needed. Usage:
#     bash bench/peers/setup.sh [ray] [daft] [keras]      (default: all three)
#     PYTHON=python3.11 bash bench/peers/setup.sh          (the interpreter the venvs are made from)
set -euo pipefail

PYTHON=${PYTHON:-python3}
ROOT=${ORCHARD_CACHE_DIR:-$HOME/.cache/orchard}/bench-venvs

# The versions measured in issue 15 (Daft 0.7.26, Ray 2.60.0, both on PyPI for Python 3.11) and
# what pip resolved with them (2026-11-30). ONNX Runtime and Pillow are the versions orchard was
# measured with, so decoding and inference are the same in every system. Daft 0.7.26 wants
# pyarrow < 26, hence 25.0.1 there.
RAY=("ray[data]==2.60.0" onnxruntime==1.32.0 pillow==13.0.0 pyarrow==26.0.1 pandas==2.3.3 numpy==2.4.6)
DAFT=(daft==0.7.26 onnxruntime==1.32.0 pillow==13.0.0 pyarrow==25.0.1 pandas==2.3.3 numpy==2.4.6)
# The seeds' pipeline: Keras MobileNetV2 in a Spark pandas UDF.
KERAS=(tensorflow-cpu==2.21.0 keras==3.15.1 pyspark==3.5.9 pandas==2.3.3 pyarrow==26.0.1 numpy==2.4.6 pillow==13.0.0)

make_env() {
    local name=$1; shift
    local env=$ROOT/$name marker=$ROOT/$name/.orchard-bench-pins
    local pins="$*"
    if [[ -f $marker && "$(cat "$marker")" == "$pins" ]]; then
        echo "$name: ready ($env)"
        return
    fi
    echo "$name: installing $pins into $env"
    [[ -x $env/bin/python ]] || "$PYTHON" -m venv "$env"
    "$env/bin/python" -m pip install --quiet --upgrade pip
    "$env/bin/python" -m pip install --quiet "$@"
    printf '%s' "$pins" > "$marker"
    echo "$name: ready ($env)"
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
mkdir -p "$ROOT"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ray daft keras)
for target in "${targets[@]}"; do
    case $target in
        ray) make_env ray "${RAY[@]}" ;;
        daft) make_env daft "${DAFT[@]}" ;;
        keras) make_env keras "${KERAS[@]}" ;;
        *) echo "unknown environment: $target (ray, daft, keras)" >&2; exit 2 ;;
    esac
done
