# meshlab entry points. Each target installs what it needs first (`make setup` is idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.meshlab-setup

.PHONY: setup labs test lab unit integration bench filters down clean

setup: $(STAMP)

$(STAMP): lib/pyproject.toml
	@missing=""; command -v ip >/dev/null || missing="$$missing iproute2"; \
	 command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	 if [ -n "$$missing" ]; then echo "installing$$missing (Debian packages)"; \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e './lib[lab]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meshlab)" >/dev/null
	$(BIN)/meshlab version
	@touch $@

## Run every lab notebook headless on the local backend (exercise solutions on) into build/labs/; print a table.
labs: setup
	$(BIN)/python tests/labs/run_labs.py --backend local --out build/labs

## The whole test suite: unit, integration (real Envoy), notebooks (papermill + nbval).
test: setup
	$(BIN)/python -m pytest tests

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

## Open JupyterLab on the labs.
lab: setup
	$(BIN)/jupyter lab --notebook-dir=labs

bench: setup
	$(BIN)/meshlab bench
	$(BIN)/meshlab bench --wasm

## Build every WebAssembly filter in wasm-filters/ (reproducible: same input, same bytes).
filters: setup
	$(BIN)/python -m meshlab.wasm.cli build-all

## Remove everything a lab left running (processes, network namespaces, temp files).
down:
	@test -x $(BIN)/meshlab && $(BIN)/meshlab down || true

clean: down
	rm -rf build $(VENV)
