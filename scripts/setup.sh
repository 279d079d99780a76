#!/usr/bin/env bash
# orchard set-up in one command: system packages, a virtual environment, orchard, then a check.
#
#   scripts/setup.sh                 Java, native BLAS/LAPACK and Maven if missing (apt-get, as root
#                                    or with sudo), a virtual environment .venv (made with $PYTHON,
#                                    default python3), orchard installed in it, then `orchard doctor`
#                                    (its Spark start resolves Delta Lake's jars from Maven Central, once)
#   scripts/setup.sh --dev           the same, orchard editable with its test tools (.[test]),
#                                    and --cluster
#   scripts/setup.sh --cluster       also `orchard local fetch`: what the
#                                    local cluster needs, once (SeaweedFS; s3a and HDFS jars from
#                                    Maven Central)
#   scripts/setup.sh --venv DIR      use or create the virtual environment DIR instead of .venv
#   scripts/setup.sh --system        no virtual environment: install into $PYTHON itself (CI)
#   PYTHON=/path/to/python3 scripts/setup.sh     another interpreter (>= 3.9)
#
# Without root or sudo, what is missing is named with the command to install it, once.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
SYSTEM=0
DEV=0
CLUSTER=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1; CLUSTER=1 ;;
    --cluster) CLUSTER=1 ;;
    --system) SYSTEM=1 ;;
    --venv) VENV=${2:?--venv needs a folder}; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option $1 (see scripts/setup.sh --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "setup: $*"; }

# -- system packages: Java for Spark, native BLAS/LAPACK for Spark MLlib's PCA (3-5x faster) ---
java_bin=${JAVA_HOME:+$JAVA_HOME/bin/}java
need=()
command -v "$java_bin" >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
ldconfig -p 2>/dev/null | grep -q 'liblapack.so.3' || need+=(libopenblas0-pthread liblapack3)
command -v "$PYTHON" >/dev/null 2>&1 || need+=(python3)
command -v mvn >/dev/null 2>&1 || need+=(maven)  # Delta Lake's jars (every run), the cluster's
if [ "$SYSTEM" = 0 ] && command -v "$PYTHON" >/dev/null 2>&1 && [ ! -x "$VENV/bin/python" ] \
   && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ "$SYSTEM" = 1 ] && command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  need+=(python3-pip)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
    say "installing ${need[*]} (apt-get)"
    "${sudo_cmd[@]}" apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  else
    say "missing: ${need[*]}. Install them, then run this again:"
    if command -v apt-get >/dev/null 2>&1; then
      say "    sudo apt-get install ${need[*]}"
    else
      say "    (not a Debian/Ubuntu system: a Java 17 runtime, OpenBLAS/LAPACK and Python >= 3.9 with venv;"
      say "     e.g. macOS: brew install openjdk@17 openblas)"
    fi
    if ! command -v "$java_bin" >/dev/null 2>&1 || ! command -v "$PYTHON" >/dev/null 2>&1; then
      exit 1  # Java and Python are needed; without native BLAS orchard runs, slower
    fi
  fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
  say "orchard needs Python >= 3.9 ($("$PYTHON" --version 2>&1) found); set PYTHON=..." >&2
  exit 1
fi
say "$("$java_bin" -version 2>&1 | head -1)"

# -- the interpreter orchard goes into --------------------------------------------------------
if [ "$SYSTEM" = 1 ]; then
  py=$PYTHON
  export PIP_BREAK_SYSTEM_PACKAGES=1  # asked for: install into this interpreter (PEP 668 systems)
else
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment $VENV ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
  fi
  py=$VENV/bin/python
fi

if [ "$DEV" = 1 ]; then
  target=(-e ".[test]")
else
  target=(".")
fi
say "pip install ${target[*]} into $("$py" -c 'import sys; print(sys.prefix)')"
"$py" -m pip install --quiet --disable-pip-version-check "${target[@]}"

if [ "$CLUSTER" = 1 ]; then
  say "fetching what the local cluster needs (once; cached)"
  "$py" -m orchard local fetch
fi

# -- check ------------------------------------------------------------------------------------
"$py" -m orchard doctor
if [ "$SYSTEM" = 0 ]; then
  say "done. Activate the environment: source $VENV/bin/activate; then: orchard demo"
else
  say "done. Try: orchard demo"
fi
