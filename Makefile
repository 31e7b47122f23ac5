# Quick start:  make run        (EF: phantom -> train -> compress -> measure -> report)
#               make test       (every test: unit, end-to-end CLI runs, torchrun, notebooks; + ruff)
#               make test-fast  (the edit loop: every test not marked slow; + ruff)
#               make run-classify  (the same pipeline for image classification, built-in digits)
# They create the virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the torch build that lies on this machine's disk (pip takes it from there); any recent one works
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
CONFIG ?= quick
OUT ?= runs/$(CONFIG)

.PHONY: run run-classify test test-fast lint imports venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: venv
	$(BIN)/echolite run --config $(CONFIG) --out $(OUT)

# the second task: image classification in the CIFAR-10 layout, on the built-in digits
run-classify: venv
	$(BIN)/echolite run --task cifar10 --config $(CONFIG) --out runs/cifar10-$(CONFIG)

# two pytest workers (the machine's 2 cores), whole files per worker: module fixtures are built once
test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile
	$(BIN)/ruff check .

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"
	$(BIN)/ruff check .

# the import graph of src/echolite: cycles (module- and function-level imports alike)
imports:
	$(PYTHON) tools/import_graph.py src echolite

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf runs .pytest_cache .ruff_cache
