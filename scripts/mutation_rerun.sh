#!/usr/bin/env bash
# Run the mutants a kept mutation run (scripts/mutation.sh with KEEP=DIR) did not kill against
# test files written since, one mutant at a time (issue 15). mutmut's own rerun selects tests
# from the first run's record of which tests reach which function, so it does not pick up a new
# test file; this runs the files directly with MUTANT_UNDER_TEST.
#
#   scripts/mutation_rerun.sh /tmp/mut-metrics tests/test_statistics_mutants.py
#
# Set ONLY=REGEX to rerun only the mutants whose names match (grep -P); RESULTS=FILE to take
# the mutants from FILE (lines "NAME: survived", e.g. an earlier rerun's output). Prints one line per
# mutant (killed / survived) and a last line "killed K of N".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
if [ $# -lt 2 ] || [ ! -f "$1/results.txt" ]; then
    echo "error: usage: $0 KEPT_DIR TEST_FILE [TEST_FILE...] (KEPT_DIR has results.txt)" >&2
    exit 2
fi
dir=$(cd "$1" && pwd)
shift
for t in "$@"; do cp "$ROOT/$t" "$dir/mutants/$t"; done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=src
cd "$dir/mutants"
# the files must pass without a mutant: a test that fails on the kept (possibly older) source
# would count every mutant as killed
if ! "$PY" -m pytest -x -q -p no:cacheprovider "$@" > baseline.log 2>&1; then
    echo "error: the test files fail without a mutant in $dir/mutants (see $dir/mutants/baseline.log);" \
        "the kept source differs from the one they test" >&2
    exit 2
fi
killed=0 total=0
while read -r name; do
    total=$((total + 1))
    if MUTANT_UNDER_TEST="$name" "$PY" -m pytest -x -q -p no:cacheprovider "$@" > /dev/null 2>&1; then
        echo "$name: survived"
    else
        echo "$name: killed"
        killed=$((killed + 1))
    fi
done < <(grep -E ': (survived|no tests)$' "${RESULTS:-$dir/results.txt}" | sed 's/^ *//; s/: .*//' | grep -P "${ONLY:-.}")
echo "killed $killed of $total"
