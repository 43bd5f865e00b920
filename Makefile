# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make run    create .venv, then rebuild the whole pipeline (offline sample by default)
#   make test   create .venv if needed, then run the whole test suite and check that every pin has
#               wheels for the other Python versions pyproject.toml allows (what CI runs: .ci/run)
# For your own loop: make test-fast (everything but the e2e tests: no dvc, no stage in a process of
# its own). make docs renders the measured figures in README.md and docs/ from their results files.
# Bare `make` is `make run`.
PYTHON ?= python3
VENV := .venv
# GPU=1 (make run GPU=1): TensorFlow with its CUDA libraries, tensorflow[and-cuda] at the pinned version.
GPU ?= 0
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)
# The page `dvc plots show` fills, with vega inlined so it renders offline (gitignored, ~1 MB; the
# command also names it in .dvc/config.local).
PLOTS_PAGE := .dvc/plots/offline.html
# Stage commands in dvc.yaml call `python`: make it the environment's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 3

# The Python versions pyproject.toml allows besides the one .venv has: make test checks that every
# pin of requirements-dev.txt has a wheel for each (pip's finder, nothing installed). Only the pins:
# with --only-binary pip cannot resolve the dependencies below them, some of which are pure-Python
# sdists (antlr4-python3-runtime, via dvc's hydra-core); the suite itself, with the whole
# resolution, runs on those versions in .github/workflows/ci.yml.
OTHER_PYTHONS ?= 3.12 3.13

.PHONY: run serve browser compare test test-fast wheels-check docs docs-check real-plan real bench queue gpu-check env clean

# `facegender run`: dvc repro, then the verdict (stages/__main__.py).
run: env
	facegender run

# The page to try every trained model on your own photos: http://127.0.0.1:8000 (params.yaml serve).
serve: env
	facegender serve

# Experiments side by side: what each changed, each model's ROC AUC (dvc exp show --json, in 120 columns).
compare: env
	facegender compare

# The tests run on every core (pytest-xdist): one process per core, at most 4 (each may hold a TensorFlow
# model in memory; past 4 the end-to-end pipeline file, which runs in one process, is the whole wait).
# A file's tests stay in one process, in order: they share a project. TEST_WORKERS=0 runs them in this one.
TEST_WORKERS ?= auto
PYTEST_WORKERS = -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

test: env browser
	python -m pytest $(PYTEST_WORKERS)
	$(MAKE) --no-print-directory wheels-check

wheels-check: env
	@for version in $(OTHER_PYTHONS); do \
		python -m pip install --dry-run --quiet --ignore-installed --no-deps --only-binary=:all: \
			--python-version $$version -r requirements-dev.txt \
		|| { echo "error: a pin of requirements-dev.txt has no wheel for Python $$version: change the pin, or drop $$version from pyproject.toml's requires-python"; exit 1; }; \
		echo "Python $$version: every pin of requirements-dev.txt has a wheel"; \
	done

# The page's browser test (tests/e2e/test_page_in_browser.py) drives Debian's chromium with Playwright, never a
# browser of Playwright's own: installed here from Debian's packages when missing (sudo when not root).
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the page's browser test (apt-get)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			--no-install-recommends chromium >/dev/null; }

test-fast: env
	python -m pytest $(PYTEST_WORKERS) -m "not e2e"

# docs: render the figures from the workspace's results files (after a run you mean to commit);
# docs-check: compare them with the committed results files (what the tests check).
docs: env
	python -m docs.render

docs-check: env
	python -m docs.render --check

# The real run: the Kaggle datasets, ImageNet VGG16, the assignment's frozen conv base (stages/plan.py
# REAL_RUN), as a DVC experiment beside the sample runs (dvc exp show). Needs Kaggle credentials.
# real-plan: what it downloads (versions, sizes), the disk it needs against what is free, the time
# per stage here; downloads nothing. real: the same plan, refused when the disk is short, then the run.
real-plan: env
	facegender plan

# WEIGHTS=FILE: a VGG16 notop weights file of your own instead of Keras's ImageNet download.
real: env
	facegender plan --run $(if $(WEIGHTS),--weights $(WEIGHTS))

# The real-scale benchmark (docs/benchmark.md says how long it takes, and on which CPU); SCALE=0.1 for a quick look.
SCALE ?= 1
bench: env
	python -m benchmarks.bench --scale $(SCALE)

# Run the queued experiments (`dvc exp run --queue ...`) JOBS at a time, each stage taking its share of
# the CPU cores (stages/common/distribute.py); follow with `dvc queue status`, compare with `dvc exp show`.
JOBS ?= 2
queue: env
	FACEGENDER_JOBS=$(JOBS) dvc queue start --jobs $(JOBS)

# On a machine with a GPU (after `make env GPU=1`): the GPU path end to end in about a minute.
gpu-check: env
	python -m benchmarks.gpu_check

env: $(STAMP) $(PLOTS_PAGE)

# The pinned runtime and development locks, then the project itself, editable (its code stays here,
# the `facegender` command goes into .venv/bin): pip install -e . without fetching anything more.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	$(if $(filter 1,$(GPU)),$(VENV)/bin/python -m pip install --quiet "tensorflow[and-cuda]==$$(sed -n 's/^tensorflow==//p' requirements.txt)")
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

$(PLOTS_PAGE): $(STAMP) stages/plots_template.py
	$(VENV)/bin/facegender plots-page

# The offline page goes, and so does .dvc/config.local's pointer to it (DVC would refuse a missing page).
clean:
	-$(VENV)/bin/dvc config --local --unset plots.html_template 2>/dev/null
	rm -rf $(VENV) $(PLOTS_PAGE) facegender.egg-info build
