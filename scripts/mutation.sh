#!/usr/bin/env bash
# Mutation score of one or more source files against chosen test files (issue 15), with mutmut,
# in a throwaway copy of the repository (the working tree is never touched). Slow: not part of
# `make test`. Needs mutmut in the virtualenv: .venv/bin/pip install "mutmut==3.8.1"
#
#   nice -n 19 scripts/mutation.sh "src/motion_relevance/models/spec.py" \
#       tests/test_models.py tests/test_preprocess_oracle.py
#
# The first argument is a space-separated list of files to mutate; the rest are the test files.
# Prints mutmut's per-mutant results and a last line "killed K of N (R %)". Set KEEP=DIR to keep
# the copy (mutmut's `mutants/` folder, for `mutmut show NAME`) in DIR; set DESELECT=EXPR to
# leave out the tests matching a pytest -k expression (say which in any score you quote).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MUTMUT="$ROOT/.venv/bin/mutmut"
if [ ! -x "$MUTMUT" ]; then
    echo "error: mutmut is not installed; run: $ROOT/.venv/bin/pip install 'mutmut==3.8.1'" >&2
    exit 2
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 'SRC_FILE [SRC_FILE...]' TEST_FILE [TEST_FILE...]" >&2
    exit 2
fi
read -r -a targets <<< "$1"
shift
tests=("$@")

WORK=${KEEP:-$(mktemp -d /tmp/mutation-XXXXXX)}
mkdir -p "$WORK"
[ -z "${KEEP:-}" ] && trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
# the repository as it is now (tracked and untracked files, not ignored ones)
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && mkdir -p "$WORK/$(dirname "$f")" && cp -p "$f" "$WORK/$f"
done

only=$(printf '"%s", ' "${targets[@]}")
sel=$(printf '"%s", ' "${tests[@]}")
[ -n "${DESELECT:-}" ] && sel="${sel}\"-k\", \"not (${DESELECT})\", "
cat >> "$WORK/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["src"]
only_mutate = [${only%, }]
pytest_add_cli_args_test_selection = [${sel%, }]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]
# torch is not fork-safe once its thread pool ran: fork the workers from a clean server
process_isolation = "forkserver"
EOF

cd "$WORK"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# mutmut 3 runs the tests in forked children of this process; one child at a time on a shared
# machine (raise MUTMUT_JOBS where cores are free)
"$MUTMUT" run --max-children "${MUTMUT_JOBS:-1}" > run.log 2>&1 || { tail -40 run.log; exit 1; }
"$MUTMUT" results --all true > results.txt 2>&1 || "$MUTMUT" results > results.txt 2>&1
cat results.txt
"$PY" - <<'EOF'
import re
from pathlib import Path

counts: dict[str, int] = {}
for line in Path("results.txt").read_text().splitlines():
    m = re.match(r"\s*(\S+): (\w[\w ]*)$", line)
    if m:
        counts[m.group(2)] = counts.get(m.group(2), 0) + 1
total = sum(counts.values())
killed = counts.get("killed", 0) + counts.get("timeout", 0)
print("status counts:", counts)
print(f"killed {killed} of {total} ({100 * killed / max(total, 1):.1f} %)")
EOF
