# The two commands a new user needs: `make demo` and `make test`. Both set everything up.
# `make lint` (run by `make test`): ruff, and the import contracts of pyproject.toml (lint-imports).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp

.PHONY: setup weights browser demo test lint bench clean

# The venv holds PyTorch's x86_64 build with its CUDA libraries (6.8 GB measured): a clear error
# when the disk cannot hold it, instead of pip's OSError half-way through the install.
NEED_KB := 7500000

$(STAMP): pyproject.toml
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$$avail" -lt $(NEED_KB) ]; then \
	  echo "error: setting up $(VENV) needs about 7.2 GB of free disk; $$((avail / 1048576)) GB free here" >&2; exit 2; fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch/torchvision come from this machine's local files (pip's constraint caps them).
	$(PIP) install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install --quiet -e ".[test,ray]"
	touch $(STAMP)

setup: $(STAMP)

weights: setup
	$(VENV)/bin/motion-relevance weights fetch i3d-kinetics400

demo: weights
	$(VENV)/bin/motion-relevance demo --out demo-output

# The report's browser test needs Chromium (Debian's package; installed when absent, as root).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

test: lint weights browser
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(PY) benchmarks/bench_selective.py
	$(PY) benchmarks/bench_methods.py
	$(PY) benchmarks/bench_long_video.py
	$(PY) benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
