# The two commands a new user needs: `make demo` and `make test`. Both set everything up.
# `make lint` (run by `make test`): ruff, and the import contracts of pyproject.toml (lint-imports).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp
# Every dependency, pinned with its sha256 (pip-compile; regenerate with `make lock`, never by
# hand). pyproject.toml keeps the loose ranges for library users; the lock is what we test.
LOCK := requirements/lock.txt

.PHONY: setup weights browser demo test test-latest lint lock bench clean

# The venv holds PyTorch's x86_64 build with its CUDA libraries (6.8 GB measured): a clear error
# when the disk cannot hold it, instead of pip's OSError half-way through the install.
NEED_KB := 7500000

$(STAMP): pyproject.toml $(LOCK)
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$$avail" -lt $(NEED_KB) ]; then \
	  echo "error: setting up $(VENV) needs about 7.2 GB of free disk; $$((avail / 1048576)) GB free here" >&2; exit 2; fi
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	# Exactly the locked set (torch/torchvision come from this machine's local files when there),
	# then the package itself, built with the locked setuptools.
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $(STAMP)

# Regenerate the lock after pyproject.toml changes (pins kept where still allowed; delete the
# lock first to move everything to the newest allowed versions).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links \
	  --extra test --extra ray -c requirements/torch.txt -o $(LOCK) pyproject.toml requirements/build.in
	rm -rf .venv-lock

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

# Tests run in a random order (pytest-randomly); the seed is printed, and `make test SEED=N`
# repeats an order.
ifndef SEED
SEED := $(shell od -An -N2 -tu2 /dev/urandom | tr -d ' ')
endif
test: lint weights browser
	@echo "test order: --randomly-seed=$(SEED)"
	$(VENV)/bin/python -m pytest -q --randomly-seed=$(SEED)

# The newest versions pyproject.toml allows, in a throw-away environment: learn of an upstream
# break before users do. Not part of `make test` (it tests what is not locked).
LATEST := .venv-latest
test-latest: browser
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,ray]" -c requirements/torch.txt
	@# what moved upstream since the lock: the versions this run tests that the lock does not pin
	$(LATEST)/bin/pip list --format freeze | tr 'A-Z_' 'a-z-' | sort > $(LATEST)-versions.txt
	@grep -E '^[A-Za-z0-9_.-]+==' $(LOCK) | sed 's/ .*//' | tr 'A-Z_' 'a-z-' | sort > $(LATEST)-locked.txt
	@echo "newer than the lock:"; comm -13 $(LATEST)-locked.txt $(LATEST)-versions.txt | grep -v -E '^(motion-relevance|pip)==' || echo "  (none)"
	$(LATEST)/bin/motion-relevance weights fetch i3d-kinetics400
	$(LATEST)/bin/python -m pytest -q --randomly-seed=$(SEED); status=$$?; rm -rf $(LATEST) $(LATEST)-locked.txt; exit $$status

bench: setup
	$(PY) benchmarks/bench_selective.py
	$(PY) benchmarks/bench_methods.py
	$(PY) benchmarks/bench_long_video.py
	$(PY) benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) $(LATEST) .venv-lock demo-output .pytest_cache
