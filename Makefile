# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make run    create .venv, then rebuild the whole pipeline (offline sample by default)
#   make test   create .venv if needed, then run the whole test suite (what CI runs: .ci/run)
# For your own loop: make test-fast (everything but the e2e tests: no dvc, no stage in a process of
# its own). make docs renders the measured figures in README.md and docs/ from their results files.
PYTHON ?= python3
VENV := .venv
# GPU=1 (make run GPU=1): TensorFlow with its CUDA libraries, tensorflow[and-cuda] at the pinned version.
GPU ?= 0
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)
# The page `dvc plots show` fills, with vega inlined so it renders offline (gitignored, ~1 MB).
PLOTS_PAGE := .dvc/plots/offline.html
# Stage commands in dvc.yaml call `python`: make it the environment's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: run compare test test-fast docs real-plan real bench queue gpu-check env clean

run: env
	dvc repro
	python -m stages.verdict

# Experiments side by side: what each changed, each model's ROC AUC (dvc exp show --json, in 120 columns).
compare: env
	python -m stages.experiments

test: env
	python -m pytest

test-fast: env
	python -m pytest -m "not e2e"

docs: env
	python -m docs.render

# The real run: the Kaggle datasets, ImageNet VGG16, the assignment's frozen conv base (stages/plan.py
# REAL_RUN), as a DVC experiment beside the sample runs (dvc exp show). Needs Kaggle credentials.
# real-plan: what it downloads (versions, sizes), the disk it needs against what is free, the time
# per stage here; downloads nothing. real: the same plan, refused when the disk is short, then the run.
real-plan: env
	python -m stages.plan

# WEIGHTS=FILE: a VGG16 notop weights file of your own instead of Keras's ImageNet download.
real: env
	python -m stages.plan --run $(if $(WEIGHTS),--weights $(WEIGHTS))

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

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(if $(filter 1,$(GPU)),$(VENV)/bin/python -m pip install --quiet "tensorflow[and-cuda]==$$(sed -n 's/^tensorflow==//p' requirements.txt)")
	touch $(STAMP)

$(PLOTS_PAGE): $(STAMP) stages/plots_template.py
	$(VENV)/bin/python -m stages.plots_template

clean:
	rm -rf $(VENV) $(PLOTS_PAGE)
