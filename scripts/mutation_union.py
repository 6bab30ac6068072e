"""Kill rates per module from one or more mutmut result listings of the same source files.

A mutant is killed by a set of test files when any of them kills it; mutmut runs, for each
mutant, every selected test that reaches the mutated function, so the union of separate runs
(for example the old test file, then the new oracle file) is what one run over both gives.

    .venv/bin/python scripts/mutation_union.py before=/tmp/a/results.txt after=/tmp/a/results.txt,/tmp/b/results.txt

Each argument is ``LABEL=FILE[,FILE...]`` where a FILE is the output of
``mutmut results --all true``; prints a Markdown table of killed / (all mutants) per module
and label, and the survivors of the last label.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

KILLED = {"killed", "timeout"}


def read(paths: list[str]) -> dict[str, set[str]]:
    """mutant name -> statuses over the given listings."""
    statuses: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if "__mutmut_" not in line or ": " not in line:
                continue
            name, status = line.rsplit(": ", 1)
            statuses[name].add(status)
    return statuses


def module_of(name: str) -> str:
    return re.sub(r"\.x\S*$", "", name).split(".")[-1] + ".py"


def main(args: list[str]) -> int:
    labels = []
    tables = {}
    for arg in args:
        label, files = arg.split("=", 1)
        labels.append(label)
        tables[label] = read(files.split(","))
    modules = sorted({module_of(n) for t in tables.values() for n in t})
    print("| module | " + " | ".join(f"{label}: killed / mutants" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for module in [*modules, "all"]:
        cells = []
        for label in labels:
            names = [n for n in tables[label] if module == "all" or module_of(n) == module]
            killed = sum(bool(tables[label][n] & KILLED) for n in names)
            cells.append(f"{killed} / {len(names)} ({100 * killed / max(1, len(names)):.0f} %)")
        print(f"| {module} | " + " | ".join(cells) + " |")
    last = tables[labels[-1]]
    survivors = sorted(n for n, s in last.items() if not s & KILLED)
    print(f"\nnot killed under {labels[-1]} ({len(survivors)}):")
    for name in survivors:
        print(f"  {name}: {', '.join(sorted(last[name]))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
