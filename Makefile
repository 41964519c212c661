PYTHON ?= python3.11
BIN := .venv/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
.PHONY: demo test test-all lint bench setup

$(BIN)/python:
	$(PYTHON) -m venv .venv && $(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	$(PIP) -e ".[test]"

demo: setup
	$(BIN)/lossgeom demo --out demo-output

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m "slow or not slow"

lint: $(BIN)/python
	$(PIP) -e ".[lint]"
	$(BIN)/ruff check src tests

bench: setup
	$(BIN)/python benchmarks/curvature.py
