# RVA developer entry points. Everything downloaded lands in .cache/ (ignored by git).
#   make demo   - the whole chain on the sample video, page at http://localhost:5000/
#   make demo-reset - forget what the demo kept (its Redis data and config in .cache/demo/)
#   make test   - the test suite (installs what it needs first)
#   make lint   - ruff + mypy + shellcheck + the layout's rules (tests/test_layout.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CACHE := $(CURDIR)/.cache
export RVA_CACHE := $(CACHE)
export RVA_MODEL_CACHE := $(CACHE)/models
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all deps deps-demo deps-core venv venv-dev fetch demo demo-reset test test-core \
	test-provision test-image lint clean

all: test

# Debian packages per target, only those missing, each printed with why; nothing installed is
# upgraded (scripts/install-deps.sh). A demo needs the fewest.
deps-demo:
	scripts/install-deps.sh demo
deps-core:
	scripts/install-deps.sh demo test
deps:
	scripts/install-deps.sh demo test provision image

# The venv with what the appliance runs (make demo); rebuilt when the pins change.
$(BIN)/rva: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# ...and what the tests and lint use on top: dev tools, ONNX Runtime, systemd-python (built
# against libsystemd-dev from the test group) and ansible.
$(VENV)/.dev: $(BIN)/rva ansible/requirements-dev.txt
	$(BIN)/pip install --quiet -e '.[dev,onnx,systemd]' || $(BIN)/pip install --quiet -e '.[dev,onnx]'
	$(BIN)/pip install --quiet -r ansible/requirements-dev.txt
	touch $@

# GStreamer sources (gst:, jetson-csi) read through the OS's PyGObject (python3-gi): the venv
# sees the OS's gi package alone, linked into it, where it was built for the venv's Python.
$(VENV)/.gi: $(BIN)/rva
	@gi=/usr/lib/python3/dist-packages/gi; \
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	ext=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	if [ -e "$$gi/_gi$$ext" ]; then ln -sfn "$$gi" "$$site/gi" && touch $@; \
	else echo "venv: no OS PyGObject for this Python ($$gi/_gi$$ext): GStreamer sources off"; fi

venv: $(BIN)/rva $(VENV)/.gi
venv-dev: $(VENV)/.dev $(VENV)/.gi

fetch: venv
	scripts/get-redis-stack.sh
	scripts/get-footage.sh
	$(BIN)/rva models fetch --all

demo: deps-demo fetch
	scripts/demo.sh

# The demo keeps its Redis data and rva.toml in $(CACHE)/demo/ across restarts; this removes
# them (refused while a demo runs).
demo-reset:
	scripts/demo.sh --reset

# Everything, the image builds and QEMU boots included (as root; see image-build/README.md).
test: deps venv-dev fetch
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast suite alone (no root filesystem builds, no QEMU boots).
test-core: deps-core venv-dev fetch
	$(BIN)/pytest -m "not provision and not image" $(PYTEST_ARGS)

# Ansible lint + a real apply of site.yml into a Debian root filesystem, booted with nspawn.
test-provision: deps venv-dev fetch
	$(BIN)/pytest -m provision $(PYTEST_ARGS)

# The images alone: build all four boards, boot amd64 and arm64 under QEMU (root).
test-image: deps venv-dev fetch
	$(BIN)/pytest -m image $(PYTEST_ARGS)

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q tests/test_lint.py -k shellcheck
	$(BIN)/pytest -q tests/test_layout.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
