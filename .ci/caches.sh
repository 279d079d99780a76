#!/usr/bin/env bash
# The caches a fresh machine builds once and later CI runs reuse, each keyed by what it was
# built from (a stale one is rebuilt, never trusted):
#   .ci/caches.sh list     each cache: where, its key, its size
#   .ci/caches.sh clear    remove them all: the next .ci/run builds everything again (to time a
#                          fresh machine, also remove what .ci/run installs: see README, Test)
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}
# name | folder | what keys it
entries=(
  "pip|$cache/pip|pip's own cache (downloads by URL and hash, built wheels by source)"
  "spark4-venv|${ORCHARD_SPARK4_VENV:-$cache/orchard/venv-spark4}|sha256 of pyproject.toml + the pyspark spec (.orchard-stamp)"
  "node-set|${ORCHARD_NODE_SET_CACHE:-$cache/orchard/node-set}|the node lock's digest and the pyspark version (folder names)"
  "wheelhouse|${ORCHARD_WHEELHOUSE_CACHE:-$cache/orchard/wheelhouse}|the node lock's digest"
  "cluster-downloads|${ORCHARD_TEST_CACHE_DIR:-$cache/orchard-tests}|the SeaweedFS version (folder name); the jar sets' manifests (sha256 of their poms)"
  "container-base|/var/cache/orchard-container|sha256 of the debootstrap recipe (folder name)"
  "buildah-storage|/var/lib/containers/storage|buildah's layer cache: each layer by its instruction and inputs"
  "maven|$HOME/.m2/repository|Maven coordinates (group:artifact:version)"
  "ivy|$HOME/.ivy2|Maven coordinates resolved by spark.jars.packages"
)
case "${1:-list}" in
  list)
    for entry in "${entries[@]}"; do
      IFS='|' read -r name folder key <<< "$entry"
      size=$( [ -e "$folder" ] && du -sh "$folder" 2>/dev/null | cut -f1 || echo "-")
      printf '%-18s %-6s %s\n    key: %s\n' "$name" "$size" "$folder" "$key"
    done ;;
  clear)
    command -v buildah >/dev/null 2>&1 && buildah rm --all >/dev/null 2>&1 || true
    command -v buildah >/dev/null 2>&1 && buildah rmi --all --force >/dev/null 2>&1 || true
    for entry in "${entries[@]}"; do
      IFS='|' read -r name folder key <<< "$entry"
      if [ -e "$folder" ]; then echo "caches: removing $name ($folder)"; rm -rf "$folder"; fi
    done ;;
  *) echo "usage: .ci/caches.sh [list|clear]" >&2; exit 2 ;;
esac
