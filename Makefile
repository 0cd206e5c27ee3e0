# RVA developer entry points. Everything downloaded lands in .cache/ (ignored by git).
#   make demo   - the whole chain on the sample video, page at http://localhost:5000/
#   make test   - the test suite (installs what it needs first)
#   make lint   - ruff + mypy + shellcheck
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CACHE := $(CURDIR)/.cache
export RVA_CACHE := $(CACHE)
export RVA_MODEL_CACHE := $(CACHE)/models
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all deps venv fetch demo test test-core test-provision test-image lint clean

all: test

deps:
	scripts/install-deps.sh base test provision image

# The venv is rebuilt when the pins change.
$(BIN)/rva: pyproject.toml ansible/requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,onnx,systemd]' || $(BIN)/pip install --quiet -e '.[dev,onnx]'
	$(BIN)/pip install --quiet -r ansible/requirements-dev.txt
	touch $@

venv: $(BIN)/rva

fetch: venv
	scripts/get-redis-stack.sh
	scripts/get-footage.sh
	$(BIN)/rva models fetch --all

demo: deps fetch
	scripts/demo.sh

# Everything, the image builds and QEMU boots included (as root; see image-build/README.md).
test: deps fetch
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast suite alone (no root filesystem builds, no QEMU boots).
test-core: deps fetch
	$(BIN)/pytest -m "not provision and not image" $(PYTEST_ARGS)

# Ansible lint + a real apply of site.yml into a Debian root filesystem, booted with nspawn.
test-provision: deps fetch
	$(BIN)/pytest -m provision $(PYTEST_ARGS)

# The images alone: build all four boards, boot amd64 and arm64 under QEMU (root).
test-image: deps fetch
	$(BIN)/pytest -m image $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q tests/test_lint.py -k shellcheck

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
