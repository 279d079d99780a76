#!/usr/bin/env bash
# The local cluster's full cycle, timed: up, push, run, pull, down (S3, and HDFS with --hdfs).
#   bench/local_cluster_cycle.sh [s3|hdfs] [DATASET]
# Uses $ORCHARD_STATE_DIR / $ORCHARD_CACHE_DIR like orchard does; prints one line per step.
set -euo pipefail
store=${1:-s3}
data=${2:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/fruits-360-sample}
case $store in
  s3) base=s3://orchard-bench; up_flags="" ;;
  hdfs) base=hdfs:///orchard-bench; up_flags="--hdfs" ;;
  *) echo "usage: $0 [s3|hdfs] [DATASET]" >&2; exit 2 ;;
esac
out=$(mktemp -d)
started=0
cleanup() { [ "$started" = 1 ] && orchard local down >/dev/null 2>&1; rm -rf "$out"; }
trap cleanup EXIT
since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%6.1f s", (b - a) / 1e9 }'; }
step() { local name=$1; shift; local t0; t0=$(date +%s%N)
         "$@" >"$out/$name.log" 2>&1 || { cat "$out/$name.log" >&2; exit 1; }
         printf '%-6s %s\n' "$name" "$(since "$t0")"; }
t_start=$(date +%s%N)
started=1
step up    orchard local up --workers 2 $up_flags
step push  orchard push "$data" "$base/data" --profile local
step run   orchard run --input "$base/data" --output "$base/run-$$" --profile local
step pull  orchard pull "$base/run-$$" "$out/pulled" --profile local
step down  orchard local down
started=0
printf '%-6s %s\n' total "$(since "$t_start")"
