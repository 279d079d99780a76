#!/usr/bin/env bash
# orchard's whole test suite, as CI runs it (the README's test command):
#   - the main suite on the installed pyspark, shared among pytest-xdist workers
#     (-n $ORCHARD_TEST_WORKERS, default 2; who runs what: tests/plugins/scheduling.py), printing
#     the reason of every skip (-rs) and the 25 slowest tests (--durations=25);
#   - at the same time, in the background, the second Spark line (scripts/test-spark4.sh: its
#     own cached virtual environment), its output printed once the main suite is done.
# The exit code is the worst of the two; the last line adds up both runs' tests.
# Options go to the main suite's pytest, e.g. scripts/test.sh -m "not slow" (then no second line:
# ORCHARD_TEST_SPARK4=0 turns it off too).
set -uo pipefail
cd "$(dirname "$0")/.."

workers=${ORCHARD_TEST_WORKERS:-2}
reports=$(mktemp -d "${TMPDIR:-/tmp}/orchard-tests.XXXXXX")
trap 'rm -rf "$reports"' EXIT

second=0
if [ "${ORCHARD_TEST_SPARK4:-1}" != 0 ] && [ $# -eq 0 ]; then
  scripts/test-spark4.sh -rs --durations=10 --junitxml="$reports/spark4.xml" > "$reports/spark4.log" 2>&1 &
  second=$!
fi

python3 -m pytest -q -rs --durations=25 -n "$workers" --dist loadgroup --no-loadscope-reorder \
  --junitxml="$reports/main.xml" "$@"
main_rc=$?

spark4_rc=0
if [ "$second" != 0 ]; then
  wait "$second"
  spark4_rc=$?
  echo
  echo "== the second Spark line (scripts/test-spark4.sh): exit $spark4_rc =="
  cat "$reports/spark4.log"
fi

python3 - "$reports" <<'PY'
import sys, xml.etree.ElementTree as ET
from pathlib import Path
totals = dict(tests=0, failures=0, errors=0, skipped=0)
for report in sorted(Path(sys.argv[1]).glob("*.xml")):
    for suite in ET.parse(report).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"total: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY

rc=$main_rc
[ "$spark4_rc" -gt "$rc" ] && rc=$spark4_rc
exit "$rc"
