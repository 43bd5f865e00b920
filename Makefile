# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make run    create .venv, then rebuild the whole pipeline (offline sample by default)
#   make test   create .venv if needed, then run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the environment's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: run test env clean

run: $(STAMP)
	dvc repro
	dvc metrics show

test: $(STAMP)
	python -m pytest

env: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV)
